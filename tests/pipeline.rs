//! The engine end to end: `rigtap run` on generate → stdout pipelines.

mod support;

use std::time::Duration;

use support::{assert_contiguous, emitted, finished, start};

fn pipeline(generate: &str, sink: &str) -> String {
    format!(
        "sources:\n  gen:\n    type: generate\n{generate}sinks:\n  out:\n    type: stdout\n    inputs: [gen]\n{sink}"
    )
}

#[test]
fn delivers_exactly_the_configured_count() {
    let mut rigtap = start(
        &pipeline("    count: 5000\n    miners: 7\n    batch_size: 64\n", ""),
        &[],
    );
    let lines = rigtap.rest();
    let (code, logs, _) = rigtap.finish(Duration::from_secs(30));
    assert_eq!(code, Some(0));
    assert_eq!(assert_contiguous(&lines), 5000);
    assert_eq!(emitted(&logs, "gen"), 5000);
    assert_eq!(finished(&logs, "out")["samples_out"], 5000);
}

#[test]
fn sigterm_mid_run_loses_nothing() {
    let mut rigtap = start(&pipeline("    rate: 20000\n    miners: 50\n", ""), &[]);
    let first = rigtap.line().expect("samples flow before the signal");
    std::thread::sleep(Duration::from_millis(700));
    rigtap.signal("TERM");
    let mut lines = vec![first];
    lines.extend(rigtap.rest());
    let (code, logs, _) = rigtap.finish(Duration::from_secs(30));
    assert_eq!(code, Some(0), "an ordered stop exits 0");
    let n = emitted(&logs, "gen");
    assert!(n > 1000, "the source ran for a while ({n} samples)");
    assert_eq!(assert_contiguous(&lines) as u64, n, "count in == count out");
}

#[test]
fn duration_stops_and_drains() {
    let mut rigtap = start(&pipeline("    rate: 5000\n", ""), &["--duration", "1s"]);
    let lines = rigtap.rest();
    let (code, logs, _) = rigtap.finish(Duration::from_secs(30));
    assert_eq!(code, Some(0));
    assert!(logs
        .iter()
        .any(|l| l["message"] == "stopping: --duration reached"));
    assert_eq!(assert_contiguous(&lines) as u64, emitted(&logs, "gen"));
}

/// A reader that stops reading holds the whole pipeline back: the source's count stays
/// within the queues' capacity of what was delivered, and memory stays flat.
#[test]
fn slow_consumer_backpressures_the_source() {
    let mut rigtap = start(
        &pipeline("    batch_size: 100\n", "    buffer: { max_batches: 4 }\n"),
        &[],
    );
    let mut before_pause: Vec<String> = (0..2000).map_while(|_| rigtap.line()).collect();
    assert_eq!(before_pause.len(), 2000);
    std::thread::sleep(Duration::from_millis(500));
    let rss_early = rigtap.rss_kib();
    std::thread::sleep(Duration::from_secs(2));
    let rss_late = rigtap.rss_kib();
    rigtap.signal("TERM");
    let after: Vec<String> = rigtap.rest();
    let (code, logs, _) = rigtap.finish(Duration::from_secs(30));
    assert_eq!(code, Some(0));

    let n = emitted(&logs, "gen");
    let shortest = before_pause.iter().map(String::len).min().unwrap_or(1) as u64;
    // What can be in flight while the reader sleeps: the sink's queue (4 batches), the
    // batch the sink is writing, the batch the source is sending, and what fits in the
    // pipe (64 KiB on Linux) and in this test's read buffer (8 KiB).
    let in_flight = 4 * 100 + 100 + 100 + (64 * 1024 + 8 * 1024) / shortest;
    assert!(
        n <= before_pause.len() as u64 + in_flight,
        "source emitted {n} while only {} were read (bound {in_flight} in flight)",
        before_pause.len()
    );
    assert!(
        rss_late <= rss_early + 4 * 1024,
        "memory grew while the sink was blocked: {rss_early} KiB -> {rss_late} KiB"
    );
    before_pause.extend(after);
    assert_eq!(assert_contiguous(&before_pause) as u64, n);
}

/// A sink that opted into dropping loses batches when full, and counts every one.
#[test]
fn drop_newest_counts_every_drop() {
    let mut rigtap = start(
        &pipeline(
            "    count: 200000\n    batch_size: 100\n",
            "    buffer: { max_batches: 2, when_full: drop_newest }\n",
        ),
        &[],
    );
    let first: Vec<String> = (0..100).map_while(|_| rigtap.line()).collect();
    std::thread::sleep(Duration::from_millis(1500));
    let mut lines = first;
    lines.extend(rigtap.rest());
    let (code, logs, _) = rigtap.finish(Duration::from_secs(60));
    assert_eq!(code, Some(0));
    let out = finished(&logs, "out");
    let dropped = out["dropped"].as_u64().unwrap();
    assert!(dropped > 0, "a stalled reader made the queue overflow");
    assert_eq!(
        lines.len() as u64 + dropped,
        200_000,
        "delivered + dropped == emitted"
    );
}

#[test]
fn closed_pipe_stops_quietly() {
    let mut rigtap = start(&pipeline("    rate: 10000\n", ""), &[]);
    let head: Vec<String> = (0..5).map_while(|_| rigtap.line()).collect();
    assert_eq!(head.len(), 5);
    rigtap.stdout = None; // like `| head -n 5`: the reader goes away
    let (code, logs, stderr) = rigtap.finish(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(logs.iter().any(|l| l["message"]
        .as_str()
        .unwrap_or("")
        .contains("stdout was closed")));
    let out = finished(&logs, "out");
    assert_eq!(
        out["samples_in"].as_u64().unwrap(),
        out["samples_out"].as_u64().unwrap() + out["dropped"].as_u64().unwrap(),
        "every sample the sink took is delivered or counted as dropped"
    );
}

#[test]
fn second_signal_abandons_and_says_what() {
    let mut rigtap = start(&pipeline("    batch_size: 100\n", ""), &[]);
    assert!(rigtap.line().is_some());
    // Stop reading: the pipeline fills and cannot drain.
    std::thread::sleep(Duration::from_millis(500));
    rigtap.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    rigtap.signal("INT");
    let (code, logs, stderr) = rigtap.finish(Duration::from_secs(30));
    assert_eq!(code, Some(130), "{stderr}");
    let last = logs
        .iter()
        .rev()
        .find(|l| l["level"] == "ERROR")
        .expect("an error log");
    let message = last["message"].as_str().unwrap();
    assert!(
        message.starts_with("stopped by a second SIGINT: abandoned "),
        "{message}"
    );
    assert!(message.contains("queued batch(es)"), "{message}");
}

/// One source feeding a sink directly and, through a filter, a second sink: each sink
/// gets its own copy, and the filter passes exactly its miner.
#[test]
fn fan_out_and_filter() {
    let yaml = "\
sources:
  gen:
    type: generate
    count: 3000
    miners: 3
transforms:
  one_miner:
    type: filter
    inputs: [gen]
    condition: miner_id == 'gen-00001'
sinks:
  all:
    type: stdout
    inputs: [gen]
  picked:
    type: stdout
    inputs: [one_miner]
";
    let mut rigtap = start(yaml, &[]);
    let lines = rigtap.rest();
    let (code, logs, _) = rigtap.finish(Duration::from_secs(30));
    assert_eq!(code, Some(0));
    let mut per_miner = std::collections::BTreeMap::<String, usize>::new();
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        *per_miner
            .entry(v["miner_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(per_miner["gen-00000"], 1000);
    assert_eq!(per_miner["gen-00001"], 2000);
    assert_eq!(per_miner["gen-00002"], 1000);
    assert_eq!(finished(&logs, "one_miner")["samples_in"], 3000);
    assert_eq!(finished(&logs, "one_miner")["samples_out"], 1000);
}
