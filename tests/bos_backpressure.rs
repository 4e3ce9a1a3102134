//! A blocked sink in front of a `bos` source: memory levels off and stays flat, polls are
//! skipped (and counted) instead of queued, and the stream resumes when the sink frees.
//! A test binary of its own, so no other test's memory moves the RSS it measures.

mod support;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use rigtap::sim::Fleet;
use rigtap::toolkit::sample::SampleKind;

use support::collector::{collect, miners_with};
use support::sim_config;

/// Resident memory of this test process, in KiB.
fn rss_kib() -> u64 {
    rigtap::operator::process::rss_kib("self").expect("VmRSS in /proc/self/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_sink_keeps_memory_flat_and_streams_resume() {
    let mut config = sim_config(200);
    config.status_interval = Duration::from_millis(50);
    let fleet = Fleet::start(config).await.unwrap();
    let mut collector = collect(&fleet, "interval: 500ms\nrate: {connects: 200}");
    let mut seen = Vec::new();
    collector
        .until(Duration::from_secs(30), &mut seen, |s| {
            miners_with(s, SampleKind::Miner).len() == 200
        })
        .await;

    // Stop reading for 80 s. For the first seconds memory takes on the full queues and
    // the answers of each miner's last poll (which wait for room): measured +11.5 MiB
    // for these 200 miners (+20 to +22 MiB before the status streams were read while
    // the pipeline is full, their HTTP/2 windows filling instead). After that nothing
    // may grow.
    let blocked = rss_kib();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let skipped_before = collector.stats.polls_skipped.load(Relaxed);
    let start = rss_kib();
    let mut peak = start;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        peak = peak.max(rss_kib());
    }
    let skipped = collector.stats.polls_skipped.load(Relaxed) - skipped_before;
    assert!(skipped > 1000, "polls were skipped, not queued: {skipped}");
    assert!(
        peak - start < 8 * 1024,
        "RSS grew {} KiB while the sink was blocked (from {start} KiB)",
        peak - start
    );
    eprintln!("blocked for 80s: RSS {blocked} KiB at the block, {start} KiB 30 s in, peak {peak} KiB; {skipped} polls skipped in the last 50 s");

    seen.clear();
    collector
        .until(Duration::from_secs(20), &mut seen, |s| {
            miners_with(s, SampleKind::Miner).len() == 200
        })
        .await;
    collector.stop().await;
}
