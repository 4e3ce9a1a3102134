//! rigtap: a telemetry collector agent for fleets of Bitcoin ASIC miners.
//!
//! Sources read samples, transforms reshape them, sinks deliver them; a YAML pipeline
//! says which. The modules are layers, each importing only from those below it
//! (docs/architecture.md has the picture, and tests/layers.rs checks it):
//!
//! 1. [`toolkit`]: YAML with positions, units, secrets, the inventory, the `Sample`,
//!    templates, histograms, the wire types. Knows nothing of components.
//! 2. [`pipeline`]: batches and the memory budget, queues, fan-out, counters, and what
//!    a component is given and gives back.
//! 3. [`fleet`]: what the miner sources share: targets, governors, backoff, breaker,
//!    status samples, the queue to the pipeline, the pool's counters.
//! 4. [`sources`], [`transforms`], [`sinks`]: the components, each folder owning its
//!    config, loop, encoder and metrics. [`sim`], the simulated fleet, stands beside
//!    them: a tool, not part of the pipeline.
//! 5. [`topology`]: the registry of component types, the config file's pipeline, the
//!    graph check, building and running the pipeline.
//! 6. [`operator`]: what the operator sees and drives: the API, health, progress, logs,
//!    signals, and the agent that puts a run together.
//! 7. `main.rs`: arguments and exit codes.

#![warn(unreachable_pub)]

pub mod toolkit;

pub mod pipeline;

pub mod fleet;

pub mod sim;
pub mod sinks;
pub mod sources;
pub(crate) mod transforms;

pub mod topology;

pub mod operator;
