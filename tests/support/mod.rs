//! Helpers shared by the integration tests, which all import them the same way
//! (`mod support;`): run the built `rigtap` on a pipeline written to a temporary file,
//! read its output, signal it, and read its JSON logs; a simulated fleet on a free
//! block of loopback addresses ([`sim_config`]); a `bos` source in the test's runtime
//! ([`collector`]); tansu ([`kafka`]); certificates ([`pki`]); the Python readers
//! ([`python`], [`scrape`]).
#![allow(dead_code)] // each test binary uses a different subset

pub mod collector;
pub mod http;
pub mod kafka;
pub mod net;
pub mod pki;
pub mod python;
pub mod scrape;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A simulated fleet of `miners` on a block of loopback addresses no one else uses
/// (seed 7, a status message every 200 ms); tests change what they need.
pub fn sim_config(miners: usize) -> rigtap::sim::SimConfig {
    rigtap::sim::SimConfig {
        miners,
        first: net::free_block(miners),
        seed: 7,
        status_interval: Duration::from_millis(200),
        ..rigtap::sim::SimConfig::default()
    }
}

/// A fault on the simulated `miners` (0-based), on every call.
pub fn fault(
    kind: rigtap::sim::faults::FaultKind,
    miners: &[usize],
) -> rigtap::sim::faults::FaultRule {
    rigtap::sim::faults::FaultRule {
        kind,
        fraction: None,
        miners: miners.to_vec(),
        probability: 1.0,
        delay: None,
        after: None,
        limit: None,
    }
}

/// `rigtap sim` in its own process (so a test can stop it with SIGSTOP, or replay a
/// recording); killed when dropped.
pub struct SimProcess(Child);

impl SimProcess {
    /// Starts `rigtap sim ARGS --inventory INVENTORY` and waits (up to 10 s) until the
    /// inventory lists `miners` miners: they listen.
    pub async fn start(args: &[&str], inventory: &std::path::Path, miners: usize) -> SimProcess {
        let sim = SimProcess(
            Command::new(env!("CARGO_BIN_EXE_rigtap"))
                .arg("sim")
                .args(args)
                .arg("--inventory")
                .arg(inventory)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start rigtap sim"),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(inventory).map_or(0, |t| t.lines().count()) < miners + 1 {
            assert!(
                Instant::now() < deadline,
                "the simulator wrote no inventory"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        sim
    }

    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &self.0.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success());
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        self.signal("CONT");
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Rigtap {
    pub child: Child,
    pub stdout: Option<BufReader<ChildStdout>>,
    stderr: Option<JoinHandle<String>>,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

/// Writes `yaml` to a temporary pipeline file and starts `rigtap run` on it.
pub fn start(yaml: &str, extra_args: &[&str]) -> Rigtap {
    start_with_env(yaml, extra_args, &[])
}

/// [`start`], with environment variables set for the process.
pub fn start_with_env(yaml: &str, extra_args: &[&str], env: &[(&str, String)]) -> Rigtap {
    launch(yaml, extra_args, env, Stdio::piped())
}

/// [`start`], with stdout going to `stdout` (a file, `/dev/full`) instead of a pipe.
pub fn start_writing_to(yaml: &str, extra_args: &[&str], stdout: Stdio) -> Rigtap {
    launch(yaml, extra_args, &[], stdout)
}

fn launch(yaml: &str, extra_args: &[&str], env: &[(&str, String)], stdout: Stdio) -> Rigtap {
    let dir = tempfile::tempdir().expect("temp dir");
    let path: PathBuf = dir.path().join("pipeline.yaml");
    std::fs::write(&path, yaml).expect("write pipeline");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rigtap"))
        .args(["--log-format", "json", "run", "-c"])
        .arg(&path)
        .args(extra_args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rigtap");
    let mut stderr = child.stderr.take().expect("stderr");
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    Rigtap {
        stdout: child.stdout.take().map(BufReader::new),
        child,
        stderr: Some(stderr),
        config: path,
        _dir: dir,
    }
}

impl Rigtap {
    /// The pipeline file it runs (a test may change it and ask for a reload).
    pub fn config_path(&self) -> PathBuf {
        self.config.clone()
    }

    /// Reads one line of stdout.
    pub fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.stdout.as_mut()?.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line),
        }
    }

    /// Reads stdout to its end.
    pub fn rest(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.line()).collect()
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Resident memory of the process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        rigtap::operator::process::rss_kib(&self.child.id().to_string())
            .expect("VmRSS in /proc/PID/status")
    }

    /// Waits for exit (bounded), returning the exit code and the JSON log lines.
    pub fn finish(mut self, limit: Duration) -> (Option<i32>, Vec<serde_json::Value>, String) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let stderr = self.stderr.take().map(|h| h.join().unwrap_or_default());
                let stderr = stderr.unwrap_or_default();
                let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
                panic!(
                    "rigtap did not exit within {limit:?}; its last log lines:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        let logs = stderr
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        (status.code(), logs, stderr)
    }
}

impl Drop for Rigtap {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `emitted` count the named generate source logged when it finished.
pub fn emitted(logs: &[serde_json::Value], source: &str) -> u64 {
    logs.iter()
        .find(|l| l["message"] == "generate source finished" && l["source"] == source)
        .and_then(|l| l["emitted"].as_u64())
        .unwrap_or_else(|| panic!("no `generate source finished` log for {source}"))
}

/// What one sink's log says of one run: the source emitted, the sink delivered and
/// dropped (with the reasons), and what is unaccounted for (must be 0).
#[derive(Debug)]
pub struct Ledger {
    pub emitted: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub drops: String,
    pub unaccounted: i64,
}

impl std::fmt::Display for Ledger {
    /// A row of the fault table: in, delivered, dropped by reason, unaccounted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} | {} | {} ({}) | {}",
            self.emitted, self.delivered, self.dropped, self.drops, self.unaccounted
        )
    }
}

/// The ledger of `sink` fed by `source` alone, from the final logs: each component's
/// `component finished` line, or its `component abandoned` line after a second signal.
pub fn ledger(logs: &[serde_json::Value], source: &str, sink: &str) -> Ledger {
    let last = |component: &str| {
        logs.iter()
            .rfind(|l| {
                l["component"] == component
                    && (l["message"] == "component finished"
                        || l["message"] == "component abandoned")
            })
            .cloned()
            .unwrap_or_else(|| panic!("no final counters logged for {component}"))
    };
    let (source, sink) = (last(source), last(sink));
    let count = |v: &serde_json::Value, key: &str| v[key].as_u64().unwrap_or(0);
    let emitted = count(&source, "samples_out");
    let (delivered, dropped) = (count(&sink, "samples_out"), count(&sink, "dropped"));
    Ledger {
        emitted,
        delivered,
        dropped,
        drops: sink["drops"].as_str().unwrap_or_default().to_string(),
        unaccounted: emitted as i64 - delivered as i64 - dropped as i64,
    }
}

/// A miner source's summary at its end, the log line `message` (`bos source
/// finished`, `cgminer source finished`).
pub fn source_summary(logs: &[serde_json::Value], message: &str) -> serde_json::Value {
    logs.iter()
        .find(|l| l["message"] == message)
        .cloned()
        .unwrap_or_else(|| panic!("no `{message}` log"))
}

/// The final counters a component logged.
pub fn finished(logs: &[serde_json::Value], component: &str) -> serde_json::Value {
    logs.iter()
        .find(|l| l["message"] == "component finished" && l["component"] == component)
        .cloned()
        .unwrap_or_else(|| panic!("no `component finished` log for {component}"))
}

/// Checks that JSON lines from a generate source hold, per miner, exactly the
/// counters 1..=n (nothing lost, nothing repeated); returns the total.
pub fn assert_contiguous(lines: &[String]) -> usize {
    let mut per_miner: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        per_miner
            .entry(v["miner_id"].as_str().expect("miner_id").to_string())
            .or_default()
            .push(v["shares_accepted"].as_u64().expect("shares_accepted"));
    }
    for (miner, mut seen) in per_miner {
        seen.sort_unstable();
        let expected: Vec<u64> = (1..=seen.len() as u64).collect();
        assert!(
            seen == expected,
            "miner {miner}: counters are not 1..={}",
            seen.len()
        );
    }
    lines.len()
}
