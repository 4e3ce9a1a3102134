//! What a hostile user found, one test each: configs that `validate` accepted and `run`
//! could not do, a second rigtap on one Parquet tree, partition values no reader could
//! read, secrets echoed in errors, and the smaller ones (a simulator of no miners, a
//! config that is not a file, files that are not what they claim). The ledger holes,
//! SIGHUP and the panicking component have their own tests (faults.rs, crash.rs).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::python::run_script;
use support::start;

/// The problems `validate` finds in `yaml`, as `line:column: message`.
fn problems(yaml: &str) -> Vec<String> {
    match rigtap::operator::config::from_str(yaml, &|name| (name == "SECRET").then(|| "x".into())) {
        Ok(_) => Vec::new(),
        Err(problems) => problems
            .iter()
            .map(|p| format!("{}: {}", p.mark, p.message))
            .collect(),
    }
}

/// Asserts that `yaml` is refused with exactly one problem, at `at`, saying `says`.
fn refused(yaml: &str, at: &str, says: &str) {
    if std::env::var("PROBE").is_ok() {
        eprintln!("PROBE {at} {says:?} => {:?}", problems(yaml));
        return;
    }
    let found = problems(yaml);
    assert!(
        found.len() == 1 && found[0].starts_with(&format!("{at}: ")) && found[0].contains(says),
        "expected one problem at {at} saying {says:?}, found {found:?} in\n{yaml}"
    );
}

const GENERATE: &str = "sources:\n  g: {type: generate}\n";

fn parquet(settings: &str) -> String {
    format!(
        "{GENERATE}sinks:\n  p:\n    type: parquet\n    inputs: [g]\n    path: /tmp/x\n{settings}"
    )
}

fn bos(settings: &str) -> String {
    format!("sources:\n  f:\n    type: bos\n    targets: {{addresses: ['127.0.0.1:50051']}}\n    username: root\n    password: root\n{settings}sinks:\n  s: {{type: stdout, inputs: [f]}}\n")
}

const HUGE: &str = "10000000000000000000s";

#[test]
fn what_run_cannot_do_validate_refuses_at_its_line_and_column() {
    refused(
        &parquet("    batch: {timeout: 0s}\n"),
        "8:22",
        "`batch.timeout` must be from 1ms to 365d, found 0s",
    );
    refused(
        &parquet("    rotate: {max_age: 0s}\n"),
        "8:23",
        "`rotate.max_age` must be from 1ms to 365d",
    );
    refused(
        &parquet(&format!("    batch: {{timeout: {HUGE}}}\n")),
        "8:22",
        "longer than the longest duration rigtap takes, 365d",
    );
    for key in ["connection_ttl", "stream_idle_timeout"] {
        refused(
            &bos(&format!("    {key}: {HUGE}\n")),
            &format!("7:{}", key.len() + 7),
            "longest duration",
        );
    }
    refused(
        &bos(&format!("    breaker: {{open_for: {HUGE}}}\n")),
        "7:25",
        "longest duration",
    );
    refused(
        &bos("    stream_idle_timeout: 0s\n"),
        "7:26",
        "`stream_idle_timeout` must be from 1ms to 365d",
    );
    refused(
        "sources:\n  g: {type: generate, rate: 1e-20}\nsinks:\n  s: {type: stdout, inputs: [g]}\n",
        "2:29",
        "`rate` must be from 0.001 to 10000000",
    );
    refused(
        &format!("{GENERATE}sinks:\n  s:\n    type: stdout\n    inputs: [g]\n    buffer: {{max_batches: 2305843009213693952}}\n"),
        "7:27",
        "`buffer.max_batches` must be from 1 to 1000000",
    );
    refused(
        "sources:\n  g: {type: generate, batch_size: 1000000000000}\nsinks:\n  s: {type: stdout, inputs: [g]}\n",
        "2:35",
        "`batch_size` must be from 1 to 100000",
    );
    refused(
        "sources:\n  g: {type: generate, miners: 4000000000}\nsinks:\n  s: {type: stdout, inputs: [g]}\n",
        "2:31",
        "`miners` must be from 1 to 1000000",
    );
    let filter = |condition: String| {
        format!("{GENERATE}transforms:\n  f:\n    type: filter\n    inputs: [g]\n    condition: \"{condition}\"\nsinks:\n  s: {{type: stdout, inputs: [f]}}\n")
    };
    let or_terms = vec!["power_w > 1"; 20_000].join(" or ");
    refused(&filter(or_terms), "7:16", "at most 16384 are allowed");
    let nested = format!(
        "{}kind == 'miner'{}",
        "(".repeat(20_000),
        ")".repeat(20_000)
    );
    refused(&filter(nested), "7:16", "at most 16384 are allowed");
    refused(
        &filter("not ".repeat(50_000)),
        "7:16",
        "at most 16384 are allowed",
    );
    refused(
        &filter("not ".repeat(40) + "power_w > 1"),
        "7:16",
        "nest deeper than 32 levels",
    );
    refused(
        &format!("memory_budget: {HUGE}\n{GENERATE}sinks:\n  s: {{type: stdout, inputs: [g]}}\n"),
        "1:16",
        "is not a size",
    );
}

#[test]
fn an_overflowing_duration_is_refused_not_a_panic_in_validate_and_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yaml");
    let yaml = format!("{GENERATE}sinks:\n  p:\n    type: parquet\n    inputs: [g]\n    path: /tmp/x\n    batch: {{timeout: {HUGE}{HUGE}}}\n");
    std::fs::write(&path, yaml).unwrap();
    let rigtap = env!("CARGO_BIN_EXE_rigtap");
    let out = Command::new(rigtap)
        .args(["validate", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(":8:22: `10000000000000000000s10000000000000000000s` is longer than the longest duration"), "{stderr}");

    let flag = format!("{HUGE}{HUGE}");
    let out = Command::new(rigtap)
        .args(["run", "-c"])
        .arg(&path)
        .args(["--duration", &flag])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("longest duration"));
}

#[test]
fn a_second_rigtap_on_one_parquet_tree_is_refused_and_names_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "sources:\n  g: {{type: generate, rate: 1000}}\nsinks:\n  p: {{type: parquet, inputs: [g], path: {}}}\napi: {{enabled: false}}\n",
        dir.path().display()
    );
    let first = start(&yaml, &[]);
    // The first holds the lock once its sink has started.
    let lock = dir.path().join(".rigtap.lock");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&lock).map_or(true, |pid| pid != first.child.id().to_string()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the first rigtap never took the lock"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = start(&yaml, &[]);
    let (code, _, stderr) = second.finish(Duration::from_secs(30));
    assert_eq!(code, Some(1), "{stderr}");
    let holder = format!("is in use by another rigtap (process {})", first.child.id());
    assert!(stderr.contains(&holder), "{stderr}");

    // The first lost nothing: its temporary is still there, and it finishes its files.
    first.signal("TERM");
    let (code, logs, stderr) = first.finish(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{stderr}");
    let ledger = support::ledger(&logs, "g", "p");
    assert!(ledger.delivered > 0 && ledger.dropped == 0, "{ledger:?}");
}

#[test]
fn partition_values_with_separators_and_control_characters_are_read_back_by_duckdb_and_pyarrow() {
    let dir = tempfile::tempdir().unwrap();
    // Longer than a directory name may be: its start, `~` and a checksum of the name.
    let long = "L".repeat(300);
    let cut = format!(
        "{}~{:08x}",
        &long[..255 - 9 - "site=".len()],
        crc32fast::hash(format!("site={long}").as_bytes())
    );
    let sites = [
        "north\nwing",
        "a/b",
        "x=y",
        "50%",
        ".hidden",
        "Zürich 1",
        "q?#[]",
        &long,
    ];
    let labels: Vec<String> = sites
        .iter()
        .enumerate()
        .map(|(i, site)| format!("    s{i}:\n      type: generate\n      count: 10\n      labels: {{site: {site:?}}}\n"))
        .collect();
    let inputs: Vec<String> = (0..sites.len()).map(|i| format!("s{i}")).collect();
    let yaml = format!(
        "sources:\n{}sinks:\n  p:\n    type: parquet\n    inputs: [{}]\n    path: {}\n    labels: [site]\n    partition: \"site={{site}}/\"\n",
        labels.concat(),
        inputs.join(", "),
        dir.path().display()
    );
    let (code, _, stderr) = start(&yaml, &[]).finish(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{stderr}");
    let output = run_script(
        "parquet_read.py",
        &[dir.path().as_os_str(), "values".as_ref(), "site".as_ref()],
    );
    let read: serde_json::Value = serde_json::from_slice(&output).unwrap();
    let mut expected: Vec<&str> = sites.to_vec();
    expected.retain(|s| *s != long);
    expected.push(&cut);
    expected.sort();
    assert_eq!(read["rows"], 80, "{read}");
    assert_eq!(read["pyarrow"], serde_json::json!(expected), "{read}");
    assert_eq!(read["duckdb"], serde_json::json!(expected), "{read}");
}

#[test]
fn secrets_stay_out_of_errors() {
    let yaml = bos("").replace("password: root", "password: \"hunter2${SECRET\"");
    let found = problems(&yaml);
    assert!(
        found.len() == 1 && found[0].contains("unclosed `${`"),
        "{found:?}"
    );
    assert!(!found[0].contains("hunter2"), "{found:?}");

    let kafka = format!("{GENERATE}sinks:\n  k:\n    type: kafka\n    inputs: [g]\n    brokers: 127.0.0.1:9092\n    topic: t\n    librdkafka:\n      sasl.password: hunter2\n      linger.ms: hunter2\n");
    let found = problems(&kafka);
    assert!(
        found.len() == 1 && found[0].starts_with("11:7: librdkafka refused"),
        "{found:?}"
    );
    assert!(
        !found[0].contains("hunter2") && found[0].contains("***"),
        "{found:?}"
    );
}

#[test]
fn files_are_checked_for_what_they_claim_and_target_lists_for_typos() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let not_a_certificate = dir.path().join("ca.pem");
    std::fs::write(&not_a_certificate, "this is not a certificate\n").unwrap();
    let source = |settings: &str| {
        format!("sources:\n  f:\n    type: bos\n    username: root\n{settings}sinks:\n  s: {{type: stdout, inputs: [f]}}\n")
    };
    let addresses = "    targets: {addresses: ['127.0.0.1:50051']}\n";
    refused(
        &source(&format!(
            "{addresses}    password_file: {}\n",
            missing.display()
        )),
        "6:20",
        "cannot read the secret file",
    );
    let ca = |path: &std::path::Path| {
        format!(
            "{addresses}    password: root\n    tls: {{ca_file: {}}}\n",
            path.display()
        )
    };
    refused(&source(&ca(&missing)), "7:20", "cannot read");
    refused(
        &source(&ca(&not_a_certificate)),
        "7:20",
        "holds no PEM certificate",
    );
    refused(
        &source(&format!(
            "    targets: {{inventory: {}}}\n    password: root\n",
            missing.display()
        )),
        "5:14",
        "cannot read",
    );
    // Refused before it is opened: /dev/zero read whole took 1.3 GB in 3 s, and a FIFO
    // would block validate (and a reload) until someone wrote to it.
    let fifo = dir.path().join("fleet.csv");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    for (path, kind) in [(Path::new("/dev/zero"), "a device"), (&*fifo, "a FIFO")] {
        refused(
            &source(&format!(
                "    targets: {{inventory: {}}}\n    password: root\n",
                path.display()
            )),
            "5:14",
            &format!("cannot read: it is {kind}, not a regular file"),
        );
    }
    refused(
        &source("    targets: {addresses: ['a:1', 'a:1']}\n    password: root\n"),
        "5:14",
        "listed twice",
    );
    refused(
        &source("    targets: {addresses: ['10.0.0.0-10.15.66.63:50051']}\n    password: root\n"),
        "5:14",
        "holds more than 65,536 addresses",
    );
    let enrich = format!("{GENERATE}transforms:\n  e: {{type: enrich, inputs: [g], labels: [site], inventory: {}}}\nsinks:\n  s: {{type: stdout, inputs: [e]}}\n", missing.display());
    assert!(
        problems(&enrich)[0].contains("cannot read"),
        "{:?}",
        problems(&enrich)
    );
}

#[test]
fn a_simulator_of_no_miners_and_a_config_that_is_not_a_file_are_errors_not_a_panic() {
    let rigtap = env!("CARGO_BIN_EXE_rigtap");
    let out = Command::new(rigtap)
        .args(["sim", "--miners", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("from 1 to 100000 miners"),
        "{out:?}"
    );

    let out = Command::new(rigtap)
        .args(["validate", "-c", "/dev/zero"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("larger than 16 MiB"),
        "{out:?}"
    );

    refused(
        &format!(
            "simulator: {{miners: 0}}\n{GENERATE}sinks:\n  s: {{type: stdout, inputs: [g]}}\n"
        ),
        "1:21",
        "`simulator.miners` must be from 1 to 100000, found 0",
    );
}

/// Out of file descriptors, a failed accept comes back at once: the API retried at
/// once, spinning a core and writing 9.5 million log lines in 30 s, and did not answer
/// /health. It pauses between tries now and logs about one line a second.
#[test]
fn out_of_file_descriptors_the_api_pauses_and_says_so_a_few_times() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let api = format!("127.0.0.1:{}", support::net::free_port());
    let config = dir.path().join("pipeline.yaml");
    std::fs::write(
        &config,
        format!("api: {{address: {api}}}\nsources:\n  g: {{type: generate, rate: 100}}\nsinks:\n  s: {{type: stdout, inputs: [g]}}\n"),
    )
    .unwrap();
    let log = dir.path().join("stderr.log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_rigtap"));
    command
        .args(["run", "-c"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 64,
                rlim_max: 64,
            };
            match libc::setrlimit(libc::RLIMIT_NOFILE, &limit) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    let mut child = command.spawn().unwrap();
    let (code, _) = support::http::request(&api, "GET", "/health");
    assert_eq!(code, 200);
    // More connections than the process has descriptors left, held open.
    let held: Vec<_> = (0..100)
        .filter_map(|_| std::net::TcpStream::connect(&api).ok())
        .collect();
    let pid = child.id().to_string();
    let cpu = rigtap::operator::process::cpu_seconds(&pid).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let spent = rigtap::operator::process::cpu_seconds(&pid).unwrap() - cpu;
    drop(held);
    // Once they are gone, the API answers again.
    let (code, _) = support::http::request(&api, "GET", "/health");
    assert_eq!(code, 200);
    assert!(Command::new("kill").arg(&pid).status().unwrap().success());
    assert!(child.wait().unwrap().success());
    let text = std::fs::read_to_string(&log).unwrap();
    let failed = text.matches("api: accept failed").count();
    eprintln!("{failed} accept failures logged; {spent:.2} CPU-seconds in the 3 s");
    assert!(
        (1..=10).contains(&failed),
        "{failed} lines say an accept failed"
    );
    // Retrying at once took a core (and a second one writing the log): 5.9 s of CPU.
    assert!(spent < 1.5, "{spent:.2} CPU-seconds in 3 s");
}

/// A client that connects and says nothing (or trickles its headers) is closed after
/// 10 s: 3,000 such connections were all kept open, each a file descriptor.
#[test]
fn a_silent_api_client_is_closed() {
    let api = format!("127.0.0.1:{}", support::net::free_port());
    let rigtap = support::start_writing_to(
        &format!("api: {{address: {api}}}\nsources:\n  g: {{type: generate, rate: 100}}\nsinks:\n  s: {{type: stdout, inputs: [g]}}\n"),
        &[],
        std::process::Stdio::null(),
    );
    let (code, _) = support::http::request(&api, "GET", "/health");
    assert_eq!(code, 200);
    let mut silent = std::net::TcpStream::connect(&api).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let opened = std::time::Instant::now();
    let mut byte = [0u8; 1];
    // Closed (EOF, or a 408 first) well before the read's own 30 s.
    let read = std::io::Read::read(&mut silent, &mut byte);
    let waited = opened.elapsed();
    assert!(
        read.is_ok() && waited < Duration::from_secs(25),
        "{read:?} after {waited:?}"
    );
    rigtap.signal("TERM");
    let (code, _, stderr) = rigtap.finish(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{stderr}");
}
