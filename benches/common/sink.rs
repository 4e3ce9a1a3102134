//! One sink run over a set of samples, timed: for the sink benches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rigtap::pipeline::batch::{Batch, MemoryBudget};
use rigtap::pipeline::component::{ComponentType, DecodeContext, SinkConfig, SinkContext};
use rigtap::pipeline::queue::{DiskBuffer, Input};
use rigtap::pipeline::stats::ComponentStats;
use rigtap::toolkit::sample::Sample;
use rigtap::toolkit::yaml::node;
use tokio_util::sync::CancellationToken;

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
