//! Record and replay: a `bos` source's `record:` keeps what the miners answered;
//! `rigtap sim --replay` serves it back over the same API, and the whole pipeline
//! makes the same samples of it. The committed recording (tests/data/replay, three
//! simulated miners, one poll each) replays into the committed golden samples; a
//! mixed fleet's recording (Braiins OS over gRPC, stock firmware over the CGMiner API)
//! replays through both kinds of source.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::net::free_block;
use support::{start, SimProcess};

/// The distinct miner and board samples of a stdout JSON run, without their time and
/// the simulated inventory's labels (a replay's inventory has ids only).
fn distinct(lines: &[String]) -> BTreeSet<String> {
    lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(l).unwrap())
        // What the answers became: not the collector's own view (status, gaps).
        .filter(|s| s["kind"] != "status" && s["kind"] != "gap")
        .map(|mut s| {
            for key in ["timestamp", "site", "rack", "model"] {
                s.remove(key);
            }
            serde_json::to_string(&s).unwrap()
        })
        .collect()
}

/// Collects from the miners of `inventory` for `seconds`, into stdout JSON lines: a
/// `bos` source, and with `stock` a `cgminer` source beside it (each takes its miners
/// by the inventory's `api` column); with `record`, both record into that directory.
fn collect(inventory: &Path, stock: bool, record: Option<&Path>, seconds: u64) -> Vec<String> {
    let record = record.map_or(String::new(), |dir| {
        format!(", record: {{path: {}}}", dir.display())
    });
    let targets = format!("targets: {{inventory: {}}}", inventory.display());
    let mut yaml = format!(
        "sources:\n  fleet: {{type: bos, profile: development, interval: 1s, {targets}, username: root, password: root{record}}}\n"
    );
    let mut inputs = "fleet".to_string();
    if stock {
        // One combined command a poll: a replayed poll reads one recorded poll.
        yaml += &format!(
            "  stock: {{type: cgminer, interval: 1s, combine: true, {targets}{record}}}\n"
        );
        inputs += ", stock";
    }
    yaml += &format!("sinks:\n  out: {{type: stdout, inputs: [{inputs}]}}\n");
    let mut rigtap = start(&yaml, &["--duration", &format!("{seconds}s")]);
    let lines = rigtap.rest();
    let (code, _, stderr) = rigtap.finish(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{stderr}");
    lines
}

/// `rigtap sim --replay` of `recording` (its `miners`), ten times faster, and the
/// inventory it writes into `dir`.
async fn replay(dir: &Path, recording: &Path, miners: usize) -> (SimProcess, PathBuf) {
    let inventory = dir.join("replayed.csv");
    let first = free_block(miners).to_string();
    let recording = recording.to_string_lossy().to_string();
    let args = ["--replay", &recording, "--speed", "10", "--first", &first];
    (
        SimProcess::start(&args, &inventory, miners).await,
        inventory,
    )
}

/// The distinct `miner_id`s of `samples`.
fn miners(samples: &BTreeSet<String>) -> BTreeSet<String> {
    samples
        .iter()
        .map(|s| serde_json::from_str::<serde_json::Value>(s).unwrap()["miner_id"].to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_committed_recording_replays_into_the_golden_samples() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("replayed.csv");
    let recording = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/replay");
    let first = free_block(3).to_string();
    let _sim = SimProcess::start(&["--replay", recording, "--first", &first], &inventory, 3).await;
    let lines = tokio::task::block_in_place(|| collect(&inventory, false, None, 4));
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
    let recorded = tokio::task::block_in_place(|| collect(&simulated, false, Some(&recording), 4));
    drop(sim);
    let files: Vec<_> = std::fs::read_dir(&recording).unwrap().collect();
    assert_eq!(files.len(), 1, "one file, well within the default 64 MiB");

    // Replay it, ten times faster, and collect again.
    let (_replay, replayed_inventory) = replay(dir.path(), &recording, 4).await;
    let replayed = tokio::task::block_in_place(|| collect(&replayed_inventory, false, None, 3));
    let (recorded, replayed) = (distinct(&recorded), distinct(&replayed));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_fleet_replays_through_both_apis() {
    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("rec");
    let simulated = dir.path().join("simulated.csv");
    let first = free_block(6).to_string();
    let sim = SimProcess::start(
        &[
            "--miners", "6", "--seed", "3", "--stock", "0.5", "--first", &first,
        ],
        &simulated,
        6,
    )
    .await;
    let recorded = tokio::task::block_in_place(|| collect(&simulated, true, Some(&recording), 4));
    drop(sim);
    let mut files: Vec<String> = std::fs::read_dir(&recording)
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["answers-fleet-000000.jsonl", "answers-stock-000000.jsonl"],
        "each source its own file"
    );
    let stock_lines = std::fs::read_to_string(recording.join(&files[1])).unwrap();
    let line: serde_json::Value =
        serde_json::from_str(stock_lines.lines().next().unwrap()).unwrap();
    let answer = line["cgminer"]["summary+stats+edevs+pools"]
        .as_str()
        .unwrap();
    assert!(
        answer.ends_with('\0'),
        "kept as it came, NUL and all: {answer:?}"
    );

    let (_replay, replayed_inventory) = replay(dir.path(), &recording, 6).await;
    let inventory = std::fs::read_to_string(&replayed_inventory).unwrap();
    assert!(
        inventory.lines().next().unwrap().ends_with(",api"),
        "{inventory}"
    );
    let replayed = tokio::task::block_in_place(|| collect(&replayed_inventory, true, None, 3));
    let (recorded, replayed) = (distinct(&recorded), distinct(&replayed));
    assert_eq!(miners(&recorded).len(), 6);
    assert_eq!(
        miners(&replayed),
        miners(&recorded),
        "every recorded miner, under its id, through its API"
    );
    assert!(
        replayed.is_subset(&recorded),
        "every replayed sample is one the miners produced when recorded:\n{:?}",
        replayed.difference(&recorded).take(2).collect::<Vec<_>>()
    );
}
