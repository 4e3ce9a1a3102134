//! Miners answering with megabytes: each answer message larger than 16 KiB is charged
//! to `memory_budget` while it is read, so a collector polling many such miners at
//! once stays within the budget plus its cost per miner, and the answers are still
//! read, a few at a time. A test binary of its own: it measures the collector
//! process's RSS beside a simulator process.

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::scrape::{scrape, value};
use support::{start_writing_to, SimProcess};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answers_wait_for_room_in_the_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("fleet.csv");
    let first = support::net::free_block(100);
    // Every hashboard answer is about 6 MiB: 100 of them at once, 600 MiB, unless
    // they wait for a 16 MiB budget. Measured before the charge: a peak of 387 MiB in
    // 12 s (release builds); with it, 35 MiB.
    let _sim = SimProcess::start(
        &[
            "--miners",
            "100",
            "--fault",
            "oversized:1",
            "--first",
            &first.to_string(),
        ],
        &inventory,
        100,
    )
    .await;
    let api = format!("127.0.0.1:{}", support::net::free_port());
    let yaml = format!(
        "
memory_budget: 16MiB
api: {{address: {api}}}
sources:
  fleet:
    type: bos
    targets: {{inventory: {}}}
    username: root
    password: root
    interval: 1s
    timeout: 20s
    max_message_size: 16MiB
sinks:
  out: {{type: stdout, inputs: [fleet]}}
",
        inventory.display()
    );
    let rigtap = start_writing_to(&yaml, &[], Stdio::null());
    let base = format!("http://{api}");
    let mut peak = 0;
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        peak = peak.max(rigtap.rss_kib());
    }
    let scraped = tokio::task::spawn_blocking(move || scrape(&base))
        .await
        .unwrap();
    let counter = |name: &str| {
        value(
            &scraped,
            name,
            &format!("{name}_total"),
            &[("source", "fleet")],
        )
    };
    let (charged, waited) = (
        counter("rigtap_source_large_answers"),
        counter("rigtap_source_large_answers_waited"),
    );
    let received = counter("rigtap_source_received_polls");
    rigtap.signal("TERM");
    let (code, _, stderr) = rigtap.finish(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{stderr}");
    eprintln!(
        "100 miners answering 6 MiB: peak RSS {peak} KiB; {charged} answers charged, {waited} waited; {received} polls received"
    );
    assert!(
        peak < 160 * 1024,
        "RSS peaked at {peak} KiB with a 16 MiB budget"
    );
    assert!(received >= 20.0, "the answers are read: {received} polls");
    assert!(charged >= received, "{charged} charged, {received} polls");
    assert!(waited > 0.0, "with 100 at once, some waited for room");
}
