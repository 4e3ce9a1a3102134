//! The running pipeline: built from a checked config, changed by a reload, stopped in
//! order.
//!
//! One task per component; between them only bounded queues of [`SharedBatch`]es.
//! Stopping cancels the sources only. Everything downstream ends by itself when its
//! inputs close, after it has processed what was queued: a source's output closes when
//! the source returns, a transform's when all its inputs have closed and it has
//! drained, and a sink flushes before it returns. So waiting for every task is
//! waiting for the pipeline to drain, and nothing counted in is left behind.
//!
//! A reload ([`Running::reload`]) compares the new config with the running one by
//! component. An unchanged component keeps running, with its queue and connections;
//! a source that can take its new config as it runs does (a `bos` source whose
//! targets changed connects only the new miners); anything else that changed is
//! replaced: the old one is stopped (a source) or cut off from its producers (a
//! transform or sink), drains what it has, and only then does its successor start,
//! on a new queue the producers already fill. Nothing counted in is lost, each miner's
//! samples stay in order, and a component's counters carry on under its id (not
//! when the id changes role: a source that becomes a sink starts its counts afresh).
//! A sink that writes a directory another sink leaving or being replaced wrote (a
//! sink renamed, or two that swap paths) starts only once that one has ended: one
//! directory, one writer.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::config::{Component, PipelineConfig};
use crate::pipeline::batch::{MemoryBudget, SharedBatch};
use crate::pipeline::component::{
    Kept, Published, Reconfigure, SinkConfig, SinkContext, SourceConfig, SourceContext, Started,
    TransformConfig, TransformContext,
};
use crate::pipeline::fanout::{Fanout, Output, Outputs};
use crate::pipeline::metrics::Exposition;
use crate::pipeline::queue::{BufferConfig, Handoff, Input, Leftover, WhenFull};
use crate::pipeline::stats::{ComponentStats, DropReason, Role};
use crate::pipeline::tap::Taps;
use crate::toolkit::panic;
use crate::toolkit::paths;
use crate::toolkit::yaml::node::Node;

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
    pub(crate) consumer: String,
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

/// What the running pipeline shows: `/metrics`, `/health` and the progress line read
/// it. A reload makes a new one; [`Views`] follows them.
pub struct PipelineView {
    pub components: Vec<ComponentEntry>,
    pub(crate) queues: Vec<QueueEntry>,
    pub(crate) budget: MemoryBudget,
}

/// The latest [`PipelineView`], for readers that live across reloads.
pub type Views = watch::Receiver<Arc<PipelineView>>;

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
    ///
    /// Queued samples are counted received before they are dropped, as a failed
    /// component's are, so that each consumer's `samples_in` is its `samples_out` plus
    /// its drops: what its producers counted sent is all in its ledger.
    pub(crate) fn abandon(&self) -> u64 {
        let mut total = 0;
        for component in &self.components {
            let stats = &component.stats;
            stats.received(stats.queued_samples() as usize);
            let abandoned = stats.settle(DropReason::Abandoned);
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

/// What a reload changed, by component id.
#[derive(Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Stopped, drained, and started again with its new settings.
    pub replaced: Vec<String>,
    /// Sources that took their new settings as they run, with what changed.
    pub reconfigured: Vec<(String, String)>,
    /// Components whose inputs changed, and nothing else.
    pub rewired: Vec<String>,
    pub memory_budget: Option<(u64, u64)>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        *self == Changes::default()
    }
}

/// The settings that decide whether a component must be replaced: its type, its own
/// settings and its queue. Its inputs only rewire it.
struct Spec {
    role: Role,
    kind: &'static str,
    settings: Node,
    buffer: BufferConfig,
    inputs: Vec<String>,
    /// The directories it writes: a sink's files and its disk buffer.
    writes: Vec<PathBuf>,
}

impl Spec {
    fn of<C: ?Sized>(role: Role, component: &Component<C>) -> Self {
        Spec {
            role,
            kind: component.kind,
            settings: component.settings.clone(),
            buffer: component.buffer.clone(),
            inputs: component.inputs.clone(),
            writes: component.buffer.path.iter().cloned().collect(),
        }
    }

    /// Whether it writes one of `dirs`, or a directory inside or around one.
    fn writes_any(&self, dirs: &[PathBuf]) -> bool {
        let overlap = |a: &PathBuf, b: &PathBuf| paths::within(a, b) || paths::within(b, a);
        (self.writes.iter()).any(|a| dirs.iter().any(|b| overlap(a, b)))
    }

    fn same_settings(&self, other: &Spec) -> bool {
        self.role == other.role
            && self.kind == other.kind
            && self.buffer == other.buffer
            && self.settings.same_as(&other.settings)
    }
}

/// One component of the current generation.
struct Live {
    spec: Spec,
    stats: Arc<ComponentStats>,
    published: Option<Arc<dyn Published>>,
    reconfigure: Option<Arc<dyn Reconfigure>>,
    /// Sources and transforms: the consumers their fan-out sends to.
    outputs: Option<Outputs>,
    /// Transforms and sinks: the sender of the queue their producers fill.
    queue: Option<mpsc::Sender<SharedBatch>>,
    /// Sinks with a disk buffer: how their producers wait for each batch's append.
    handoff: Option<Arc<Handoff>>,
    /// Sources: stops this source alone (a child of the pipeline's stop).
    stop: Option<CancellationToken>,
    /// Cancelled once this generation's task has ended (and its queue drained).
    done: CancellationToken,
    kept: Kept,
}

/// A decoded component of any section, on its way to being started.
enum Config {
    Source(Box<dyn SourceConfig>),
    Transform(Box<dyn TransformConfig>),
    Sink(Box<dyn SinkConfig>),
}

/// The pipeline while it runs.
pub struct Running {
    components: BTreeMap<String, Live>,
    budget: MemoryBudget,
    /// Cancelled when the pipeline stops: every source's stop descends from it, and
    /// sinks start their shutdown deadline from it.
    stopping: CancellationToken,
    /// A component asked for the pipeline to stop (it failed, or its output closed).
    stop_requested: CancellationToken,
    /// Component tasks that have not finished, of every generation.
    alive: Arc<watch::Sender<usize>>,
    /// Source tasks that have not finished: when none is left (finite sources), the
    /// pipeline has ended by itself.
    sources_alive: Arc<watch::Sender<usize>>,
    taps: Arc<Taps>,
    view: watch::Sender<Arc<PipelineView>>,
    /// Components added and not started yet: they start once every producer's
    /// fan-out has been pointed at its consumers, so no batch goes to a list not yet
    /// filled.
    pending: Vec<Launch>,
    /// Components retired by a reload that write directories, and when each ends: a
    /// later reload's newcomer writing there waits for them too.
    draining: Vec<(Vec<PathBuf>, CancellationToken)>,
}

/// A component ready to run, once its predecessor (if any) has ended.
struct Launch {
    id: String,
    role: Role,
    stats: Arc<ComponentStats>,
    started: Started,
    leftover: Option<Leftover>,
    /// Its predecessor, and any sink leaving that wrote where it writes.
    after: Vec<CancellationToken>,
    done: CancellationToken,
}

impl Running {
    /// Wires queues and spawns one task per component.
    pub fn start(config: PipelineConfig) -> Self {
        let budget = MemoryBudget::new(config.memory_budget.0);
        let view = Arc::new(PipelineView {
            components: Vec::new(),
            queues: Vec::new(),
            budget: budget.clone(),
        });
        let mut running = Running {
            components: BTreeMap::new(),
            budget,
            stopping: CancellationToken::new(),
            stop_requested: CancellationToken::new(),
            alive: Arc::new(watch::Sender::new(0)),
            sources_alive: Arc::new(watch::Sender::new(0)),
            taps: Arc::default(),
            view: watch::Sender::new(view),
            pending: Vec::new(),
            draining: Vec::new(),
        };
        for (id, spec, config) in components(config) {
            running.add(id, spec, config, None, Vec::new());
        }
        running.rewire();
        running.launch();
        running.publish_view();
        running
    }

    /// Applies a new config: see the module's documentation. Returns what changed.
    pub async fn reload(&mut self, config: PipelineConfig) -> Changes {
        let mut changes = Changes::default();
        let budget = config.memory_budget.0;
        if budget != self.budget.total() as u64 {
            changes.memory_budget = Some((self.budget.total() as u64, budget));
            self.budget.resize(budget);
        }
        let new = components(config);
        // Every component leaving or to be replaced that writes directories, or still
        // draining from an earlier reload, and when it ends: a newcomer writing where
        // it wrote waits for that.
        self.draining.retain(|(_, done)| !done.is_cancelled());
        let mut leaving: Vec<(Vec<PathBuf>, CancellationToken)> = (self.components.iter())
            .filter(|(id, live)| {
                !live.spec.writes.is_empty()
                    && new
                        .iter()
                        .find(|(new_id, ..)| new_id == *id)
                        .is_none_or(|(_, spec, _)| !live.spec.same_settings(spec))
            })
            .map(|(_, live)| (live.spec.writes.clone(), live.done.clone()))
            .collect();
        leaving.extend(self.draining.iter().cloned());
        let waits = |spec: &Spec| -> Vec<CancellationToken> {
            (leaving.iter())
                .filter(|(dirs, _)| spec.writes_any(dirs))
                .map(|(_, done)| done.clone())
                .collect()
        };
        let kept_ids: Vec<&String> = new.iter().map(|(id, ..)| id).collect();
        let removed: Vec<String> = self
            .components
            .keys()
            .filter(|id| !kept_ids.contains(id))
            .cloned()
            .collect();
        for id in removed {
            self.retire(&id);
            self.taps.remove(&id);
            changes.removed.push(id);
        }
        for (id, spec, config) in new {
            let Some(live) = self.components.get(&id) else {
                changes.added.push(id.clone());
                let after = waits(&spec);
                self.add(id, spec, config, None, after);
                continue;
            };
            let same = live.spec.same_settings(&spec);
            let rewired = live.spec.inputs != spec.inputs;
            // A source that can change as it runs is offered its new settings even
            // when they read the same: the files they name may have changed.
            let (config, restart) = match (config, live.reconfigure.clone()) {
                (Config::Source(source), Some(reconfigure)) if live.spec.kind == spec.kind => {
                    match reconfigure.offer(source).await {
                        Ok(what) => {
                            if let Some(what) = what {
                                changes.reconfigured.push((id.clone(), what));
                            }
                            if let Some(live) = self.components.get_mut(&id) {
                                live.spec = spec;
                            }
                            continue;
                        }
                        // It must be restarted, even if its settings read the same.
                        Err(source) => (Config::Source(source), true),
                    }
                }
                (config, _) => (config, false),
            };
            if same && !restart {
                if rewired {
                    changes.rewired.push(id.clone());
                }
                if let Some(live) = self.components.get_mut(&id) {
                    live.spec = spec;
                }
                continue;
            }
            let role_changed = live.spec.role != spec.role;
            let mut after = waits(&spec);
            let mut previous = self.retire(&id);
            changes.replaced.push(id.clone());
            if role_changed {
                // Nothing of a source's carries over to a sink, or back: it only
                // waits. A sink has no tap.
                after.extend(previous.take().map(|p| p.after));
                self.taps.remove(&id);
            }
            self.add(id, spec, config, previous, after);
        }
        self.rewire();
        self.launch();
        self.publish_view();
        changes
    }

    /// Takes a component out of the current generation: a source is stopped, a
    /// transform or sink loses its queue once the producers are rewired. Returns what
    /// its successor, if any, inherits: its counters, what it kept, and when it ended.
    fn retire(&mut self, id: &str) -> Option<Successor> {
        let live = self.components.remove(id)?;
        if let Some(stop) = &live.stop {
            stop.cancel();
        }
        if !live.spec.writes.is_empty() {
            self.draining.push((live.spec.writes, live.done.clone()));
        }
        Some(Successor {
            stats: live.stats,
            kept: live.kept,
            after: live.done,
            outputs: live.outputs,
        })
    }

    /// Starts a component once its predecessor (if it replaces one) and every
    /// component in `after` have ended.
    fn add(
        &mut self,
        id: String,
        spec: Spec,
        config: Config,
        previous: Option<Successor>,
        mut after: Vec<CancellationToken>,
    ) {
        let (stats, kept, outputs) = match previous {
            Some(p) => {
                after.push(p.after);
                (p.stats, p.kept, p.outputs)
            }
            None => (Arc::default(), Kept::default(), None),
        };
        let done = CancellationToken::new();
        let producer = spec.role != Role::Sink;
        let outputs = producer.then(|| outputs.unwrap_or_default());
        let fanout = |outputs: &Option<Outputs>| {
            let outputs = outputs.clone().unwrap_or_default();
            Fanout::shared(outputs, stats.clone()).with_tap(self.taps.add(&id))
        };
        let queue = match spec.role {
            Role::Source => None,
            Role::Transform | Role::Sink => Some(mpsc::channel(spec.buffer.max_batches)),
        };
        // A sink's disk buffer takes each batch before its producer goes on.
        let handoff = (spec.role == Role::Sink
            && spec.buffer.disk().is_some()
            && spec.buffer.when_full == WhenFull::Block)
            .then(Handoff::new);
        let (tx, input) = match queue {
            Some((tx, rx)) => {
                let (input, leftover) = Input::new(rx, stats.clone());
                let input = input.with_handoff(handoff.clone());
                (Some(tx), Some((input, leftover)))
            }
            None => (None, None),
        };
        let mut stop = None;
        let (started, leftover) = match (config, input) {
            (Config::Source(config), _) => {
                let source_stop = self.stopping.child_token();
                stop = Some(source_stop.clone());
                let context = SourceContext {
                    id: id.clone(),
                    out: fanout(&outputs),
                    stop: source_stop,
                    budget: self.budget.clone(),
                    kept: kept.clone(),
                };
                (config.start(context), None)
            }
            (Config::Transform(config), Some((input, leftover))) => {
                let context = TransformContext {
                    id: id.clone(),
                    input,
                    out: fanout(&outputs),
                    stats: stats.clone(),
                };
                (config.start(context), Some(leftover))
            }
            (Config::Sink(config), Some((input, leftover))) => {
                let context = SinkContext {
                    id: id.clone(),
                    input,
                    stats: stats.clone(),
                    stop_pipeline: self.stop_requested.clone(),
                    stopping: self.stopping.clone(),
                    budget: self.budget.clone(),
                    disk: spec.buffer.disk(),
                };
                (config.start(context), Some(leftover))
            }
            (_, None) => unreachable!("transforms and sinks have a queue"),
        };
        let live = Live {
            spec,
            stats: stats.clone(),
            published: started.published.clone(),
            reconfigure: started.reconfigure.clone(),
            outputs,
            queue: tx,
            handoff,
            stop,
            done: done.clone(),
            kept,
        };
        self.pending.push(Launch {
            id: id.clone(),
            role: live.spec.role,
            stats,
            started,
            leftover,
            after,
            done,
        });
        self.components.insert(id, live);
    }

    /// Starts every pending component.
    fn launch(&mut self) {
        for launch in std::mem::take(&mut self.pending) {
            self.spawn(launch);
        }
    }

    /// Runs `started` in a task of its own, once `after` (its predecessor) has ended,
    /// so that a panic is caught where it is joined. An error or a panic marks the
    /// component failed, counts what it held and what is still queued for it as
    /// dropped (`component_failed`), and asks the pipeline to stop; its queue is
    /// drained (and counted) until its producers end.
    fn spawn(&self, launch: Launch) {
        let Launch {
            id,
            role,
            stats,
            started,
            leftover,
            after,
            done,
        } = launch;
        let stop_requested = self.stop_requested.clone();
        let alive = Alive::count(self.alive.clone());
        let source_alive = (role == Role::Source).then(|| Alive::count(self.sources_alive.clone()));
        let task = started.task;
        tokio::spawn(async move {
            let _alive = alive;
            let _source_alive = source_alive;
            for after in after {
                after.cancelled().await;
            }
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
            done.cancel();
        });
    }

    /// Points every producer's fan-out at the consumers that list it now.
    fn rewire(&self) {
        for (producer, live) in &self.components {
            let Some(outputs) = &live.outputs else {
                continue;
            };
            let consumers = self.components.iter().filter_map(|(id, consumer)| {
                let tx = consumer.queue.as_ref()?;
                consumer.spec.inputs.contains(producer).then(|| Output {
                    consumer: Arc::from(id.as_str()),
                    tx: tx.clone(),
                    when_full: consumer.spec.buffer.when_full,
                    consumer_stats: consumer.stats.clone(),
                    handoff: consumer.handoff.clone(),
                })
            });
            *outputs.lock().unwrap_or_else(|e| e.into_inner()) = consumers.collect();
        }
    }

    fn publish_view(&self) {
        let components = self
            .components
            .iter()
            .map(|(id, live)| ComponentEntry {
                id: id.clone(),
                role: live.spec.role,
                stats: live.stats.clone(),
                published: live.published.clone(),
            })
            .collect();
        let queues = self
            .components
            .iter()
            .filter_map(|(id, live)| {
                Some(QueueEntry::new(
                    id.clone(),
                    live.queue.as_ref()?.downgrade(),
                ))
            })
            .collect();
        self.view.send_replace(Arc::new(PipelineView {
            components,
            queues,
            budget: self.budget.clone(),
        }));
    }

    /// What `/metrics`, `/health` and the progress line read now.
    pub fn view(&self) -> Arc<PipelineView> {
        self.view.borrow().clone()
    }

    /// The view, followed across reloads.
    pub fn views(&self) -> Views {
        self.view.subscribe()
    }

    /// The live views of each source's and transform's output.
    pub(crate) fn taps(&self) -> Arc<Taps> {
        self.taps.clone()
    }

    /// Resolves when the pipeline ends without being told to: a component asked it to
    /// stop, or every source finished (what they sent then drains after [`Running::stop`]).
    pub async fn ended(&self) -> Ended {
        let mut sources = self.sources_alive.subscribe();
        tokio::select! {
            _ = self.stop_requested.cancelled() => Ended::StopRequested,
            _ = sources.wait_for(|n| *n == 0) => Ended::Finished,
        }
    }

    /// Stops the sources; everything downstream drains and finishes by itself once
    /// the topology lets go of its queues.
    pub fn stop(&mut self) {
        self.stopping.cancel();
        self.components.clear();
    }

    /// Resolves once every component (of every generation) has finished.
    pub async fn drained(&self) {
        let _ = self.alive.subscribe().wait_for(|n| *n == 0).await;
    }

    /// Components that have not finished yet.
    pub(crate) fn unfinished(&self) -> usize {
        *self.alive.borrow()
    }
}

/// What a replaced component hands its successor.
struct Successor {
    stats: Arc<ComponentStats>,
    kept: Kept,
    after: CancellationToken,
    outputs: Option<Outputs>,
}

/// One component task counted as alive for as long as this lives.
struct Alive(Arc<watch::Sender<usize>>);

impl Alive {
    fn count(alive: Arc<watch::Sender<usize>>) -> Self {
        alive.send_modify(|n| *n += 1);
        Alive(alive)
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// The components of a config, each with the spec a reload compares.
fn components(config: PipelineConfig) -> Vec<(String, Spec, Config)> {
    let sources = config.sources.into_iter().map(|c| {
        let spec = Spec::of(Role::Source, &c);
        (c.id, spec, Config::Source(c.config))
    });
    let transforms = config.transforms.into_iter().map(|c| {
        let spec = Spec::of(Role::Transform, &c);
        (c.id, spec, Config::Transform(c.config))
    });
    let sinks = config.sinks.into_iter().map(|c| {
        let mut spec = Spec::of(Role::Sink, &c);
        spec.writes
            .extend(c.config.writes_into().map(PathBuf::from));
        (c.id, spec, Config::Sink(c.config))
    });
    sources.chain(transforms).chain(sinks).collect()
}

/// What a panicking task said, as an error message.
fn panic_message(join: tokio::task::JoinError) -> String {
    match join.try_into_panic() {
        Ok(payload) => format!("panicked: {}", panic::message(payload.as_ref())),
        Err(join) => format!("its task ended abnormally: {join}"),
    }
}

#[cfg(test)]
mod tests;
