//! `type: kafka`: one message per sample, with nothing lost silently.
//!
//! Every message's delivery report is awaited; a sample counts as sent only once the
//! broker has acknowledged it (`acks: all` and idempotence by default). librdkafka
//! retries what can be retried, and never expires a message; what the broker refuses
//! for good (too large, not authorised) is logged with the sample's miner and counted
//! as dropped (`delivery_failed`).
//!
//! What is sent and not yet acknowledged is bounded ([`InFlightLimits`]): at the bound
//! the sink stops taking batches, its queue fills, and the pipeline is held back, so a
//! slow or absent broker costs a fixed amount of memory. At shutdown the sink waits at
//! most `shutdown_timeout` for outstanding deliveries, then reports how many samples
//! were still undelivered (`shutdown_timeout`) and fails the run.

mod config;
mod encoder;
mod producer;
mod sink;
#[cfg(test)]
mod tests;

pub use encoder::{Encoder, KafkaEncoding, Message};

use crate::pipeline::component::{ComponentType, SinkConfig};

/// The registry's entry for `type: kafka`.
pub const TYPE: ComponentType<dyn SinkConfig> = ComponentType {
    name: "kafka",
    decode: |body, _| Ok(Box::new(config::decode(body)?)),
};
