//! Record and replay: a `bos` source's `record:` keeps what the miners answered;
//! `rigtap sim --replay` serves it back over the same API, and the whole pipeline
//! makes the same samples of it. The committed recording (tests/data/replay, three
//! simulated miners, one poll each) replays into the committed golden samples.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use support::net::free_block;
use support::{start, SimProcess};

/// The distinct miner and board samples of a stdout JSON run, without their time and
/// the simulated inventory's labels (a replay's inventory has ids only).
fn distinct(lines: &[String]) -> BTreeSet<String> {
    lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(l).unwrap())
        .filter(|s| s["kind"] != "status")
        .map(|mut s| {
            for key in ["timestamp", "site", "rack", "model"] {
                s.remove(key);
            }
            serde_json::to_string(&s).unwrap()
        })
        .collect()
}

/// Collects from the miners of `inventory` for `seconds`, into stdout JSON lines.
fn collect(inventory: &Path, extra: &str, seconds: u64) -> Vec<String> {
    let yaml = format!(
        "sources:\n  fleet: {{type: bos, profile: development, interval: 1s, targets: {{inventory: {}}}, username: root, password: root{extra}}}\nsinks:\n  out: {{type: stdout, inputs: [fleet]}}\n",
        inventory.display()
    );
    let mut rigtap = start(&yaml, &["--duration", &format!("{seconds}s")]);
    let lines = rigtap.rest();
    let (code, _, stderr) = rigtap.finish(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{stderr}");
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_committed_recording_replays_into_the_golden_samples() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("replayed.csv");
    let recording = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/replay");
    let first = free_block(3).to_string();
    let _sim = SimProcess::start(&["--replay", recording, "--first", &first], &inventory, 3).await;
    let lines = tokio::task::block_in_place(|| collect(&inventory, "", 4));
    let golden: BTreeSet<String> = std::fs::read_to_string(format!("{recording}/golden.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let value: serde_json::Value = serde_json::from_str(l).unwrap();
            serde_json::to_string(&value).unwrap()
        })
        .collect();
    assert_eq!(
        golden.len(),
        12,
        "3 miners, each a miner sample and 3 boards"
    );
    assert_eq!(distinct(&lines), golden);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_recorded_replays_into_the_same_samples() {
    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("rec");
    // Record the simulated fleet (its own process), collecting for 4 s.
    let simulated = dir.path().join("simulated.csv");
    let first = free_block(4).to_string();
    let sim = SimProcess::start(
        &["--miners", "4", "--seed", "5", "--first", &first],
        &simulated,
        4,
    )
    .await;
    let extra = format!(", record: {{path: {}}}", recording.display());
    let recorded = tokio::task::block_in_place(|| collect(&simulated, &extra, 4));
    drop(sim);
    let files: Vec<_> = std::fs::read_dir(&recording).unwrap().collect();
    assert_eq!(files.len(), 1, "one file, well within the default 64 MiB");

    // Replay it, ten times faster, and collect again.
    let replayed_inventory = dir.path().join("replayed.csv");
    let first = free_block(4).to_string();
    let replay = recording.to_string_lossy().to_string();
    let _replay = SimProcess::start(
        &["--replay", &replay, "--speed", "10", "--first", &first],
        &replayed_inventory,
        4,
    )
    .await;
    let replayed = tokio::task::block_in_place(|| collect(&replayed_inventory, "", 3));
    let (recorded, replayed) = (distinct(&recorded), distinct(&replayed));
    let miners = |samples: &BTreeSet<String>| -> BTreeSet<String> {
        samples
            .iter()
            .map(|s| serde_json::from_str::<serde_json::Value>(s).unwrap()["miner_id"].to_string())
            .collect()
    };
    assert_eq!(
        miners(&replayed).len(),
        4,
        "every recorded miner, under its id"
    );
    assert!(!recorded.is_empty(), "the recorded run made samples");
    assert!(
        replayed.is_subset(&recorded),
        "every replayed sample is one the miners produced when recorded:\n{:?}",
        replayed.difference(&recorded).take(2).collect::<Vec<_>>()
    );
}
