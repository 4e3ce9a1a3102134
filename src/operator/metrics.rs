//! `/metrics`: a Prometheus client registry holding the running pipeline (each
//! component publishes its own series, see `pipeline::metrics`) and this process,
//! encoded as OpenMetrics text by the Prometheus project's client library.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;

use std::sync::atomic::Ordering::Relaxed;

use super::process::Process;
use super::reload::ReloadCounts;
use crate::pipeline::metrics::Exposition;
use crate::topology::running::Views;

/// What `/metrics` answers with.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The registry `/metrics` renders, for a running pipeline (followed across reloads).
pub fn registry(views: Views) -> Registry {
    registry_counting(views, Arc::default())
}

/// [`registry`], with the agent's reload counts.
pub(crate) fn registry_counting(views: Views, reloads: Arc<ReloadCounts>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Pipeline(views)));
    registry.register_collector(Box::new(Agent(reloads)));
    registry.register_collector(Box::new(ProcessCollector));
    registry
}

/// The registry as OpenMetrics text.
pub fn render(registry: &Registry) -> String {
    let mut text = String::with_capacity(16 * 1024);
    // Writing to a String cannot fail; a collector's error would only cut the text short.
    if let Err(error) = prometheus_client::encoding::text::encode(&mut text, registry) {
        tracing::warn!(%error, "encoding /metrics failed");
    }
    text
}

struct Pipeline(Views);

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pipeline")
    }
}

impl Collector for Pipeline {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let mut out = Exposition::default();
        self.0.borrow().publish(&mut out);
        out.encode(&mut encoder)
    }
}

/// The agent itself: its build, and its reloads.
#[derive(Debug)]
struct Agent(Arc<ReloadCounts>);

impl Collector for Agent {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let mut out = Exposition::default();
        out.gauge(
            "rigtap_build_info",
            "Always 1; the labels say which rigtap this is.",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1.0,
        );
        let reloads = [("applied", &self.0.applied), ("refused", &self.0.refused)];
        for (outcome, count) in reloads {
            out.counter(
                "rigtap_reloads",
                "Reloads of the config file, by outcome (an invalid file is refused).",
                &[("outcome", outcome)],
                count.load(Relaxed),
            );
        }
        out.encode(&mut encoder)
    }
}

#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let process = Process::read();
        let mut out = Exposition::default();
        out.gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            &[],
            process.rss_bytes as f64,
        );
        out.seconds(
            "process_cpu_seconds",
            "User and system CPU time spent in seconds.",
            &[],
            process.cpu_seconds,
        );
        out.encode(&mut encoder)
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;
    use crate::pipeline::batch::{Batch, MemoryBudget};
    use crate::pipeline::stats::{ComponentStats, Role};
    use crate::topology::running::{ComponentEntry, PipelineView, QueueEntry};

    #[tokio::test]
    async fn queue_depth_and_a_failed_component_are_rendered() {
        let (tx, _rx) = mpsc::channel(1);
        let stats = Arc::new(ComponentStats::default());
        let budget = MemoryBudget::new(1 << 20);
        let view = PipelineView {
            components: vec![ComponentEntry {
                id: "kafka".into(),
                role: Role::Sink,
                stats: stats.clone(),
                published: None,
            }],
            queues: vec![QueueEntry::new("kafka".into(), tx.downgrade())],
            budget: budget.clone(),
        };
        tx.try_send(Arc::new(Batch::new(Vec::new(), &budget).await))
            .unwrap();
        stats.mark_failed();
        let (_, views) = tokio::sync::watch::channel(Arc::new(view));
        let text = render(&registry(views));
        assert!(
            text.contains("rigtap_queue_batches{component=\"kafka\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("rigtap_component_failed{component=\"kafka\",kind=\"sink\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
