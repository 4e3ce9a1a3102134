//! What every miner source shares (`bos` over gRPC, `cgminer` over the CGMiner API):
//! which miners to collect from ([`targets`]), the fleet-wide rate governors
//! ([`fair_rate`]), backoff with jitter ([`backoff`]) behind a per-miner circuit breaker
//! ([`breaker`]), status samples and their log budget ([`status`]), the bounded queue
//! from the miner tasks to the pipeline ([`emit`]), and the pool's counters, published
//! for `/metrics` and `/health` ([`stats`]); and what their answers become
//! samples with ([`figures`]), when polls come ([`schedule`]), a recording of what
//! the miners answered ([`record`]), and what each miner owed and what arrived
//! ([`completeness`]).

pub(crate) mod backoff;
pub(crate) mod breaker;
pub(crate) mod completeness;
pub(crate) mod emit;
pub(crate) mod fair_rate;
pub(crate) mod figures;
pub(crate) mod record;
pub(crate) mod schedule;
pub mod stats;
pub(crate) mod status;
pub mod targets;
