//! The librdkafka producer: its properties from the sink's config, and its own log and
//! error events routed into rigtap's log under a line budget.

use std::num::NonZeroU32;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use rdkafka::statistics::Statistics;

use super::config::{Acks, KafkaConfig};
use crate::telemetry::log_budget::LogBudget;
use crate::topology::stats::ComponentStats;

/// librdkafka's own upper bounds for its local queue.
const MAX_QUEUE_MESSAGES: usize = 2_147_483_647;
const MAX_QUEUE_KBYTES: u64 = 2_147_483_647;

/// The properties rigtap sets, then the user's `librdkafka:` map over them.
pub fn client_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    let in_flight = &config.max_in_flight;
    client
        .set("bootstrap.servers", config.brokers.join(","))
        .set("acks", config.acks.librdkafka_value())
        .set("enable.idempotence", config.idempotence.to_string())
        .set("compression.type", config.compression.librdkafka_value())
        .set("batch.num.messages", config.batch.max_messages.to_string())
        .set(
            "batch.size",
            config.batch.max_bytes.0.min(i32::MAX as u64).to_string(),
        )
        .set("linger.ms", config.batch.linger.0.as_millis().to_string())
        // Never expire a message: the sink bounds what is in flight, backpressures the
        // pipeline while the broker is away, and `shutdown_timeout` bounds the wait at
        // the end. An expired message would be a loss the broker never saw.
        .set("message.timeout.ms", "0")
        // The same partition for a key as the Java client (and kafka-python) choose.
        .set("partitioner", "murmur2_random")
        // librdkafka's own queue must hold at least what the sink lets be in flight,
        // with room for its per-message overhead (headers), so it never refuses a send.
        .set(
            "queue.buffering.max.messages",
            in_flight
                .messages
                .saturating_mul(2)
                .min(MAX_QUEUE_MESSAGES)
                .to_string(),
        )
        .set(
            "queue.buffering.max.kbytes",
            (in_flight.bytes.0 / 1024 * 2 + 1024)
                .min(MAX_QUEUE_KBYTES)
                .to_string(),
        )
        .set_log_level(RDKafkaLogLevel::Warning);
    for (name, value) in &config.librdkafka.0 {
        client.set(name, value);
    }
    client
}

/// Checks what librdkafka would refuse, without starting a client: unknown properties,
/// bad values, and combinations the producer refuses at start.
pub fn check(config: &KafkaConfig) -> Result<(), String> {
    if config.idempotence && config.acks != Acks::All {
        return Err("`idempotence: true` needs `acks: all`; set `acks: all`, or `idempotence: false` to accept duplicates and losses on broker failover".into());
    }
    if config.brokers.iter().all(|b| b.trim().is_empty()) {
        return Err("`brokers` is empty; list at least one `host:port`".into());
    }
    client_config(config)
        .create_native_config()
        .map(drop)
        .map_err(|e| format!("librdkafka refused the producer settings: {e}; see https://github.com/confluentinc/librdkafka/blob/master/CONFIGURATION.md"))
}

pub fn create(
    config: &KafkaConfig,
    sink: &str,
    stats: Arc<ComponentStats>,
) -> Result<FutureProducer<Events>, KafkaError> {
    let mut client = client_config(config);
    client
        .set("client.id", format!("rigtap-{sink}"))
        // Retries and request errors for /metrics come from librdkafka's statistics.
        .set("statistics.interval.ms", "5000");
    client.create_with_context(Events {
        sink: sink.to_string(),
        budget: LogBudget::new(NonZeroU32::MIN, NonZeroU32::new(5).expect("5 > 0")),
        stats,
    })
}

/// Where librdkafka's log lines and error events go: a broker that is down is reported
/// every few seconds, not on every reconnect attempt.
pub struct Events {
    sink: String,
    budget: LogBudget,
    stats: Arc<ComponentStats>,
}

impl ClientContext for Events {
    /// librdkafka's log lines repeat what its error events say (a refused connection
    /// is both), so only the gravest are shown by default; the rest are at debug.
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let sink = &self.sink;
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical
                if self.budget.allow() =>
            {
                let suppressed = self.budget.suppressed();
                tracing::error!(
                    sink,
                    facility,
                    suppressed_so_far = suppressed,
                    "librdkafka: {message}"
                )
            }
            _ => tracing::debug!(sink, facility, "librdkafka: {message}"),
        }
    }

    /// librdkafka's counters are totals since the producer started.
    fn stats(&self, statistics: Statistics) {
        let brokers = statistics.brokers.values();
        let (retries, errors) = brokers.fold((0, 0), |(r, e), b| (r + b.txretries, e + b.txerrs));
        self.stats.retries.store(retries, Relaxed);
        self.stats.errors.store(errors, Relaxed);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if self.budget.allow() {
            tracing::warn!(
                sink = %self.sink,
                %error,
                suppressed_so_far = self.budget.suppressed(),
                "kafka: {reason}; the producer keeps retrying, and the pipeline is held back while messages wait"
            );
        }
    }
}
