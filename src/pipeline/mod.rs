//! Layer 2, the pipeline's primitives: batches of samples and the memory budget they
//! are charged to ([`batch`]), the queue in front of a consumer ([`queue`]), fan-out to
//! consumers ([`fanout`]), a sink's disk buffer ([`disk_buffer`]), per-component
//! counters ([`stats`]), what a component
//! publishes for `/metrics` ([`metrics`]), live views of a component's output
//! ([`tap`]), the loop every transform runs ([`transform`]), and what a component is
//! given and gives back ([`component`]). Components (layer 3) are built from these;
//! they know nothing of how a pipeline is assembled.

pub mod batch;
pub mod component;
pub(crate) mod disk_buffer;
pub mod fanout;
pub mod metrics;
pub mod queue;
pub mod stats;
pub(crate) mod tap;
pub(crate) mod transform;
