//! Transform stages: between sources and sinks. Each takes a batch and hands on a
//! batch derived from it (see `pipeline::transform`).

pub mod enrich;
pub mod filter;
pub mod normalise;
