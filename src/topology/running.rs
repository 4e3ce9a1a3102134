//! Builds the running pipeline from a checked config, and stops it in order.
//!
//! One task per component; between them only bounded queues of [`SharedBatch`]es.
//! Stopping cancels the sources only. Everything downstream ends by itself when its
//! inputs close, after it has processed what was queued: a source's queue closes when
//! the source returns, a transform's when all its inputs have closed and it has
//! drained, and a sink flushes before it returns. So waiting for every task is
//! waiting for the pipeline to drain, and nothing counted in is left behind.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::PipelineConfig;
use crate::pipeline::batch::{MemoryBudget, SharedBatch};
use crate::pipeline::component::{
    ComponentTask, Published, SinkContext, SourceContext, Started, TransformContext,
};
use crate::pipeline::fanout::{Fanout, Output};
use crate::pipeline::metrics::Exposition;
use crate::pipeline::queue::{Input, Leftover};
use crate::pipeline::stats::{ComponentStats, DropReason, Role};
use crate::pipeline::tap::Taps;
use crate::toolkit::panic;

/// One running component, as the operator surface sees it.
pub struct ComponentEntry {
    pub id: String,
    pub role: Role,
    pub stats: Arc<ComponentStats>,
    /// What it publishes beyond its counters (a `bos` source's pool, say).
    pub published: Option<Arc<dyn Published>>,
}

/// The queue in front of a transform or sink.
pub(crate) struct QueueEntry {
    pub consumer: String,
    tx: mpsc::WeakSender<SharedBatch>,
}

impl QueueEntry {
    pub(crate) fn new(consumer: String, tx: mpsc::WeakSender<SharedBatch>) -> Self {
        QueueEntry { consumer, tx }
    }

    /// Batches queued now, and the queue's capacity; `None` once it has closed.
    pub(crate) fn depth(&self) -> Option<(usize, usize)> {
        self.tx
            .upgrade()
            .map(|tx| (tx.max_capacity() - tx.capacity(), tx.max_capacity()))
    }
}

/// What the running pipeline shows: `/metrics`, `/health` and the progress line read it.
pub struct PipelineView {
    pub components: Vec<ComponentEntry>,
    pub(crate) queues: Vec<QueueEntry>,
    pub budget: MemoryBudget,
}

impl PipelineView {
    /// Every component's series, the queues' depths and the memory budget.
    pub(crate) fn publish(&self, out: &mut Exposition) {
        for component in &self.components {
            component.stats.publish(&component.id, component.role, out);
            if let Some(published) = &component.published {
                published.publish(&component.id, out);
            }
        }
        for component in self.components.iter().filter(|c| c.role != Role::Source) {
            out.gauge(
                "rigtap_queue_samples",
                "Samples waiting in the queue in front of a transform or sink.",
                &[("component", component.id.as_str())],
                component.stats.queued_samples() as f64,
            );
        }
        for queue in &self.queues {
            if let Some((depth, capacity)) = queue.depth() {
                let labels = [("component", queue.consumer.as_str())];
                out.gauge(
                    "rigtap_queue_batches",
                    "Batches waiting in the queue in front of a transform or sink.",
                    &labels,
                    depth as f64,
                );
                out.gauge(
                    "rigtap_queue_capacity_batches",
                    "How many batches that queue holds (buffer.max_batches).",
                    &labels,
                    capacity as f64,
                );
            }
        }
        out.gauge(
            "rigtap_memory_budget_bytes",
            "Bytes the pipeline's queued batches may hold.",
            &[],
            self.budget.total() as f64,
        );
        out.gauge(
            "rigtap_memory_budget_in_use_bytes",
            "Bytes charged by live batches.",
            &[],
            self.budget.in_use() as f64,
        );
    }

    /// Batches waiting in queues right now.
    pub(crate) fn queued_batches(&self) -> usize {
        self.queues
            .iter()
            .filter_map(QueueEntry::depth)
            .map(|(depth, _)| depth)
            .sum()
    }

    pub(crate) fn failed(&self) -> bool {
        self.components.iter().any(|c| c.stats.failed())
    }

    /// The pipeline is being abandoned: what each component holds or has queued is
    /// counted as dropped (`abandoned`) and its ledger logged. Returns the total.
    pub(crate) fn abandon(&self) -> u64 {
        let mut total = 0;
        for component in &self.components {
            let stats = &component.stats;
            // What it holds first: queued samples were never received.
            let held = stats.settle(DropReason::Abandoned);
            let queued = stats.queued_samples();
            stats.dropped(DropReason::Abandoned, queued as usize);
            let abandoned = held + queued;
            total += abandoned;
            tracing::error!(
                component = %component.id,
                samples_in = stats.samples_in(),
                samples_out = stats.samples_out(),
                dropped = stats.dropped_total(),
                drops = %stats.drops_by_reason(),
                abandoned,
                "component abandoned"
            );
        }
        total
    }
}

/// Why a pipeline stopped by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// A component asked the pipeline to stop (it failed, or its output went away).
    StopRequested,
    /// Every component finished (finite sources).
    Finished,
}

/// The pipeline while it runs.
pub struct Running {
    tasks: TaskTracker,
    stop_sources: CancellationToken,
    stop_requested: CancellationToken,
    view: Arc<PipelineView>,
    taps: Arc<Taps>,
}

/// Spawns component tasks and keeps the list of what it spawned.
struct Spawner {
    tasks: TaskTracker,
    stop_requested: CancellationToken,
    components: Vec<ComponentEntry>,
}

impl Spawner {
    /// Runs `started` in a task of its own, so that a panic is caught where it is
    /// joined. An error or a panic marks the component failed, counts what it held
    /// and what is still queued for it as dropped (`component_failed`), and asks the
    /// pipeline to stop; its queue is drained (and counted) until its producers end.
    fn spawn(
        &mut self,
        id: String,
        role: Role,
        stats: Arc<ComponentStats>,
        started: Started,
        leftover: Option<Leftover>,
    ) {
        self.components.push(ComponentEntry {
            id: id.clone(),
            role,
            stats: stats.clone(),
            published: started.published,
        });
        let stop_requested = self.stop_requested.clone();
        let task: ComponentTask = started.task;
        self.tasks.spawn(async move {
            let failure = match tokio::spawn(task).await {
                Ok(Ok(())) => None,
                Ok(Err(error)) => Some(error.to_string()),
                Err(join) => Some(panic_message(join)),
            };
            if let Some(error) = failure {
                stats.mark_failed();
                let held = stats.settle(DropReason::ComponentFailed);
                tracing::error!(component = %id, %error, held, "component failed; what it held and what reaches its queue is counted as dropped (component_failed); stopping the pipeline");
                stop_requested.cancel();
                let rx = leftover.and_then(|l| l.lock().unwrap_or_else(|e| e.into_inner()).take());
                if let Some(mut rx) = rx {
                    while let Some(batch) = rx.recv().await {
                        stats.received(batch.len());
                        stats.dropped(DropReason::ComponentFailed, batch.len());
                    }
                }
            }
            tracing::info!(
                component = %id,
                samples_in = stats.samples_in(),
                samples_out = stats.samples_out(),
                dropped = stats.dropped_total(),
                drops = %stats.drops_by_reason(),
                "component finished"
            );
        });
    }
}

/// What a panicking task said, as an error message.
fn panic_message(join: tokio::task::JoinError) -> String {
    match join.try_into_panic() {
        Ok(payload) => format!("panicked: {}", panic::message(payload.as_ref())),
        Err(join) => format!("its task ended abnormally: {join}"),
    }
}

impl Running {
    /// Wires queues and spawns one task per component.
    pub fn start(config: PipelineConfig) -> Self {
        let budget = MemoryBudget::new(config.memory_budget.0);
        let stop_sources = CancellationToken::new();
        let mut spawner = Spawner {
            tasks: TaskTracker::new(),
            stop_requested: CancellationToken::new(),
            components: Vec::new(),
        };
        let mut taps = Taps::default();
        let mut queues = Vec::new();

        // Every transform and sink gets one queue; its producers hold its senders.
        let mut stats: HashMap<String, Arc<ComponentStats>> = HashMap::new();
        let mut receivers: HashMap<String, mpsc::Receiver<SharedBatch>> = HashMap::new();
        let mut outputs: HashMap<String, Vec<Output>> = HashMap::new();
        let ids = config
            .sources
            .iter()
            .map(|c| c.id.clone())
            .chain(config.transforms.iter().map(|c| c.id.clone()))
            .chain(config.sinks.iter().map(|c| c.id.clone()));
        for id in ids {
            stats.insert(id, Arc::default());
        }
        let consumers = config
            .transforms
            .iter()
            .map(|c| (&c.id, &c.inputs, &c.buffer))
            .chain(config.sinks.iter().map(|c| (&c.id, &c.inputs, &c.buffer)));
        for (id, inputs, buffer) in consumers {
            let (tx, rx) = mpsc::channel(buffer.max_batches);
            queues.push(QueueEntry::new(id.clone(), tx.downgrade()));
            receivers.insert(id.clone(), rx);
            for input in inputs {
                outputs.entry(input.clone()).or_default().push(Output {
                    consumer: id.clone(),
                    tx: tx.clone(),
                    when_full: buffer.when_full,
                    consumer_stats: stats[id].clone(),
                });
            }
        }
        let mut fanout = |id: &str| {
            Fanout::new(outputs.remove(id).unwrap_or_default(), stats[id].clone())
                .with_tap(taps.add(id))
        };

        for source in config.sources {
            let context = SourceContext {
                id: source.id.clone(),
                out: fanout(&source.id),
                stop: stop_sources.clone(),
                budget: budget.clone(),
            };
            let started = source.config.start(context);
            let source_stats = stats[&source.id].clone();
            spawner.spawn(source.id, Role::Source, source_stats, started, None);
        }
        for transform in config.transforms {
            let Some(rx) = receivers.remove(&transform.id) else {
                continue;
            };
            let (input, leftover) = Input::new(rx, stats[&transform.id].clone());
            let context = TransformContext {
                id: transform.id.clone(),
                input,
                out: fanout(&transform.id),
                stats: stats[&transform.id].clone(),
            };
            let started = transform.config.start(context);
            let transform_stats = stats[&transform.id].clone();
            spawner.spawn(
                transform.id,
                Role::Transform,
                transform_stats,
                started,
                Some(leftover),
            );
        }
        for sink in config.sinks {
            let Some(rx) = receivers.remove(&sink.id) else {
                continue;
            };
            let (input, leftover) = Input::new(rx, stats[&sink.id].clone());
            let context = SinkContext {
                id: sink.id.clone(),
                input,
                stats: stats[&sink.id].clone(),
                stop_pipeline: spawner.stop_requested.clone(),
                stopping: stop_sources.clone(),
            };
            let started = sink.config.start(context);
            let sink_stats = stats[&sink.id].clone();
            spawner.spawn(sink.id, Role::Sink, sink_stats, started, Some(leftover));
        }
        spawner.tasks.close();
        Running {
            tasks: spawner.tasks,
            stop_sources,
            stop_requested: spawner.stop_requested,
            view: Arc::new(PipelineView {
                components: spawner.components,
                queues,
                budget,
            }),
            taps: Arc::new(taps),
        }
    }

    /// What `/metrics`, `/health` and the progress line read while the pipeline runs.
    pub fn view(&self) -> Arc<PipelineView> {
        self.view.clone()
    }

    /// The live views of each source's and transform's output.
    pub(crate) fn taps(&self) -> Arc<Taps> {
        self.taps.clone()
    }

    /// Resolves when the pipeline ends without being told to: a component asked it to
    /// stop, or every component finished.
    pub async fn ended(&self) -> Ended {
        tokio::select! {
            _ = self.stop_requested.cancelled() => Ended::StopRequested,
            _ = self.tasks.wait() => Ended::Finished,
        }
    }

    /// Stops the sources; everything downstream drains and finishes by itself.
    pub fn stop(&self) {
        self.stop_sources.cancel();
    }

    /// Resolves once every component has finished.
    pub async fn drained(&self) {
        self.tasks.wait().await;
    }

    /// Components that have not finished yet.
    pub(crate) fn unfinished(&self) -> usize {
        self.tasks.len()
    }
}
