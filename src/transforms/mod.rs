//! Transform stages: between sources and sinks. Each takes a batch and hands on a
//! batch derived from it (see `pipeline::transform`).

pub(crate) mod enrich;
pub(crate) mod filter;
pub(crate) mod normalise;
