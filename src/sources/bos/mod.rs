//! `type: bos`: the whole fleet of Braiins OS miners in one source.
//!
//! One task per miner ([`miner`]) holds the miner's status stream and polls its
//! telemetry over one HTTP/2 channel; what the tasks share is bounded: a cap on open
//! connections ([`pool`]), fleet-wide governors on new connections and on calls, a
//! per-miner call governor, and one queue to the pipeline (`fleet::emit`). Failures
//! back off with jitter (`fleet::backoff`) behind a per-miner circuit breaker
//! (`fleet::breaker`); failed calls are tried again within their deadline ([`retry`]);
//! every change of a miner's state becomes a status sample (`fleet::status`).

pub(crate) mod answer_memory;
pub(crate) mod channel;
pub(crate) mod client;
pub mod config;
pub(crate) mod connect;
pub(crate) mod miner;
pub mod poll;
pub(crate) mod pool;
pub(crate) mod record;
pub(crate) mod retry;
mod source;
pub(crate) mod tls;

pub use source::run;

use crate::pipeline::component::{ComponentType, SourceConfig};

/// The registry's entry for `type: bos`.
pub const TYPE: ComponentType<dyn SourceConfig> = ComponentType {
    name: "bos",
    decode: |body, context| Ok(Box::new(config::decode(body, context)?)),
};
