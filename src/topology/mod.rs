//! Builds the running pipeline from a checked config, and stops it in order.
//!
//! One task per component; between them only bounded queues of [`SharedBatch`]es.
//! Stopping cancels the sources only. Everything downstream ends by itself when its
//! inputs close, after it has processed what was queued: a source's queue closes when
//! the source returns, a transform's when all its inputs have closed and it has
//! drained, and a sink flushes before it returns. So waiting for every task is
//! waiting for the pipeline to drain, and nothing counted in is left behind.

pub mod batch;
pub mod fanout;
pub mod shutdown;
pub mod stats;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{PipelineConfig, SinkConfig, SourceConfig};
use crate::sim::InventoryRow;
use crate::sources::bos::stats::PoolStats;
use crate::telemetry::metrics::{ComponentEntry, QueueEntry, Role, Telemetry};
use crate::telemetry::tap::Taps;
use crate::{sinks, sources, transforms};
use batch::{MemoryBudget, SharedBatch};
use fanout::{Fanout, Output};
use shutdown::Signals;
use stats::ComponentStats;

/// What a component task returns; each component has its own typed error.
pub type ComponentResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

type ComponentTask = std::pin::Pin<Box<dyn std::future::Future<Output = ComponentResult> + Send>>;

/// What a source is given.
pub struct SourceContext {
    pub id: String,
    pub out: Fanout,
    /// Cancelled when the pipeline stops; the source then finishes the batch it holds.
    pub stop: CancellationToken,
    pub budget: MemoryBudget,
}

/// What a transform is given.
pub struct TransformContext {
    pub id: String,
    pub input: mpsc::Receiver<SharedBatch>,
    pub out: Fanout,
    pub stats: Arc<ComponentStats>,
}

/// What a sink is given.
pub struct SinkContext {
    pub id: String,
    pub input: mpsc::Receiver<SharedBatch>,
    pub stats: Arc<ComponentStats>,
    /// Lets a sink ask for the whole pipeline to stop (its output went away).
    pub stop_pipeline: CancellationToken,
    /// Cancelled when the pipeline starts to stop, for sinks that bound how long they
    /// wait for their destination at shutdown.
    pub stopping: CancellationToken,
}

/// How a run ended.
pub struct RunReport {
    /// The final counters of every component.
    pub telemetry: Arc<Telemetry>,
    /// True when a component failed; the process should exit non-zero.
    pub failed: bool,
}

/// The pipeline was abandoned by a second signal; says what was lost.
#[derive(Debug, thiserror::Error)]
#[error("stopped by a second {signal}: abandoned {batches} queued batch(es) ({bytes} bytes charged) and {tasks} unfinished component(s)")]
pub struct Abandoned {
    pub signal: &'static str,
    pub batches: usize,
    pub bytes: usize,
    pub tasks: usize,
}

/// The pipeline while it runs.
pub struct Running {
    tasks: TaskTracker,
    stop_sources: CancellationToken,
    stop_requested: CancellationToken,
    budget: MemoryBudget,
    telemetry: Arc<Telemetry>,
    taps: Arc<Taps>,
}

/// Spawns component tasks and keeps the list of what it spawned.
struct Spawner {
    tasks: TaskTracker,
    stop_requested: CancellationToken,
    components: Vec<ComponentEntry>,
}

impl Spawner {
    /// Runs `task`; an error marks the component failed and stops the pipeline.
    fn spawn(&mut self, id: String, role: Role, stats: Arc<ComponentStats>, task: ComponentTask) {
        self.components
            .push(ComponentEntry::new(id.clone(), role, stats.clone()));
        let stop_requested = self.stop_requested.clone();
        self.tasks.spawn(async move {
            if let Err(error) = task.await {
                stats.mark_failed();
                tracing::error!(component = %id, %error, "component failed; stopping the pipeline");
                stop_requested.cancel();
            }
            tracing::info!(
                component = %id,
                samples_in = stats.samples_in(),
                samples_out = stats.samples_out(),
                dropped = stats.dropped_total(),
                "component finished"
            );
        });
    }
}

impl Running {
    /// Wires queues and spawns one task per component. `simulated` is the inventory of
    /// the embedded simulator, already serving, for sources that target it.
    pub fn start(config: PipelineConfig, simulated: Option<Vec<InventoryRow>>) -> Self {
        let budget = MemoryBudget::new(config.memory_budget.0);
        let stop_sources = CancellationToken::new();
        let mut spawner = Spawner {
            tasks: TaskTracker::new(),
            stop_requested: CancellationToken::new(),
            components: Vec::new(),
        };
        let mut taps = Taps::default();
        let mut queue_entries = Vec::new();
        let mut pools = Vec::new();

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
            queue_entries.push(QueueEntry::new(id.clone(), tx.downgrade()));
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
            let task: ComponentTask = match source.config {
                SourceConfig::Generate(config) => Box::pin(sources::generate::run(config, context)),
                SourceConfig::Bos(config) => {
                    let pool = Arc::new(PoolStats::default());
                    pools.push((source.id.clone(), pool.clone()));
                    Box::pin(sources::bos::run(*config, context, simulated.clone(), pool))
                }
            };
            spawner.spawn(
                source.id.clone(),
                Role::Source,
                stats[&source.id].clone(),
                task,
            );
        }
        for transform in config.transforms {
            let Some(input) = receivers.remove(&transform.id) else {
                continue;
            };
            let context = TransformContext {
                id: transform.id.clone(),
                input,
                out: fanout(&transform.id),
                stats: stats[&transform.id].clone(),
            };
            let task = transforms::run(transform.config, context);
            let transform_stats = stats[&transform.id].clone();
            spawner.spawn(
                transform.id,
                Role::Transform,
                transform_stats,
                Box::pin(task),
            );
        }
        for sink in config.sinks {
            let Some(input) = receivers.remove(&sink.id) else {
                continue;
            };
            let context = SinkContext {
                id: sink.id.clone(),
                input,
                stats: stats[&sink.id].clone(),
                stop_pipeline: spawner.stop_requested.clone(),
                stopping: stop_sources.clone(),
            };
            let task: ComponentTask = match sink.config {
                SinkConfig::Stdout(config) => Box::pin(sinks::stdout::run(config, context)),
                SinkConfig::Parquet(config) => Box::pin(sinks::parquet::run(*config, context)),
                SinkConfig::Kafka(config) => Box::pin(sinks::kafka::run(*config, context)),
            };
            spawner.spawn(sink.id.clone(), Role::Sink, stats[&sink.id].clone(), task);
        }
        spawner.tasks.close();
        Running {
            tasks: spawner.tasks,
            stop_sources,
            stop_requested: spawner.stop_requested,
            telemetry: Arc::new(Telemetry {
                components: spawner.components,
                queues: queue_entries,
                pools,
                budget: budget.clone(),
                health: config.api.health,
            }),
            taps: Arc::new(taps),
            budget,
        }
    }

    /// What `/metrics`, `/health` and the progress line read while the pipeline runs.
    pub fn telemetry(&self) -> Arc<Telemetry> {
        self.telemetry.clone()
    }

    /// The live views of each source's and transform's output.
    pub fn taps(&self) -> Arc<Taps> {
        self.taps.clone()
    }

    /// Batches waiting in queues right now.
    fn queued_batches(&self) -> usize {
        self.telemetry
            .queues
            .iter()
            .filter_map(|q| q.depth())
            .map(|(depth, _)| depth)
            .sum()
    }

    /// Runs until a signal, the end of `duration`, a component's request to stop, or
    /// the end of every source; then stops in order. A second signal abandons the rest.
    pub async fn run_until_stopped(
        self,
        signals: &mut Signals,
        duration: Option<Duration>,
    ) -> Result<RunReport, Abandoned> {
        tokio::select! {
            signal = signals.recv() => tracing::info!(%signal, "stopping: sources stop, queues drain, sinks flush (send it again to abandon)"),
            _ = shutdown::deadline(duration) => tracing::info!("stopping: --duration reached"),
            _ = self.stop_requested.cancelled() => tracing::info!("stopping: a component asked to stop"),
            _ = self.tasks.wait() => {}
        }
        self.stop_sources.cancel();
        tokio::select! {
            _ = self.tasks.wait() => {}
            signal = signals.recv() => {
                return Err(Abandoned {
                    signal,
                    batches: self.queued_batches(),
                    bytes: self.budget.in_use(),
                    tasks: self.tasks.len(),
                });
            }
        }
        Ok(RunReport {
            failed: self.telemetry.components.iter().any(|c| c.stats.failed()),
            telemetry: self.telemetry,
        })
    }
}
