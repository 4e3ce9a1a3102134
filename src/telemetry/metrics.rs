//! What the running pipeline can say about itself: the counters of every component,
//! queue depths, the `bos` sources' pool statistics, the memory budget and the process;
//! rendered as Prometheus text for `/metrics`, judged for `/health`, and summed for the
//! progress line.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::api_config::HealthConfig;
use super::health::{Since, SinkProgress};
use super::histogram::{LatencyHistogram, BOUNDS_MS};
use super::process::Process;
use crate::sample::MinerState;
use crate::sources::bos::stats::{Method, PoolStats};
use crate::topology::batch::{MemoryBudget, SharedBatch};
use crate::topology::stats::{ComponentStats, DropReason};

/// Which section a component is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Source,
    Transform,
    Sink,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Transform => "transform",
            Role::Sink => "sink",
        }
    }
}

pub struct ComponentEntry {
    pub id: String,
    pub role: Role,
    pub stats: Arc<ComponentStats>,
    /// For sinks: whether they deliver, as last observed for `/health`.
    pub(super) progress: SinkProgress,
}

impl ComponentEntry {
    pub fn new(id: String, role: Role, stats: Arc<ComponentStats>) -> Self {
        ComponentEntry {
            id,
            role,
            stats,
            progress: SinkProgress::default(),
        }
    }
}

/// The queue in front of a transform or sink.
pub struct QueueEntry {
    pub consumer: String,
    tx: mpsc::WeakSender<SharedBatch>,
    /// Since when it has been full, as last observed for `/health`.
    pub(super) full: Since,
}

impl QueueEntry {
    pub fn new(consumer: String, tx: mpsc::WeakSender<SharedBatch>) -> Self {
        QueueEntry {
            consumer,
            tx,
            full: Since::default(),
        }
    }

    /// Batches queued now, and the queue's capacity; `None` once it has closed.
    pub fn depth(&self) -> Option<(usize, usize)> {
        self.tx
            .upgrade()
            .map(|tx| (tx.max_capacity() - tx.capacity(), tx.max_capacity()))
    }
}

/// Everything `/metrics`, `/health` and the progress line read.
pub struct Telemetry {
    pub components: Vec<ComponentEntry>,
    pub queues: Vec<QueueEntry>,
    /// `bos` sources' pool statistics, by source id.
    pub pools: Vec<(String, Arc<PoolStats>)>,
    pub budget: MemoryBudget,
    pub health: HealthConfig,
}

impl Telemetry {
    /// Sums for the progress line.
    pub fn totals(&self) -> Totals {
        let sum = |role: Role, f: &dyn Fn(&ComponentStats) -> u64| -> u64 {
            self.components
                .iter()
                .filter(|c| c.role == role)
                .map(|c| f(&c.stats))
                .sum()
        };
        let pool =
            |f: &dyn Fn(&PoolStats) -> i64| -> i64 { self.pools.iter().map(|(_, p)| f(p)).sum() };
        Totals {
            produced: sum(Role::Source, &|s| s.samples_out()),
            delivered: sum(Role::Sink, &|s| s.samples_out()),
            bytes_out: sum(Role::Sink, &|s| s.bytes_out()),
            dropped: self
                .components
                .iter()
                .map(|c| c.stats.dropped_total())
                .sum(),
            miners: pool(&|p| p.miners.load(Relaxed) as i64) as u64,
            online: pool(&|p| p.in_state(MinerState::Online)).max(0) as u64,
            rpc_failed: pool(&|p| p.rpc_failed() as i64) as u64,
            failed: self.components.iter().filter(|c| c.stats.failed()).count(),
        }
    }

    /// The Prometheus text exposition format, version 0.0.4.
    pub fn render(&self) -> String {
        let mut out = Metrics(String::with_capacity(16 * 1024));
        self.render_components(&mut out);
        self.render_pools(&mut out);
        let process = Process::read();
        let singles = [
            (
                "rigtap_memory_budget_bytes",
                "gauge",
                "Bytes the pipeline's queued batches may hold.",
                self.budget.total() as f64,
            ),
            (
                "rigtap_memory_budget_in_use_bytes",
                "gauge",
                "Bytes charged by live batches.",
                self.budget.in_use() as f64,
            ),
            (
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                process.rss_bytes as f64,
            ),
            (
                "process_cpu_seconds_total",
                "counter",
                "User and system CPU time spent in seconds.",
                process.cpu_seconds,
            ),
        ];
        for (name, kind, help, value) in singles {
            out.family(name, kind, help);
            out.sample(name, &[], value);
        }
        out.0
    }

    fn render_components(&self, out: &mut Metrics) {
        type Counter = fn(&ComponentStats) -> u64;
        let counters: [(&str, &str, Counter); 3] = [
            (
                "rigtap_component_received_samples_total",
                "Samples a component took from its input queue.",
                ComponentStats::samples_in,
            ),
            (
                "rigtap_component_sent_samples_total",
                "Samples a component passed on; for a sink, delivered (written, acknowledged).",
                ComponentStats::samples_out,
            ),
            (
                "rigtap_component_sent_bytes_total",
                "Encoded bytes a sink delivered.",
                ComponentStats::bytes_out,
            ),
        ];
        for (name, help, get) in counters {
            out.family(name, "counter", help);
            for c in &self.components {
                out.sample(
                    name,
                    &[("component", &c.id), ("kind", c.role.as_str())],
                    get(&c.stats) as f64,
                );
            }
        }
        let name = "rigtap_component_dropped_samples_total";
        out.family(
            name,
            "counter",
            "Samples a component dropped, by reason; every drop has one.",
        );
        for c in &self.components {
            for reason in DropReason::ALL {
                let labels = [
                    ("component", c.id.as_str()),
                    ("kind", c.role.as_str()),
                    ("reason", reason.as_str()),
                ];
                out.sample(name, &labels, c.stats.dropped_for(reason) as f64);
            }
        }
        let name = "rigtap_component_failed";
        out.family(name, "gauge", "1 when the component returned an error.");
        for c in &self.components {
            out.sample(
                name,
                &[("component", &c.id), ("kind", c.role.as_str())],
                f64::from(u8::from(c.stats.failed())),
            );
        }
        let sinks = || self.components.iter().filter(|c| c.role == Role::Sink);
        type SinkValue = fn(&ComponentStats) -> f64;
        let sink_values: [(&str, &str, &str, SinkValue); 3] = [
            (
                "rigtap_sink_in_flight_samples",
                "gauge",
                "Samples handed to the destination and not yet acknowledged.",
                |s| s.in_flight.load(Relaxed) as f64,
            ),
            (
                "rigtap_sink_retries_total",
                "counter",
                "Requests the destination's client sent again (librdkafka's count).",
                |s| s.retries.load(Relaxed) as f64,
            ),
            (
                "rigtap_sink_errors_total",
                "counter",
                "Requests that failed at the destination (librdkafka's count).",
                |s| s.errors.load(Relaxed) as f64,
            ),
        ];
        for (name, kind, help, get) in sink_values {
            out.family(name, kind, help);
            for sink in sinks() {
                out.sample(name, &[("component", &sink.id)], get(&sink.stats));
            }
        }
        let name = "rigtap_sink_delivery_duration_seconds";
        out.family(
            name,
            "histogram",
            "From handing a sample to the destination to its acknowledgement.",
        );
        for sink in sinks().filter(|s| s.stats.delivery.count() > 0) {
            out.histogram(name, &[("component", &sink.id)], &sink.stats.delivery);
        }
        type Depth = fn((usize, usize)) -> usize;
        let queues: [(&str, &str, Depth); 2] = [
            (
                "rigtap_queue_batches",
                "Batches waiting in the queue in front of a transform or sink.",
                |(depth, _)| depth,
            ),
            (
                "rigtap_queue_capacity_batches",
                "How many batches that queue holds (buffer.max_batches).",
                |(_, capacity)| capacity,
            ),
        ];
        for (name, help, get) in queues {
            out.family(name, "gauge", help);
            for q in &self.queues {
                if let Some(depth) = q.depth() {
                    out.sample(name, &[("component", &q.consumer)], get(depth) as f64);
                }
            }
        }
    }

    fn render_pools(&self, out: &mut Metrics) {
        use Relaxed;
        type Gauge = fn(&PoolStats) -> f64;
        let gauges: [(&str, &str, &str, Gauge); 8] = [
            (
                "rigtap_source_miners",
                "gauge",
                "Miners this source collects from.",
                |p| p.miners.load(Relaxed) as f64,
            ),
            (
                "rigtap_source_miners_in_backoff",
                "gauge",
                "Miners waiting to retry.",
                |p| p.in_backoff.load(Relaxed) as f64,
            ),
            (
                "rigtap_source_miners_breaker_open",
                "gauge",
                "Miners whose circuit breaker is open.",
                |p| p.breaker_open.load(Relaxed) as f64,
            ),
            (
                "rigtap_source_connections_open",
                "gauge",
                "Open HTTP/2 channels to miners.",
                |p| p.connections_open.load(Relaxed) as f64,
            ),
            (
                "rigtap_source_connect_attempts_total",
                "counter",
                "Connection attempts.",
                |p| p.connect_attempts.load(Relaxed) as f64,
            ),
            (
                "rigtap_source_logins_total",
                "counter",
                "Logins made.",
                |p| p.logins.load(Relaxed) as f64,
            ),
            (
                "rigtap_source_polls_skipped_total",
                "counter",
                "Polls skipped because the pipeline was full (backpressure).",
                |p| p.polls_skipped.load(Relaxed) as f64,
            ),
            (
                "rigtap_source_stream_reopens_total",
                "counter",
                "Status streams re-opened.",
                |p| p.stream_reopens.load(Relaxed) as f64,
            ),
        ];
        for (name, kind, help, get) in gauges {
            out.family(name, kind, help);
            for (source, pool) in &self.pools {
                out.sample(name, &[("source", source)], get(pool));
            }
        }
        let name = "rigtap_source_rpcs_total";
        out.family(
            name,
            "counter",
            "Miner API calls by method and gRPC status code (only those made).",
        );
        for (source, pool) in &self.pools {
            for method in Method::ALL {
                for code in 0..=16 {
                    let calls = pool.calls(method, code);
                    if calls > 0 {
                        // The names gRPC's own libraries use: OK, Unavailable, ...
                        let code = match tonic::Code::from_i32(code as i32) {
                            tonic::Code::Ok => "OK".to_string(),
                            other => format!("{other:?}"),
                        };
                        let labels = [
                            ("source", source.as_str()),
                            ("method", method.as_str()),
                            ("code", &code),
                        ];
                        out.sample(name, &labels, calls as f64);
                    }
                }
            }
        }
        let name = "rigtap_source_miners_in_state";
        out.family(name, "gauge", "Miners by the collector's view of them.");
        for (source, pool) in &self.pools {
            for state in MinerState::ALL {
                out.sample(
                    name,
                    &[("source", source), ("state", state.as_str())],
                    pool.in_state(state) as f64,
                );
            }
        }
        let name = "rigtap_source_rpc_duration_seconds";
        out.family(name, "histogram", "Miner API call latency by method.");
        for (source, pool) in &self.pools {
            for method in Method::ALL {
                let latency = pool.latency(method);
                if latency.count() > 0 {
                    out.histogram(
                        name,
                        &[("source", source), ("method", method.as_str())],
                        latency,
                    );
                }
            }
        }
    }
}

/// Sums over the pipeline, for the progress line.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Totals {
    pub produced: u64,
    pub delivered: u64,
    pub bytes_out: u64,
    pub dropped: u64,
    pub miners: u64,
    pub online: u64,
    pub rpc_failed: u64,
    pub failed: usize,
}

/// Prometheus text being written.
struct Metrics(String);

impl Metrics {
    /// The `_bucket`, `_sum` and `_count` samples of one histogram.
    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], histogram: &LatencyHistogram) {
        let counts = histogram.counts();
        let mut cumulative = 0;
        let bucket = format!("{name}_bucket");
        let bounds = BOUNDS_MS.iter().map(|ms| (*ms as f64 / 1000.0).to_string());
        for (le, count) in bounds.chain(["+Inf".to_string()]).zip(&counts) {
            cumulative += count;
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, cumulative as f64);
        }
        self.sample(&format!("{name}_sum"), labels, histogram.sum_seconds());
        self.sample(&format!("{name}_count"), labels, cumulative as f64);
    }

    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let escaped = value
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.0, "{key}=\"{escaped}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// A pipeline of one sink, `kafka`, behind `queue`, for the tests of this module and
/// of [`super::health`].
#[cfg(test)]
pub(super) fn one_sink(
    queue: &mpsc::Sender<SharedBatch>,
    stats: Arc<ComponentStats>,
    health: HealthConfig,
) -> Telemetry {
    Telemetry {
        components: vec![ComponentEntry::new("kafka".into(), Role::Sink, stats)],
        queues: vec![QueueEntry::new("kafka".into(), queue.downgrade())],
        pools: Vec::new(),
        budget: MemoryBudget::new(1 << 20),
        health,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queue_depth_and_a_failed_component_are_rendered() {
        let (tx, _rx) = mpsc::channel(1);
        let stats = Arc::new(ComponentStats::default());
        let t = one_sink(&tx, stats.clone(), HealthConfig::default());
        let batch = crate::topology::batch::Batch::new(Vec::new(), &t.budget).await;
        tx.try_send(Arc::new(batch)).unwrap();
        stats.mark_failed();
        let text = t.render();
        assert!(
            text.contains("rigtap_queue_batches{component=\"kafka\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("rigtap_component_failed{component=\"kafka\",kind=\"sink\"} 1\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = Metrics(String::new());
        out.sample("m", &[("component", "a\"b\\c\nd")], 1.0);
        assert_eq!(out.0, "m{component=\"a\\\"b\\\\c\\nd\"} 1\n");
    }
}
