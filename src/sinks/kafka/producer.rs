//! The librdkafka producer: its properties from the sink's config, and its own log and
//! error events routed into rigtap's log under a line budget.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use rdkafka::statistics::Statistics;

use super::config::KafkaConfig;
use crate::pipeline::component::Published;
use crate::pipeline::metrics::Exposition;
use crate::toolkit::log_budget::LogBudget;

/// The producer's own counts of retried and failed requests, from librdkafka's
/// statistics (totals since the producer started).
#[derive(Debug, Default)]
pub(super) struct ClientStats {
    retries: AtomicU64,
    errors: AtomicU64,
}

impl Published for ClientStats {
    fn publish(&self, id: &str, out: &mut Exposition) {
        let sink = [("component", id)];
        out.counter(
            "rigtap_sink_retries",
            "Requests the destination's client sent again (librdkafka's count).",
            &sink,
            self.retries.load(Relaxed),
        );
        out.counter(
            "rigtap_sink_errors",
            "Requests that failed at the destination (librdkafka's count).",
            &sink,
            self.errors.load(Relaxed),
        );
    }
}

pub(super) fn create(
    config: &KafkaConfig,
    sink: &str,
    stats: Arc<ClientStats>,
) -> Result<FutureProducer<Events>, KafkaError> {
    let mut client = config.client_config();
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
pub(super) struct Events {
    sink: String,
    budget: LogBudget,
    stats: Arc<ClientStats>,
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
