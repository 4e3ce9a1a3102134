//! Completeness as data: each poll a miner owed and did not deliver is in a `kind: gap`
//! sample with why, and per source `expected = received + missed`. Of 20 miners, two
//! (10%) killed for 30 s, one whose status stream stalls, and one slower than its
//! deadline, collected into Parquet; DuckDB finds exactly those miners' gaps, with
//! their reasons.

mod support;

use std::time::Duration;

use rigtap::sim::faults::{FaultKind, FaultRule};
use rigtap::sim::Fleet;
use rigtap::toolkit::units::HumanDuration;
use support::python::run_script;
use support::{fault, sim_config, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_stalled_and_slow_miners_leave_gaps_with_why_and_the_counts_add_up() {
    const RUN: u64 = 40;
    let mut config = sim_config(20);
    config.faults = vec![
        FaultRule {
            delay: Some(HumanDuration(Duration::from_secs(3))),
            ..fault(FaultKind::Slow, &[19])
        },
        fault(FaultKind::Stall, &[18]),
    ];
    let mut fleet = Fleet::start(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("fleet.csv");
    fleet.write_inventory(&inventory).unwrap();
    let files = dir.path().join("files");
    let yaml = format!(
        "
sources:
  fleet:
    type: bos
    profile: development
    interval: 1s
    timeout: 1s
    stream: true
    stream_idle_timeout: 2s
    targets: {{inventory: {}}}
    username: root
    password: root
    backoff: {{initial: 200ms, max: 1s}}
    breaker: {{failure_threshold: 1000}}
sinks:
  files: {{type: parquet, inputs: [fleet], path: {}, batch: {{timeout: 500ms}}}}
",
        inventory.display(),
        files.display()
    );
    let rigtap = start(&yaml, &["--duration", &format!("{RUN}s")]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    for i in [0, 1] {
        fleet.kill(i).await;
    }
    tokio::time::sleep(Duration::from_secs(30)).await;
    for i in [0, 1] {
        fleet.restart(i).await.unwrap();
    }
    let (code, logs, stderr) =
        tokio::task::block_in_place(|| rigtap.finish(Duration::from_secs(60)));
    assert_eq!(code, Some(0), "{stderr}");
    let finished = support::source_summary(&logs, "bos source finished");
    let count = |key: &str| finished[key].as_u64().unwrap();
    let (expected, received, missed) = (
        count("polls_expected"),
        count("polls_received"),
        count("polls_missed"),
    );
    assert_eq!(expected, received + missed, "{finished}");

    let output = run_script("parquet_read.py", &[files.as_os_str(), "gaps".as_ref()]);
    let miners: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&output).unwrap();
    let mut in_files = 0;
    for (miner, m) in &miners {
        let gaps = m["gaps"].as_array().unwrap();
        let polls = m["polls"].as_u64().unwrap();
        // A stream's gaps have no missed polls (null).
        let missed: u64 = gaps.iter().filter_map(|g| g["missed"].as_u64()).sum();
        in_files += missed;
        let codes: Vec<&str> = gaps.iter().map(|g| g["code"].as_str().unwrap()).collect();
        match miner.as_str() {
            "sim-00000" | "sim-00001" => {
                assert_eq!(codes, ["unreachable"], "{miner}: {m}");
                assert!(
                    (27..=33).contains(&missed),
                    "{miner}: 30 s down at 1 s: {m}"
                );
            }
            "sim-00018" => {
                // Polled all along; its stream silent from its first message on,
                // reopened every 2 s, each silence a gap.
                assert_eq!(codes, ["timeout"], "{miner}: {m}");
                assert!(gaps[0]["missed"].is_null(), "no poll missed: {m}");
                assert!(
                    gaps[0]["count"].as_u64().unwrap() >= RUN / 3,
                    "a gap per silence: {m}"
                );
                let seconds = gaps[0]["seconds"].as_f64().unwrap();
                assert!(seconds >= (RUN - 8) as f64, "silent the whole run: {m}");
            }
            "sim-00019" => {
                assert_eq!(polls, 0, "{miner} never answers in time: {m}");
                assert_eq!(codes, ["timeout"], "{miner}: {m}");
            }
            // Every poll delivered; on a machine too busy to start a poll on time,
            // the polls it lost to that are counted, `late`.
            _ => assert!(
                codes.iter().all(|c| *c == "late"),
                "{miner} delivered every poll: {m}"
            ),
        }
        // What it owed over the run: one poll a second, less the first one's spread.
        assert!(
            (RUN - 3..=RUN + 1).contains(&(polls + missed)),
            "{miner}: {polls} polls + {missed} missed over {RUN} s"
        );
    }
    assert_eq!(miners.len(), 20);
    assert_eq!(in_files, missed, "every missed poll is in a gap sample");
    eprintln!(
        "expected {expected} = received {received} + missed {missed}; gaps: {:?}",
        miners
            .iter()
            .filter(|(_, m)| !m["gaps"].as_array().unwrap().is_empty())
            .map(|(id, m)| (id, &m["gaps"]))
            .collect::<Vec<_>>()
    );
}

/// A connection recycled at its `connection_ttl` whose reconnect waits behind
/// `rate.connects`: the polls due meanwhile were neither made nor counted (3 of 12
/// expected); the schedule now carries over, and they are counted late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_due_while_a_recycled_connection_waits_to_reconnect_are_counted() {
    const RUN: u64 = 12;
    let fleet = Fleet::start(sim_config(1)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("fleet.csv");
    fleet.write_inventory(&inventory).unwrap();
    let yaml = format!(
        "
sources:
  fleet:
    type: bos
    profile: development
    interval: 1s
    connection_ttl: 3s
    rate: {{connects: 1/h}}
    targets: {{inventory: {}}}
    username: root
    password: root
sinks:
  out: {{type: stdout, inputs: [fleet]}}
",
        inventory.display()
    );
    let rigtap = support::start_writing_to(
        &yaml,
        &["--duration", &format!("{RUN}s")],
        std::process::Stdio::null(),
    );
    let (code, logs, stderr) =
        tokio::task::block_in_place(|| rigtap.finish(Duration::from_secs(60)));
    assert_eq!(code, Some(0), "{stderr}");
    let finished = support::source_summary(&logs, "bos source finished");
    let count = |key: &str| finished[key].as_u64().unwrap();
    let (expected, received, missed, late) = (
        count("polls_expected"),
        count("polls_received"),
        count("polls_missed"),
        count("polls_late"),
    );
    assert_eq!(expected, received + missed, "{finished}");
    // One connection of 3 s, then a wait for the next connect until the stop.
    assert!(received <= 4, "{finished}");
    assert!(
        expected >= RUN - 3 && late >= expected - received - 1,
        "{finished}"
    );
    fleet.shutdown().await;
}
