//! A component that panics is a failed component, as first-class as one that returns
//! an error: the pipeline stops in order, `/health` and `/metrics` name it, and what it
//! held or had queued is counted as dropped (`component_failed`), so the ledger
//! balances. Built in the test's runtime with components of the test's own that
//! panic on their third batch (there is no way to make a shipped one panic).

use std::sync::Arc;
use std::time::Duration;

use rigtap::operator::api_config::HealthConfig;
use rigtap::operator::health::HealthWatch;
use rigtap::operator::metrics;
use rigtap::pipeline::component::{
    SinkConfig, SinkContext, Started, TransformConfig, TransformContext,
};
use rigtap::pipeline::stats::{ComponentStats, DropReason};
use rigtap::topology::config::PipelineConfig;
use rigtap::topology::running::{Ended, PipelineView, Running, Views};

/// A sink that delivers two batches, then panics.
#[derive(Debug)]
struct PanickingSink;

impl SinkConfig for PanickingSink {
    fn start(self: Box<Self>, mut ctx: SinkContext) -> Started {
        Started::task(async move {
            let mut batches = 0;
            while let Some(batch) = ctx.input.recv().await {
                batches += 1;
                assert!(batches < 3, "the test sink breaks on its third batch");
                ctx.stats.sent(batch.len());
            }
            Ok(())
        })
    }
}

/// A transform that passes two batches on, then panics.
#[derive(Debug)]
struct PanickingTransform;

impl TransformConfig for PanickingTransform {
    fn start(self: Box<Self>, mut ctx: TransformContext) -> Started {
        Started::task(async move {
            let mut batches = 0;
            while let Some(batch) = ctx.input.recv().await {
                batches += 1;
                assert!(batches < 3, "the test transform breaks on its third batch");
                let same = batch.derive(batch.samples().to_vec());
                ctx.out.send(same).await;
            }
            Ok(())
        })
    }
}

/// A sink that delivers everything.
#[derive(Debug)]
struct CountingSink;

impl SinkConfig for CountingSink {
    fn start(self: Box<Self>, mut ctx: SinkContext) -> Started {
        Started::task(async move {
            while let Some(batch) = ctx.input.recv().await {
                ctx.stats.sent(batch.len());
            }
            Ok(())
        })
    }
}

/// A generate source (`gen`, 20,000 samples in batches of 100) into `mid` (a
/// transform) into `out` (a sink), with small queues; the test replaces the
/// transform's and sink's configs with its own.
fn pipeline() -> PipelineConfig {
    let yaml = "
sources:
  gen: {type: generate, count: 20000, batch_size: 100}
transforms:
  mid: {type: normalise, inputs: [gen], buffer: {max_batches: 4}}
sinks:
  out: {type: stdout, inputs: [mid], buffer: {max_batches: 4}}
";
    rigtap::operator::config::from_str(yaml, &|_| None)
        .expect("a valid pipeline")
        .pipeline
}

/// Runs until the pipeline stops by itself, then drains it.
async fn run_to_the_end(config: PipelineConfig) -> (Arc<PipelineView>, Views) {
    let mut running = Running::start(config);
    let ended = tokio::time::timeout(Duration::from_secs(20), running.ended())
        .await
        .expect("the pipeline stops by itself");
    assert_eq!(ended, Ended::StopRequested, "the failure asks for the stop");
    running.stop();
    tokio::time::timeout(Duration::from_secs(20), running.drained())
        .await
        .expect("everything drains after the failure");
    (running.view(), running.views())
}

fn stats<'a>(view: &'a PipelineView, id: &str) -> &'a ComponentStats {
    &view.components.iter().find(|c| c.id == id).unwrap().stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_sink_fails_the_run_and_its_samples_are_counted() {
    let mut config = pipeline();
    config.sinks[0].config = Box::new(PanickingSink);
    let (view, views) = run_to_the_end(config).await;

    let (gen, mid, out) = (
        stats(&view, "gen"),
        stats(&view, "mid"),
        stats(&view, "out"),
    );
    assert!(out.failed() && !gen.failed() && !mid.failed());
    assert_eq!(out.samples_out(), 200, "two batches were delivered");
    let lost = out.dropped_for(DropReason::ComponentFailed);
    assert!(lost > 0);
    assert_eq!(
        mid.samples_out(),
        out.samples_out() + lost,
        "everything the transform passed on is delivered or counted"
    );
    assert_eq!(gen.samples_out(), mid.samples_in());

    let health = HealthWatch::new(views.clone(), HealthConfig::default()).health();
    assert_eq!(health.status, "degraded");
    assert_eq!(health.reasons, ["sink `out` failed; see the log"]);
    let text = metrics::render(&metrics::registry(views));
    assert!(
        text.contains("rigtap_component_failed{component=\"out\",kind=\"sink\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("rigtap_component_dropped_samples_total{{component=\"out\",kind=\"sink\",reason=\"component_failed\"}} {lost}\n")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_transform_fails_the_run_and_its_samples_are_counted() {
    let mut config = pipeline();
    config.transforms[0].config = Box::new(PanickingTransform);
    config.sinks[0].config = Box::new(CountingSink);
    let (view, views) = run_to_the_end(config).await;

    let (gen, mid, out) = (
        stats(&view, "gen"),
        stats(&view, "mid"),
        stats(&view, "out"),
    );
    assert!(mid.failed() && !out.failed());
    assert_eq!(out.samples_out(), 200, "two batches passed the transform");
    let lost = mid.dropped_for(DropReason::ComponentFailed);
    assert_eq!(
        gen.samples_out(),
        mid.samples_out() + lost,
        "the batch it held when it panicked and its queue are counted"
    );
    assert!(lost >= 100, "at least the batch it panicked on: {lost}");
    let health = HealthWatch::new(views, HealthConfig::default()).health();
    assert_eq!(health.reasons, ["transform `mid` failed; see the log"]);
}
