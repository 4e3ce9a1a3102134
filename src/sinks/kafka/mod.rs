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
//!
//! With `buffer: {type: disk}` ([`buffered`]) every sample is appended to a file buffer
//! first and removed only once acknowledged: an outage longer than memory holds, a
//! shutdown with the broker away, and a killed process lose nothing; what was not
//! acknowledged is delivered at the next start.

mod buffered;
mod config;
mod encoder;
mod producer;
mod sink;
#[cfg(test)]
mod tests;

pub use encoder::{Encoder, KafkaEncoding, Message};

use std::sync::Arc;

use crate::pipeline::component::{
    ComponentResult, ComponentType, SinkConfig, SinkContext, Started,
};
use config::KafkaConfig;
use producer::ClientStats;

/// The registry's entry for `type: kafka`.
pub const TYPE: ComponentType<dyn SinkConfig> = ComponentType {
    name: "kafka",
    decode: |body, _| Ok(Box::new(config::decode(body)?)),
};

impl SinkConfig for KafkaConfig {
    fn start(self: Box<Self>, ctx: SinkContext) -> Started {
        let client = Arc::new(ClientStats::default());
        Started::task(run(*self, ctx, client.clone())).publishing(client)
    }

    fn takes_disk_buffer(&self) -> bool {
        true
    }
}

/// Delivers from the memory buffer, or through the disk buffer when there is one.
async fn run(
    config: KafkaConfig,
    mut ctx: SinkContext,
    client: Arc<ClientStats>,
) -> ComponentResult {
    let parts = sink::prepare(&config, &ctx, client)?;
    match ctx.disk.take() {
        Some(disk) => buffered::run(disk, parts, ctx).await,
        None => sink::run(parts, ctx).await,
    }
}
