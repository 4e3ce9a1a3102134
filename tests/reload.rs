//! Reload, as Vector proves it (its `topology/test/reload.rs` and `doesnt_reload.rs`):
//! what must change does, and what must not, does not. A changed target list adds and
//! removes only those miners (counted on the simulator's side: the others keep their
//! connection and session); a changed sink is drained and replaced with no sample lost;
//! an invalid file leaves the pipeline untouched; SIGHUP reloads, and the service
//! manager hears READY, RELOADING, READY, STOPPING.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rigtap::sim::Fleet;
use support::http::request;
use support::net::free_port;
use support::python::run_script;
use support::{ledger, sim_config, start, start_with_env};

/// Writes an inventory of the fleet's miners `range`.
fn inventory(fleet: &Fleet, range: std::ops::Range<usize>, path: &std::path::Path) {
    let mut csv = String::from("id,address\n");
    for row in &fleet.inventory()[range] {
        csv.push_str(&format!("{},{}\n", row.id, row.address));
    }
    std::fs::write(path, csv).unwrap();
}

/// Lines of stdout, as they come, with when they came.
fn lines(rigtap: &mut support::Rigtap) -> mpsc::Receiver<(Instant, serde_json::Value)> {
    let stdout = rigtap.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let value = serde_json::from_str(&line).expect("JSON lines");
            if tx.send((Instant::now(), value)).is_err() {
                return;
            }
        }
    });
    rx
}

/// Reads samples until `done` holds of them, or panics after `limit`.
fn until(
    rx: &mpsc::Receiver<(Instant, serde_json::Value)>,
    seen: &mut Vec<(Instant, serde_json::Value)>,
    limit: Duration,
    done: impl Fn(&[(Instant, serde_json::Value)]) -> bool,
) {
    let deadline = Instant::now() + limit;
    while !done(seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "not reached within {limit:?}; {} samples seen",
            seen.len()
        );
        if let Ok(sample) = rx.recv_timeout(left.min(Duration::from_millis(200))) {
            seen.push(sample);
        }
    }
}

fn online(seen: &[(Instant, serde_json::Value)]) -> BTreeSet<String> {
    seen.iter()
        .filter(|(_, s)| s["state"] == "online")
        .map(|(_, s)| s["miner_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_target_list_adds_and_removes_only_those_miners() {
    let fleet = Fleet::start(sim_config(200)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("miners.csv");
    inventory(&fleet, 0..150, &list);
    let api = format!("127.0.0.1:{}", free_port());
    let yaml = format!(
        "api: {{address: {api}}}\nsources:\n  fleet:\n    type: bos\n    profile: development\n    interval: 1s\n    targets: {{inventory: {}}}\n    username: root\n    password: root\nsinks:\n  out: {{type: stdout, inputs: [fleet]}}\n",
        list.display()
    );
    let mut rigtap = start(&yaml, &[]);
    let rx = lines(&mut rigtap);
    let mut seen = Vec::new();
    until(&rx, &mut seen, Duration::from_secs(60), |s| {
        online(s).len() == 150
    });
    let id = |i: usize| fleet.inventory()[i].id.to_string();
    let before: Vec<(u64, u64)> = (20..150)
        .map(|i| {
            (
                fleet.counters(i).accepted.load(Relaxed),
                fleet.calls(i).logins.load(Relaxed),
            )
        })
        .collect();

    inventory(&fleet, 20..200, &list);
    let reloaded_at = Instant::now();
    let (code, body) = tokio::task::spawn_blocking({
        let api = api.clone();
        move || request(&api, "POST", "/reload")
    })
    .await
    .unwrap();
    assert_eq!(code, 200, "{body}");
    let changes: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        changes["reconfigured"],
        serde_json::json!([["fleet", "50 miner(s) added, 20 removed"]]),
        "{body}"
    );
    assert_eq!(changes["replaced"], serde_json::json!([]), "{body}");

    // The 50 new miners come online.
    let new: BTreeSet<String> = (150..200).map(id).collect();
    until(&rx, &mut seen, Duration::from_secs(60), |s| {
        new.is_subset(&online(
            &s.iter()
                .filter(|(at, _)| *at >= reloaded_at)
                .cloned()
                .collect::<Vec<_>>(),
        ))
    });
    // The 20 removed miners are closed.
    let deadline = Instant::now() + Duration::from_secs(20);
    while (0..20).any(|i| fleet.counters(i).open.load(Relaxed) > 0) {
        assert!(
            Instant::now() < deadline,
            "the removed miners' connections close"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Three more seconds of samples, then: the 130 others kept their connection and
    // their session (no new connection, no new login), and their samples never stopped.
    let settle = Instant::now() + Duration::from_secs(3);
    until(&rx, &mut seen, Duration::from_secs(10), |_| {
        Instant::now() >= settle
    });
    for (i, (accepted, logins)) in (20..150).zip(before) {
        assert_eq!(
            fleet.counters(i).accepted.load(Relaxed),
            accepted,
            "miner {i} reconnected"
        );
        assert_eq!(
            fleet.calls(i).logins.load(Relaxed),
            logins,
            "miner {i} logged in again"
        );
    }
    let mut polls: BTreeMap<String, Vec<Instant>> = BTreeMap::new();
    for (at, s) in &seen {
        if s["kind"] == "miner" {
            polls
                .entry(s["miner_id"].as_str().unwrap().into())
                .or_default()
                .push(*at);
        }
    }
    let window = reloaded_at - Duration::from_secs(3);
    for i in 20..150 {
        let times: Vec<&Instant> = polls[&id(i)].iter().filter(|t| **t >= window).collect();
        let gap = times
            .windows(2)
            .map(|w| w[1].duration_since(*w[0]))
            .max()
            .unwrap();
        assert!(
            gap < Duration::from_millis(3000),
            "miner {i} went {gap:?} without a sample across the reload"
        );
    }
    let removed_last: Vec<Instant> = (0..20)
        .filter_map(|i| polls.get(&id(i)).and_then(|p| p.last()).copied())
        .collect();
    let stopped = Instant::now() - Duration::from_secs(2);
    assert!(
        removed_last.iter().all(|t| *t < stopped),
        "the removed miners are no longer polled"
    );

    rigtap.signal("TERM");
    let (code, _, stderr) =
        tokio::task::spawn_blocking(move || rigtap.finish(Duration::from_secs(30)))
            .await
            .unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("\"reconfigured\""),
        "the reload is logged with what changed: {stderr}"
    );
}

#[test]
fn a_changed_sink_is_drained_and_replaced_with_no_sample_lost() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    let api = format!("127.0.0.1:{}", free_port());
    let yaml = |compression: &str| {
        format!(
            "api: {{address: {api}}}\nsources:\n  gen: {{type: generate, rate: 5000, miners: 20}}\nsinks:\n  files:\n    type: parquet\n    inputs: [gen]\n    path: {}\n    compression: {compression}\n    batch: {{timeout: 200ms}}\n",
            files.display()
        )
    };
    let rigtap = start_with_env(&yaml("zstd"), &[], &[]);
    let config = rigtap.config_path();
    std::thread::sleep(Duration::from_millis(1500));
    std::fs::write(&config, yaml("snappy")).unwrap();
    let (code, body) = request(&api, "POST", "/reload");
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["replaced"],
        serde_json::json!(["files"]),
        "{body}"
    );
    std::thread::sleep(Duration::from_millis(1500));
    rigtap.signal("TERM");
    let (code, logs, stderr) = rigtap.finish(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{stderr}");
    let ledger = ledger(&logs, "gen", "files");
    assert!(ledger.emitted > 5000, "{ledger:?}");
    assert_eq!(
        (ledger.delivered, ledger.dropped),
        (ledger.emitted, 0),
        "{ledger:?}"
    );

    // Both generations wrote files, and together they hold every sample, once.
    let output = run_script("parquet_read.py", &[files.as_os_str(), "shares".as_ref()]);
    let read: serde_json::Value = serde_json::from_slice(&output).unwrap();
    assert_eq!(read["rows"], ledger.emitted, "{read}");
    assert_eq!(read["distinct"], ledger.emitted, "no sample twice: {read}");
    assert_eq!(
        read["contiguous"], true,
        "no gap in any miner's counter: {read}"
    );
    let codecs: BTreeSet<&str> = read["codecs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(codecs, BTreeSet::from(["SNAPPY", "ZSTD"]), "{read}");
}

/// A parquet sink renamed by a reload, keeping its disk buffer and either its
/// directory or not: the new sink starts only once the old one has ended (one writer
/// per directory), so it neither finds the directory locked (the pipeline used to
/// fail) nor delivers again what the old one was still delivering from the buffer
/// (every such sample used to be written twice).
#[test]
fn a_renamed_sink_starts_once_the_one_it_replaces_has_ended() {
    for same_path in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let trees = dir.path().join("trees");
        let api = format!("127.0.0.1:{}", free_port());
        let yaml = |id: &str, tree: &str| {
            format!(
                "api: {{address: {api}}}\nsources:\n  gen: {{type: generate, rate: 20000, miners: 20}}\nsinks:\n  {id}:\n    type: parquet\n    inputs: [gen]\n    path: {}\n    batch: {{timeout: 200ms}}\n    buffer: {{type: disk, path: {}}}\n",
                trees.join(tree).display(),
                dir.path().join("buffer").display()
            )
        };
        let rigtap = start_with_env(&yaml("files", "a"), &[], &[]);
        let config = rigtap.config_path();
        std::thread::sleep(Duration::from_millis(1500));
        let tree = if same_path { "a" } else { "b" };
        std::fs::write(&config, yaml("renamed", tree)).unwrap();
        let (code, body) = request(&api, "POST", "/reload");
        assert_eq!(code, 200, "{body}");
        std::thread::sleep(Duration::from_millis(1500));
        rigtap.signal("TERM");
        let (code, logs, stderr) = rigtap.finish(Duration::from_secs(30));
        assert_eq!(code, Some(0), "same path {same_path}: {stderr}");
        let (old, new) = (
            ledger(&logs, "gen", "files"),
            ledger(&logs, "gen", "renamed"),
        );
        let emitted = old.emitted;
        assert!(emitted > 20_000, "{old:?}");
        assert_eq!(
            (old.delivered + new.delivered, old.dropped + new.dropped),
            (emitted, 0),
            "same path {same_path}: {old:?} {new:?}"
        );
        let output = run_script("parquet_read.py", &[trees.as_os_str(), "shares".as_ref()]);
        let read: serde_json::Value = serde_json::from_slice(&output).unwrap();
        assert_eq!(read["rows"], emitted, "same path {same_path}: {read}");
        assert_eq!(read["distinct"], emitted, "no sample twice: {read}");
        assert_eq!(read["contiguous"], true, "no gap: {read}");
    }
}

/// An id that changes role in a reload (a source becomes a sink) is a new component:
/// the sink's counts start afresh instead of carrying on the source's.
#[test]
fn an_id_that_changes_role_starts_its_counts_afresh() {
    let api = format!("127.0.0.1:{}", free_port());
    let before = format!("api: {{address: {api}}}\nsources:\n  x: {{type: generate, rate: 2000, miners: 5}}\nsinks:\n  out: {{type: stdout, inputs: [x]}}\n");
    let after = format!("api: {{address: {api}}}\nsources:\n  gen: {{type: generate, rate: 2000, miners: 5}}\nsinks:\n  x: {{type: stdout, inputs: [gen]}}\n");
    let rigtap = support::start_writing_to(&before, &[], std::process::Stdio::null());
    std::thread::sleep(Duration::from_millis(1000));
    std::fs::write(rigtap.config_path(), after).unwrap();
    let (code, body) = request(&api, "POST", "/reload");
    assert_eq!(code, 200, "{body}");
    std::thread::sleep(Duration::from_millis(1000));
    rigtap.signal("TERM");
    let (code, logs, stderr) = rigtap.finish(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{stderr}");
    let sink = ledger(&logs, "gen", "x");
    let last = logs
        .iter()
        .rfind(|l| l["component"] == "x" && l["message"] == "component finished")
        .unwrap();
    assert_eq!(last["samples_in"], sink.emitted, "{last}");
    assert_eq!(
        (sink.delivered, sink.dropped),
        (sink.emitted, 0),
        "the sink counts only its own: {sink:?}"
    );
}

/// A `cgminer` source whose settings read the same but whose inventory file lost rows
/// is restarted with the miners left (it kept polling all of them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cgminer_source_takes_its_changed_inventory() {
    let fleet = Fleet::start(rigtap::sim::SimConfig {
        stock: 1.0,
        ..sim_config(6)
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("fleet.csv");
    fleet.write_inventory(&inventory).unwrap();
    let api = format!("127.0.0.1:{}", free_port());
    let yaml = format!(
        "api: {{address: {api}}}\nsources:\n  stock: {{type: cgminer, interval: 300ms, targets: {{inventory: {}}}}}\nsinks:\n  out: {{type: stdout, inputs: [stock]}}\n",
        inventory.display()
    );
    let rigtap = support::start_writing_to(&yaml, &[], std::process::Stdio::null());
    let base = format!("http://{api}");
    let miners = |scraped: &serde_json::Value| {
        support::scrape::value(
            scraped,
            "rigtap_source_miners",
            "rigtap_source_miners",
            &[("source", "stock")],
        )
    };
    let (code, body, scraped) = tokio::task::spawn_blocking(move || {
        support::scrape::scrape_until(&base, Duration::from_secs(10), |s| miners(s) == 6.0);
        // The header and the first two miners.
        let rows: Vec<String> = std::fs::read_to_string(&inventory)
            .unwrap()
            .lines()
            .take(3)
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&inventory, rows.concat()).unwrap();
        let (code, body) = request(&api, "POST", "/reload");
        let scraped =
            support::scrape::scrape_until(&base, Duration::from_secs(10), |s| miners(s) == 2.0);
        (code, body, scraped)
    })
    .await
    .unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["replaced"],
        serde_json::json!(["stock"]),
        "{body}"
    );
    assert_eq!(miners(&scraped), 2.0);
    rigtap.signal("TERM");
    let (code, logs, stderr) =
        tokio::task::block_in_place(|| rigtap.finish(Duration::from_secs(30)));
    assert_eq!(code, Some(0), "{stderr}");
    let ledger = ledger(&logs, "stock", "out");
    assert_eq!(
        (ledger.delivered, ledger.dropped),
        (ledger.emitted, 0),
        "{ledger:?}"
    );
}

#[test]
fn an_invalid_file_leaves_the_pipeline_running_and_says_why() {
    let api = format!("127.0.0.1:{}", free_port());
    let yaml = format!("api: {{address: {api}}}\nsources:\n  gen: {{type: generate, rate: 1000}}\nsinks:\n  out: {{type: stdout, inputs: [gen]}}\n");
    let mut rigtap = start(&yaml, &[]);
    let config = rigtap.config_path();
    rigtap.line().expect("samples flow");
    std::fs::write(&config, yaml.replace("rate: 1000", "rate: fast")).unwrap();
    let (code, body) = request(&api, "POST", "/reload");
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("pipeline.yaml:3:31: expected a number, found `fast`"),
        "{body}"
    );
    // Still running, on the old file.
    for _ in 0..100 {
        rigtap.line().expect("samples still flow");
    }
    let (code, _) = request(&api, "GET", "/health");
    assert_eq!(code, 200);
    rigtap.signal("TERM");
    let (code, logs, stderr) = rigtap.finish(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("reload refused, the pipeline runs on unchanged"),
        "{stderr}"
    );
    assert!(
        logs.iter().any(|l| l["message"] == "pipeline stopped"),
        "{stderr}"
    );
}

#[test]
fn sighup_reloads_and_the_service_manager_hears_each_step() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let yaml = "api: {enabled: false}\nsources:\n  gen: {type: generate, rate: 100}\nsinks:\n  out: {type: stdout, inputs: [gen]}\n";
    let env = [("NOTIFY_SOCKET", socket_path.display().to_string())];
    let mut rigtap = start_with_env(yaml, &[], &env);
    let mut heard = Vec::new();
    let next = || {
        let mut buffer = [0u8; 4096];
        let n = socket.recv(&mut buffer).expect("a notification");
        String::from_utf8_lossy(&buffer[..n]).to_string()
    };
    heard.push(next());
    rigtap.line().expect("samples flow");
    rigtap.signal("HUP");
    heard.push(next());
    heard.push(next());
    rigtap.signal("TERM");
    heard.push(next());
    let (code, _, stderr) = rigtap.finish(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{stderr}");
    let first_words: Vec<&str> = heard
        .iter()
        .map(|m| m.lines().next().unwrap_or(""))
        .collect();
    assert_eq!(
        first_words,
        ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"],
        "{heard:?}"
    );
    assert!(
        heard[1].contains("MONOTONIC_USEC="),
        "systemd 253 needs the time: {heard:?}"
    );
}

#[test]
fn watch_reloads_when_the_file_changes() {
    let api = format!("127.0.0.1:{}", free_port());
    let yaml = format!("api: {{address: {api}}}\nsources:\n  gen: {{type: generate, rate: 1000}}\nsinks:\n  out: {{type: stdout, inputs: [gen]}}\n");
    let mut rigtap = start(&yaml, &["--watch"]);
    let config = rigtap.config_path();
    rigtap.line().expect("samples flow");
    let added = yaml.replace(
        "sinks:\n",
        "transforms:\n  hot: {type: filter, inputs: [gen], condition: 'temp_chip_c > 0'}\nsinks:\n  also: {type: stdout, inputs: [hot]}\n",
    );
    std::fs::write(&config, added).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        rigtap.line().expect("samples still flow");
        let (_, status) = request(&api, "GET", "/status");
        if status.contains("\"id\":\"hot\"") && status.contains("\"id\":\"also\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the change was not picked up: {status}"
        );
    }
    rigtap.signal("TERM");
    let reader = std::thread::spawn({
        let mut rigtap_lines = Vec::new();
        let stdout = rigtap.stdout.take();
        move || {
            if let Some(stdout) = stdout {
                rigtap_lines.extend(stdout.lines().map_while(Result::ok));
            }
            rigtap_lines.len()
        }
    });
    let (code, logs, stderr) = rigtap.finish(Duration::from_secs(30));
    reader.join().unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("the config file changed; reloading"),
        "{stderr}"
    );
    let hot = ledger(&logs, "gen", "out");
    assert_eq!((hot.delivered, hot.dropped), (hot.emitted, 0), "{hot:?}");
}

/// `VmHWM` (peak resident memory) of process `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// `POST /reload`, answered within 10 s (or the test fails, instead of waiting on a
/// collector that hangs).
fn reload_within_10s(api: &str) -> (u16, String) {
    let (tx, rx) = mpsc::channel();
    let api = api.to_string();
    std::thread::spawn(move || {
        let _ = tx.send(request(&api, "POST", "/reload"));
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("POST /reload answers within 10 s")
}

#[test]
fn an_oversized_file_or_a_fifo_is_refused_by_reload_and_watch_without_reading_it() {
    let api = format!("127.0.0.1:{}", free_port());
    let yaml = format!("api: {{address: {api}}}\nsources:\n  gen: {{type: generate, rate: 1000}}\nsinks:\n  out: {{type: stdout, inputs: [gen]}}\n");
    let mut rigtap = start(&yaml, &["--watch"]);
    let config = rigtap.config_path();
    rigtap.line().expect("samples flow");
    let stdout = rigtap.stdout.take().unwrap();
    let reader = std::thread::spawn(move || stdout.lines().map_while(Result::ok).count());
    let pid = rigtap.child.id();
    let baseline = peak_rss_kib(pid);

    // 200 MB (sparse: made at once), replaced in one rename as editors save.
    let big = config.with_extension("big");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(200 << 20)
        .unwrap();
    std::fs::rename(&big, &config).unwrap();
    std::thread::sleep(Duration::from_millis(2500)); // the watcher looks twice
    let (code, body) = reload_within_10s(&api);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("larger than 16 MiB"), "{body}");
    let peak = peak_rss_kib(pid);
    assert!(
        peak < baseline + 64 * 1024,
        "the 200 MB file was read: peak RSS {peak} KiB against {baseline} KiB before"
    );

    // A FIFO nobody writes to: neither the reload nor the watcher waits on it.
    std::fs::remove_file(&config).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&config)
        .status()
        .unwrap();
    assert!(made.success());
    std::thread::sleep(Duration::from_millis(1500));
    let (code, body) = reload_within_10s(&api);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("it is a FIFO, not a regular file"), "{body}");
    let (code, _) = request(&api, "GET", "/health");
    assert_eq!(code, 200, "the pipeline runs on unchanged");

    // The file back, and the watcher picks it up.
    std::fs::remove_file(&config).unwrap();
    std::fs::write(&config, &yaml).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    rigtap.signal("TERM");
    let (code, logs, stderr) = rigtap.finish(Duration::from_secs(30));
    reader.join().unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("reload refused, the pipeline runs on unchanged"),
        "{stderr}"
    );
    assert!(
        logs.iter()
            .any(|l| l["message"] == "reloaded: nothing changed"),
        "the watcher reloads the regular file again: {stderr}"
    );
    let ledger = ledger(&logs, "gen", "out");
    assert_eq!(
        (ledger.delivered, ledger.dropped),
        (ledger.emitted, 0),
        "{ledger:?}"
    );
}
