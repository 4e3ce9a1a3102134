//! Runs a `bos` source in the test's own runtime, against a simulated fleet, and hands
//! the test what it emits. Used by the bos test binaries.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rigtap::fleet::stats::PoolStats;
use rigtap::pipeline::batch::{MemoryBudget, SharedBatch};
use rigtap::pipeline::component::{ComponentResult, DecodeContext, SourceContext};
use rigtap::pipeline::fanout::{Fanout, Output};
use rigtap::pipeline::queue::WhenFull;
use rigtap::sim::Fleet;
use rigtap::sources::bos;
use rigtap::toolkit::sample::{MinerState, Sample, SampleKind};
use rigtap::toolkit::yaml::node;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running `bos` source whose output the test reads directly.
pub struct Collector {
    pub batches: mpsc::Receiver<SharedBatch>,
    stop: CancellationToken,
    task: JoinHandle<ComponentResult>,
    pub stats: Arc<PoolStats>,
    _dir: tempfile::TempDir,
}

/// Starts a `bos` source on `fleet` (through its inventory CSV) with `settings` (YAML
/// lines of the source, after `targets`), decoded by the source's own decoder.
pub fn collect(fleet: &Fleet, settings: &str) -> Collector {
    let dir = tempfile::tempdir().unwrap();
    let inventory: PathBuf = dir.path().join("fleet.csv");
    fleet.write_inventory(&inventory).unwrap();
    collect_inventory(&inventory, settings, dir)
}

/// [`collect`], from the miners of an inventory CSV (a fleet in another process);
/// `dir` is kept until the collector is dropped.
pub fn collect_inventory(
    inventory: &std::path::Path,
    settings: &str,
    dir: tempfile::TempDir,
) -> Collector {
    let password = if settings.contains("password") {
        ""
    } else {
        "password: root\n"
    };
    let yaml = format!(
        "profile: development\ntargets: {{inventory: {}}}\nusername: root\n{password}{settings}\n",
        inventory.display()
    );
    let body = node::parse(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let bos = bos::config::decode(&body, &DecodeContext::default())
        .unwrap_or_else(|e| panic!("test source is valid: {e}\n{yaml}"));
    let (tx, batches) = mpsc::channel(4);
    let out = Fanout::new(
        vec![Output {
            consumer: "test".into(),
            tx,
            when_full: WhenFull::Block,
            consumer_stats: Arc::default(),
            handoff: None,
        }],
        Arc::default(),
    );
    let stop = CancellationToken::new();
    let stats = Arc::new(PoolStats::default());
    let context = SourceContext {
        id: "fleet".into(),
        out,
        stop: stop.clone(),
        budget: MemoryBudget::new(64 << 20),
        kept: Default::default(),
    };
    let task = tokio::spawn(bos::run(bos, context, stats.clone()));
    Collector {
        batches,
        stop,
        task,
        stats,
        _dir: dir,
    }
}

impl Collector {
    /// Reads samples until `done` says enough, or panics after `limit`.
    pub async fn until(
        &mut self,
        limit: Duration,
        seen: &mut Vec<Sample>,
        mut done: impl FnMut(&[Sample]) -> bool,
    ) {
        let deadline = Instant::now() + limit;
        // Conditions may watch the simulator rather than the samples, so they are
        // checked at least every 100 ms, with or without a batch.
        while !done(seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left.min(Duration::from_millis(100)), self.batches.recv())
                .await
            {
                Ok(Some(batch)) => seen.extend(batch.samples().iter().cloned()),
                Ok(None) => panic!("the source ended early"),
                Err(_) if left.is_zero() => panic!(
                    "condition not met within {limit:?}; {} samples seen",
                    seen.len()
                ),
                Err(_) => {}
            }
        }
    }

    /// Stops the source and checks it ended cleanly.
    pub async fn stop(mut self) -> Vec<Sample> {
        self.stop.cancel();
        let mut rest = Vec::new();
        while let Some(batch) = tokio::time::timeout(Duration::from_secs(10), self.batches.recv())
            .await
            .expect("the source drains and ends")
        {
            rest.extend(batch.samples().iter().cloned());
        }
        self.task
            .await
            .unwrap()
            .expect("the source ends without error");
        rest
    }
}

pub fn miners_with(samples: &[Sample], kind: SampleKind) -> BTreeSet<String> {
    samples
        .iter()
        .filter(|s| s.kind == kind)
        .map(|s| s.miner_id.to_string())
        .collect()
}

pub fn in_state(samples: &[Sample], state: MinerState) -> BTreeSet<String> {
    samples
        .iter()
        .filter(|s| s.state == Some(state))
        .map(|s| s.miner_id.to_string())
        .collect()
}

/// Every state the samples reported, by name.
pub fn states_reported(samples: &[Sample]) -> BTreeSet<&'static str> {
    samples
        .iter()
        .filter_map(|s| s.state.map(MinerState::as_str))
        .collect()
}

pub fn ids(range: std::ops::Range<usize>) -> BTreeSet<String> {
    range.map(|i| format!("sim-{i:05}")).collect()
}

/// Collects from `fleet` with `settings` until each of its miners has been asked
/// `GetMinerStats` `polls` times, then stops.
pub async fn collect_until_polled(fleet: &Fleet, settings: &str, polls: u64) {
    let mut collector = collect(fleet, settings);
    let mut seen = Vec::new();
    collector
        .until(Duration::from_secs(20), &mut seen, |_| {
            (0..fleet.len()).all(|i| fleet.calls(i).of("GetMinerStats") >= polls)
        })
        .await;
    collector.stop().await;
}

/// Collects from `fleet` with `settings` until each of its `miners` has sent a
/// `kind: miner` sample, then stops.
pub async fn expect_samples_from_every_miner(fleet: &Fleet, settings: &str, miners: usize) {
    let mut collector = collect(fleet, settings);
    let mut seen = Vec::new();
    collector
        .until(Duration::from_secs(15), &mut seen, |s| {
            miners_with(s, SampleKind::Miner).len() == miners
        })
        .await;
    collector.stop().await;
}
