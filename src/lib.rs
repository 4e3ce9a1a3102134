//! rigtap: a telemetry collector agent for fleets of Bitcoin ASIC miners.
//!
//! Sources read samples, transforms reshape them, sinks deliver them; a YAML pipeline
//! says which, and [`topology`] runs it with bounded queues and ordered shutdown.

pub mod config;
pub mod limits;
pub mod proto;
pub mod sample;
pub mod sim;
pub mod sinks;
pub mod sources;
pub mod telemetry;
pub mod template;
pub mod topology;
pub mod transforms;
