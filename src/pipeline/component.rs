//! What a component is: a type the registry lists (a name and a decoder), a decoded
//! config that starts a task, the context that task is given, and what it publishes
//! to the operator beyond its counters. Components implement these; the topology
//! (layer 4) lists, wires and runs them.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::batch::MemoryBudget;
use super::fanout::Fanout;
use super::metrics::Exposition;
use super::queue::Input;
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

/// A decoded source, ready to start.
pub trait SourceConfig: fmt::Debug + Send + Sync {
    fn start(self: Box<Self>, ctx: SourceContext) -> Started;
}

/// A decoded transform, ready to start.
pub trait TransformConfig: fmt::Debug + Send + Sync {
    fn start(self: Box<Self>, ctx: TransformContext) -> Started;
}

/// A decoded sink, ready to start.
pub trait SinkConfig: fmt::Debug + Send + Sync {
    fn start(self: Box<Self>, ctx: SinkContext) -> Started;
}

/// A started component: its task, and what it shows the operator.
pub struct Started {
    pub task: ComponentTask,
    pub(crate) published: Option<Arc<dyn Published>>,
}

impl Started {
    pub fn task(task: impl Future<Output = ComponentResult> + Send + 'static) -> Self {
        Started {
            task: Box::pin(task),
            published: None,
        }
    }

    pub(crate) fn publishing(mut self, published: Arc<dyn Published>) -> Self {
        self.published = Some(published);
        self
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

/// A source's miners, as `/health` and the progress line see them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FleetSummary {
    pub miners: u64,
    pub online: u64,
    /// Miner API calls that failed, since the start.
    pub(crate) failed_calls: u64,
}

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
}
