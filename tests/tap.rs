//! `rigtap tap` against the running pipeline's API: any component id reaches its
//! component (it is percent-encoded in the path and decoded by the API), a refusal is
//! an error with the API's message, and `--limit` prints exactly that many samples. A
//! watcher that never reads costs the collector a bounded memory and holds nothing
//! back.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::http::request;
use support::net::free_port;
use support::start_writing_to;

/// Runs `rigtap tap -c CONFIG ARGS`, killed (and the test failed) after 20 s.
fn tap(config: &Path, args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_rigtap"))
        .args(["tap", "-c"])
        .arg(config)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rigtap tap");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(output) => output.expect("rigtap tap's output"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("rigtap tap {args:?} did not exit within 20 s");
        }
    }
}

fn lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect()
}

#[test]
fn any_component_id_is_tapped_and_a_refusal_is_an_error() {
    let api = format!("127.0.0.1:{}", free_port());
    // Two sources told apart by their fleets' sizes.
    let yaml = format!(
        "api: {{address: {api}}}\nsources:\n  \"gén 1\": {{type: generate, rate: 2000, miners: 1}}\n  \"a/b?c\": {{type: generate, rate: 2000, miners: 7}}\nsinks:\n  out: {{type: stdout, inputs: [\"gén 1\", \"a/b?c\"]}}\n"
    );
    let rigtap = start_writing_to(&yaml, &[], Stdio::null());
    let config = rigtap.config_path();
    let (code, _) = request(&api, "GET", "/health");
    assert_eq!(code, 200);

    for (id, miners) in [("gén 1", 1), ("a/b?c", 7)] {
        let output = tap(&config, &[id, "--limit", "40"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{id}: {stderr}");
        let samples = lines(&output);
        assert_eq!(samples.len(), 40, "{id}: {stderr}");
        let fleet: std::collections::BTreeSet<&str> = samples
            .iter()
            .map(|s| s["miner_id"].as_str().expect("miner_id"))
            .collect();
        assert!(
            fleet.len() <= miners,
            "{id} is a fleet of {miners}: {fleet:?}"
        );
    }

    // `--limit 0` prints nothing, once the API has accepted the tap.
    let output = tap(&config, &["gén 1", "--limit", "0"]);
    assert!(output.status.success(), "{output:?}");
    assert!(output.stdout.is_empty(), "{output:?}");

    // An unknown component: exit 1, the API's message on stderr, nothing printed.
    for args in [&["a/b"][..], &["nope", "--limit", "0"]] {
        let output = tap(&config, args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("404 Not Found"), "{args:?}: {stderr}");
        assert!(stderr.contains("no source or transform `"), "{stderr}");
        assert!(output.stdout.is_empty(), "{output:?}");
    }
    rigtap.signal("TERM");
    let (code, _, stderr) = rigtap.finish(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{stderr}");
}

/// An API on a free port that answers one request with `answer` and closes; the
/// request it read, and a pipeline file naming it (in `dir`).
fn fake_api(
    answer: &'static [u8],
    dir: &Path,
) -> (std::thread::JoinHandle<String>, std::path::PathBuf) {
    let port = free_port();
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
            request.push(byte[0]);
        }
        stream.write_all(answer).unwrap();
        String::from_utf8_lossy(&request).to_string()
    });
    let config = dir.join("pipeline.yaml");
    std::fs::write(
        &config,
        format!("api: {{address: 127.0.0.1:{port}}}\nsources:\n  g: {{type: generate}}\nsinks:\n  out: {{type: stdout, inputs: [g]}}\n"),
    )
    .unwrap();
    (server, config)
}

#[test]
fn the_limit_counts_samples_not_the_line_that_says_some_were_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (server, config) = fake_api(
        b"HTTP/1.0 200 OK\r\ncontent-type: application/x-ndjson\r\n\r\n{\"tap_skipped_samples\":5}\n{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n",
        dir.path(),
    );
    let output = tap(&config, &["g", "--limit", "2"]);
    assert_eq!(output.status.code(), Some(0));
    let printed = lines(&output);
    assert_eq!(
        printed,
        [
            serde_json::json!({"tap_skipped_samples": 5}),
            serde_json::json!({"n": 1}),
            serde_json::json!({"n": 2})
        ]
    );
    server.join().unwrap();
}

#[test]
fn a_refusal_without_a_body_is_an_error_with_its_status() {
    // An API that answers 400 with an empty body, as hyper does to a request line it
    // cannot parse.
    let dir = tempfile::tempdir().unwrap();
    let (server, config) = fake_api(
        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        dir.path(),
    );
    let output = tap(&config, &["g"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the API answered `HTTP/1.1 400 Bad Request`"),
        "{stderr}"
    );
    let request = server.join().unwrap();
    assert!(request.starts_with("GET /tap/g HTTP/1.0\r\n"), "{request}");
}

#[test]
fn a_watcher_that_never_reads_costs_bounded_memory_and_holds_nothing_back() {
    let api = format!("127.0.0.1:{}", free_port());
    let yaml = format!(
        "api: {{address: {api}}}\nsources:\n  gen: {{type: generate, rate: 100000, miners: 1000, batch_size: 20000}}\nsinks:\n  out: {{type: stdout, inputs: [gen]}}\n"
    );
    let rigtap = start_writing_to(&yaml, &[], Stdio::null());
    let (code, _) = request(&api, "GET", "/health");
    assert_eq!(code, 200);
    std::thread::sleep(Duration::from_secs(2));
    let baseline = rigtap.rss_kib();

    // A watcher that connects and never reads.
    let mut watcher = std::net::TcpStream::connect(&api).unwrap();
    write!(watcher, "GET /tap/gen HTTP/1.0\r\nHost: {api}\r\n\r\n").unwrap();
    let mut peak = 0;
    for _ in 0..60 {
        std::thread::sleep(Duration::from_millis(100));
        peak = peak.max(rigtap.rss_kib());
    }
    assert!(
        peak < baseline + 64 * 1024,
        "RSS rose from {baseline} KiB to {peak} KiB with a watcher that does not read"
    );

    // When it reads at last, it is told how many samples it missed.
    watcher
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(&watcher));
    let told = lines
        .by_ref()
        .take(1_000_000)
        .map_while(Result::ok)
        .any(|line| line.starts_with("{\"tap_skipped_samples\":"));
    assert!(told, "no tap_skipped_samples line");
    drop(watcher);

    rigtap.signal("TERM");
    let (code, logs, stderr) = rigtap.finish(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{stderr}");
    let ledger = support::ledger(&logs, "gen", "out");
    assert!(ledger.emitted > 100_000, "{ledger:?}");
    assert_eq!(
        (ledger.delivered, ledger.dropped),
        (ledger.emitted, 0),
        "{ledger:?}"
    );
}

/// A tap holds its connection while it watches: 64 are served at once, and the next
/// is refused, so the API's connections left keep /health answered.
#[test]
fn at_most_64_taps_are_open_at_once() {
    let api = format!("127.0.0.1:{}", free_port());
    let yaml = format!(
        "api: {{address: {api}}}\nsources:\n  gen: {{type: generate, rate: 100}}\nsinks:\n  out: {{type: stdout, inputs: [gen]}}\n"
    );
    let rigtap = start_writing_to(&yaml, &[], Stdio::null());
    let (code, _) = request(&api, "GET", "/health");
    assert_eq!(code, 200);
    let open = |n: usize| -> Vec<std::net::TcpStream> {
        (0..n)
            .map(|_| {
                let mut watcher = std::net::TcpStream::connect(&api).unwrap();
                write!(watcher, "GET /tap/gen HTTP/1.0\r\nHost: {api}\r\n\r\n").unwrap();
                watcher
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let mut status = String::new();
                std::io::BufRead::read_line(&mut std::io::BufReader::new(&watcher), &mut status)
                    .unwrap();
                assert!(status.contains(" 200 "), "{status}");
                watcher
            })
            .collect()
    };
    let watchers = open(64);
    let (code, body) = request(&api, "GET", "/tap/gen");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("64 taps are open"), "{body}");
    assert_eq!(request(&api, "GET", "/health").0, 200);
    // Once they close (noticed at their next write), another may watch.
    drop(watchers);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut watcher = std::net::TcpStream::connect(&api).unwrap();
        write!(watcher, "GET /tap/gen HTTP/1.0\r\nHost: {api}\r\n\r\n").unwrap();
        let mut status = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(&watcher), &mut status).unwrap();
        if status.contains(" 200 ") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still refused: {status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    rigtap.signal("TERM");
    let (code, _, stderr) = rigtap.finish(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{stderr}");
}
