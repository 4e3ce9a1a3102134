//! One sink run over a set of samples, timed: for the sink benches.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rigtap::pipeline::batch::{Batch, MemoryBudget};
use rigtap::pipeline::component::{ComponentType, DecodeContext, SinkConfig, SinkContext};
use rigtap::pipeline::queue::{DiskBuffer, Input, WhenFull};
use rigtap::pipeline::stats::ComponentStats;
use rigtap::toolkit::sample::Sample;
use rigtap::toolkit::units::{ByteSize, HumanDuration};
use rigtap::toolkit::yaml::node;
use tokio_util::sync::CancellationToken;

/// A 1 GiB disk buffer at `path`, synced every second, holding the pipeline back
/// when full: the sink benches' buffer.
pub fn disk_buffer(path: &Path) -> DiskBuffer {
    DiskBuffer {
        path: path.to_path_buf(),
        max_size: ByteSize(1 << 30),
        sync_every: HumanDuration(Duration::from_secs(1)),
        warn_at: 0.8,
        when_full: WhenFull::Block,
    }
}

/// Starts a sink of `kind` configured by `body` (through `disk` if given), sends it
/// `samples` in batches of 500, and waits until it has delivered every one.
pub async fn run_sink(
    kind: &ComponentType<dyn SinkConfig>,
    body: &node::Node,
    samples: &[Sample],
    disk: Option<DiskBuffer>,
) -> Duration {
    let config = (kind.decode)(body, &DecodeContext::default()).expect("config");
    let (tx, input) = tokio::sync::mpsc::channel(16);
    let stats = Arc::new(ComponentStats::default());
    let budget = MemoryBudget::new(1 << 30);
    let ctx = SinkContext {
        disk,
        id: "bench".into(),
        input: Input::new(input, stats.clone()).0,
        stats: stats.clone(),
        stop_pipeline: CancellationToken::new(),
        stopping: CancellationToken::new(),
        budget: budget.clone(),
    };
    let started = Instant::now();
    let sink = tokio::spawn(config.start(ctx).task);
    for chunk in samples.chunks(500) {
        let batch = Batch::new(chunk.to_vec(), &budget).await;
        tx.send(Arc::new(batch)).await.expect("the sink runs");
    }
    drop(tx);
    sink.await.expect("joined").expect("delivered");
    assert_eq!(stats.samples_out(), samples.len() as u64);
    started.elapsed()
}
