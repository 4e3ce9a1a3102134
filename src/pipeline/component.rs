//! What a component is: a type the registry lists (a name and a decoder), a decoded
//! config that starts a task, the context that task is given, and what it publishes
//! to the operator beyond its counters. Components implement these; the topology
//! (layer 4) lists, wires and runs them.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::batch::MemoryBudget;
use super::fanout::Fanout;
use super::metrics::Exposition;
use super::queue::{DiskBuffer, Input};
use super::stats::ComponentStats;
use crate::toolkit::inventory::InventoryRow;
use crate::toolkit::yaml::decode::DecodeError;
use crate::toolkit::yaml::node::Node;

/// What a component task returns; each component has its own typed error.
pub type ComponentResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

pub(crate) type ComponentTask = Pin<Box<dyn Future<Output = ComponentResult> + Send>>;

/// A component type as the registry lists it: the `type:` name users write, and how
/// to decode and check the rest of the component's settings.
pub struct ComponentType<C: ?Sized> {
    pub name: &'static str,
    pub decode: fn(&Node, &DecodeContext) -> Result<Box<C>, DecodeError>,
}

/// What decoding may need beyond the component's own settings.
#[derive(Clone, Debug, Default)]
pub struct DecodeContext {
    /// Miners this process serves itself (the embedded simulator's fleet), for a
    /// source that asks for them: plain targets, like an inventory's.
    pub(crate) embedded_fleet: Option<Arc<[InventoryRow]>>,
}

/// A decoded source, ready to start. (`Any`, so that a running source offered a new
/// config on a reload can look at it as its own type.)
pub trait SourceConfig: Any + fmt::Debug + Send + Sync {
    fn start(self: Box<Self>, ctx: SourceContext) -> Started;
}

/// A decoded transform, ready to start.
pub trait TransformConfig: fmt::Debug + Send + Sync {
    fn start(self: Box<Self>, ctx: TransformContext) -> Started;
}

/// A decoded sink, ready to start.
pub trait SinkConfig: fmt::Debug + Send + Sync {
    fn start(self: Box<Self>, ctx: SinkContext) -> Started;

    /// Whether it can deliver from a disk buffer (`buffer: {type: disk}`): it must
    /// know when the destination has acknowledged each sample.
    fn takes_disk_buffer(&self) -> bool {
        false
    }

    /// The directory tree it writes its output into, if it writes files: no other
    /// sink's files or disk buffer may be in it.
    fn writes_into(&self) -> Option<&std::path::Path> {
        None
    }
}

/// A started component: its task, what it shows the operator, and, for a source
/// that can change while it runs, how to offer it a new config.
pub struct Started {
    pub task: ComponentTask,
    pub(crate) published: Option<Arc<dyn Published>>,
    pub(crate) reconfigure: Option<Arc<dyn Reconfigure>>,
}

impl Started {
    pub fn task(task: impl Future<Output = ComponentResult> + Send + 'static) -> Self {
        Started {
            task: Box::pin(task),
            published: None,
            reconfigure: None,
        }
    }

    pub(crate) fn publishing(mut self, published: Arc<dyn Published>) -> Self {
        self.published = Some(published);
        self
    }

    pub(crate) fn reconfigurable(mut self, reconfigure: Arc<dyn Reconfigure>) -> Self {
        self.reconfigure = Some(reconfigure);
        self
    }
}

/// What a reload offers a running source: `Ok` when it took the new config as it runs
/// (with what changed, in words, if anything did); `Err` with the config, when it
/// must be restarted.
pub(crate) type Offer =
    Pin<Box<dyn Future<Output = Result<Option<String>, Box<dyn SourceConfig>>> + Send>>;

/// A running source that can take a new config without a restart (a `bos` source
/// whose targets changed connects only the new miners and closes only the removed).
pub(crate) trait Reconfigure: Send + Sync {
    fn offer(&self, new: Box<dyn SourceConfig>) -> Offer;
}

/// The config a reload offers a running source, as its own type: the topology offers
/// a source only a config of its own kind.
pub(crate) fn offered<T: SourceConfig>(new: Box<dyn SourceConfig>) -> Box<T> {
    let any: Box<dyn Any + Send> = new;
    match any.downcast::<T>() {
        Ok(new) => new,
        Err(_) => unreachable!("a reload offers a source only its own type"),
    }
}

/// State a component keeps across a reload that restarts it: the topology holds it
/// by component id, so counters and gauges carry on (a `bos` source keeps its pool's).
#[derive(Clone, Default)]
pub struct Kept(Arc<Mutex<Option<Arc<dyn Any + Send + Sync>>>>);

impl Kept {
    /// The kept `T`, made with `T::default()` the first time (or when the component
    /// kept something else before).
    pub(crate) fn get<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(kept) = slot.as_ref().and_then(|k| k.clone().downcast::<T>().ok()) {
            return kept;
        }
        let fresh = Arc::new(T::default());
        *slot = Some(fresh.clone());
        fresh
    }
}

/// What a running component shows the operator surface besides its counters.
pub trait Published: Send + Sync {
    /// Its own series for `/metrics`; `id` is the component's id.
    fn publish(&self, id: &str, out: &mut Exposition);

    /// The miners it collects from, for `/health` and the progress line.
    fn fleet(&self) -> Option<FleetSummary> {
        None
    }
}

/// A source's miners, as `/health`, `/status` and the progress line see them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetSummary {
    pub miners: u64,
    pub online: u64,
    /// Miners in each state, by the state's name.
    pub(crate) states: Vec<(&'static str, i64)>,
    /// Miner API calls that failed, since the start.
    pub(crate) failed_calls: u64,
    /// The calls' latency quantile 0.99, as a bucket bound in ms.
    pub(crate) call_p99_ms: Option<u64>,
    /// The fleet-wide governor (by its `rate` key) that has had no budget to spare
    /// for longest, and for how long.
    pub(crate) short_of_budget: Option<(&'static str, std::time::Duration)>,
}

/// What a source is given.
pub struct SourceContext {
    pub id: String,
    pub out: Fanout,
    /// Cancelled when the pipeline stops (or a reload removes or replaces the source);
    /// the source then finishes the batch it holds.
    pub stop: CancellationToken,
    pub budget: MemoryBudget,
    /// What it keeps across a reload that restarts it.
    pub kept: Kept,
}

/// What a transform is given.
pub struct TransformContext {
    pub id: String,
    pub input: Input,
    pub out: Fanout,
    pub stats: Arc<ComponentStats>,
}

/// What a sink is given.
pub struct SinkContext {
    pub id: String,
    pub input: Input,
    pub stats: Arc<ComponentStats>,
    /// Lets a sink ask for the whole pipeline to stop (its output went away).
    pub stop_pipeline: CancellationToken,
    /// Cancelled when the pipeline starts to stop, for sinks that bound how long they
    /// wait for their destination at shutdown.
    pub stopping: CancellationToken,
    /// What the sink holds outside batches (its own buffers) is charged here too.
    pub budget: MemoryBudget,
    /// `buffer: {type: disk}`: where its samples wait until delivered.
    pub disk: Option<DiskBuffer>,
}
