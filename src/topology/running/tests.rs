//! What a reload must change, and what it must not (after Vector's `reload.rs` and
//! `doesnt_reload.rs`): the same file changes nothing, a component whose inputs alone
//! changed is rewired and keeps running, a changed one is replaced, a removed one
//! drains, and the ledger holds across all of it.

use std::time::Duration;

use super::*;
use crate::pipeline::component::DecodeContext;
use crate::toolkit::yaml::node;

/// A sink that counts what it takes (the YAML names `stdout`, for its settings).
#[derive(Debug)]
struct Count;

impl SinkConfig for Count {
    fn start(self: Box<Self>, mut ctx: SinkContext) -> Started {
        Started::task(async move {
            while let Some(batch) = ctx.input.recv().await {
                ctx.stats.sent(batch.len());
            }
            Ok(())
        })
    }
}

/// The pipeline of `yaml`, its sinks counting instead of printing.
fn pipeline(yaml: &str) -> PipelineConfig {
    let root = node::parse(yaml).unwrap();
    let mut problems = Vec::new();
    let config = super::super::config::decode(&root, &DecodeContext::default(), &mut problems);
    let mut config = config.unwrap_or_else(|| panic!("{problems:?}"));
    for sink in &mut config.sinks {
        sink.config = Box::new(Count);
    }
    config
}

const BASE: &str = "
sources:
  a: {type: generate, rate: 2000, miners: 5}
  b: {type: generate, rate: 2000, miners: 5, seed: 1}
transforms:
  keep: {type: filter, inputs: [a], condition: 'power_w > 0'}
sinks:
  out: {type: stdout, inputs: [keep], encoding: text}
  other: {type: stdout, inputs: [b]}
";

fn stats<'a>(view: &'a PipelineView, id: &str) -> &'a ComponentStats {
    &view.components.iter().find(|c| c.id == id).unwrap().stats
}

/// Runs `config`, lets samples flow, reloads `next`, lets them flow again, stops.
async fn reload(config: &str, next: &str) -> (Changes, Arc<PipelineView>, Running) {
    let mut running = Running::start(pipeline(config));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let changes = running.reload(pipeline(next)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let view = running.view();
    (changes, view, running)
}

async fn stop(mut running: Running) {
    running.stop();
    tokio::time::timeout(Duration::from_secs(10), running.drained())
        .await
        .expect("the pipeline drains");
}

#[tokio::test]
async fn the_same_file_changes_nothing_and_restarts_nothing() {
    let (changes, view, running) = reload(BASE, &format!("# moved down a line\n{BASE}")).await;
    assert!(changes.is_empty(), "{changes:?}");
    let live = &running.components["out"];
    assert!(!live.done.is_cancelled(), "the sink kept running");
    assert_eq!(running.unfinished(), 5, "no second generation started");
    stop(running).await;
    let (a, keep, out) = (stats(&view, "a"), stats(&view, "keep"), stats(&view, "out"));
    assert_eq!(a.samples_out(), keep.samples_in());
    assert_eq!(keep.samples_out(), out.samples_out());
}

#[tokio::test]
async fn new_inputs_rewire_a_running_component_without_a_restart() {
    let next = BASE.replace("inputs: [a]", "inputs: [a, b]");
    let (changes, view, running) = reload(BASE, &next).await;
    assert_eq!(changes.rewired, ["keep"], "{changes:?}");
    assert!(
        changes.replaced.is_empty() && changes.added.is_empty(),
        "{changes:?}"
    );
    assert!(!running.components["keep"].done.is_cancelled());
    stop(running).await;
    let (a, b, keep) = (stats(&view, "a"), stats(&view, "b"), stats(&view, "keep"));
    assert!(
        keep.samples_in() > a.samples_out(),
        "b now feeds the transform too"
    );
    assert_eq!(b.samples_out(), stats(&view, "other").samples_in());
    assert_eq!(
        keep.samples_in(),
        keep.samples_out(),
        "nothing held or lost"
    );
}

#[tokio::test]
async fn a_changed_component_is_replaced_and_its_counters_carry_on() {
    let next = BASE.replace("encoding: text", "encoding: json");
    let (changes, view, running) = reload(BASE, &next).await;
    assert_eq!(changes.replaced, ["out"], "{changes:?}");
    stop(running).await;
    let (keep, out) = (stats(&view, "keep"), stats(&view, "out"));
    assert_eq!(
        keep.samples_out(),
        out.samples_out(),
        "both generations delivered everything, counted under one id"
    );
    assert_eq!(out.dropped_total(), 0);
}

#[tokio::test]
async fn a_removed_source_drains_and_an_added_sink_is_wired() {
    let next = "
sources:
  a: {type: generate, rate: 2000, miners: 5}
transforms:
  keep: {type: filter, inputs: [a], condition: 'power_w > 0'}
sinks:
  out: {type: stdout, inputs: [keep], encoding: text}
  copy: {type: stdout, inputs: [a], encoding: text}
";
    let before = BASE
        .replace("inputs: [a]", "inputs: [a, b]")
        .replace("  other: {type: stdout, inputs: [b]}\n", "");
    let (changes, view, running) = reload(&before, next).await;
    assert_eq!(changes.removed, ["b"], "{changes:?}");
    assert_eq!(changes.added, ["copy"], "{changes:?}");
    assert_eq!(changes.rewired, ["keep"], "{changes:?}");
    stop(running).await;
    assert!(
        stats(&view, "copy").samples_out() > 0,
        "the new sink receives"
    );
    assert!(view.components.iter().all(|c| c.id != "b"));
}

#[tokio::test]
async fn a_new_memory_budget_is_applied_in_place() {
    let next = format!("memory_budget: 64MiB\n{BASE}");
    let (changes, view, running) = reload(BASE, &next).await;
    assert_eq!(
        changes.memory_budget,
        Some((256 << 20, 64 << 20)),
        "{changes:?}"
    );
    assert_eq!(view.budget.total(), 64 << 20);
    stop(running).await;
}
