//! `/status`: the running pipeline's counters as one JSON document, what `rigtap top`
//! reads (and computes rates from, between two reads).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

use serde::{Deserialize, Serialize};

use crate::pipeline::stats::Role;
use crate::toolkit::histogram::quantile_ms;
use crate::topology::running::PipelineView;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Status {
    pub(crate) components: Vec<ComponentStatus>,
    pub(crate) memory_budget: u64,
    pub(crate) memory_in_use: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ComponentStatus {
    pub(crate) id: String,
    pub(crate) role: String,
    pub(crate) samples_in: u64,
    pub(crate) samples_out: u64,
    pub(crate) dropped: u64,
    pub(crate) failed: bool,
    /// Transforms and sinks: batches queued, and the queue's capacity.
    pub(crate) queue: Option<(usize, usize)>,
    pub(crate) fleet: Option<FleetStatus>,
    pub(crate) sink: Option<SinkStatus>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct FleetStatus {
    pub(crate) miners: u64,
    pub(crate) states: BTreeMap<String, i64>,
    pub(crate) failed_calls: u64,
    pub(crate) call_p99_ms: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SinkStatus {
    pub(crate) in_flight: i64,
    pub(crate) delivery_p50_ms: Option<u64>,
    pub(crate) delivery_p99_ms: Option<u64>,
}

impl Status {
    pub(crate) fn of(view: &PipelineView) -> Status {
        let components = view
            .components
            .iter()
            .map(|c| {
                let queue = view
                    .queues
                    .iter()
                    .find(|q| q.consumer == c.id)
                    .and_then(|q| q.depth());
                let fleet = c
                    .published
                    .as_ref()
                    .and_then(|p| p.fleet())
                    .map(|f| FleetStatus {
                        miners: f.miners,
                        states: f.states.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
                        failed_calls: f.failed_calls,
                        call_p99_ms: f.call_p99_ms,
                    });
                let sink = (c.role == Role::Sink).then(|| {
                    let delivery = c.stats.delivery.counts();
                    SinkStatus {
                        in_flight: c.stats.in_flight.load(Relaxed),
                        delivery_p50_ms: quantile_ms(&delivery, 0.5),
                        delivery_p99_ms: quantile_ms(&delivery, 0.99),
                    }
                });
                ComponentStatus {
                    id: c.id.clone(),
                    role: c.role.as_str().to_string(),
                    samples_in: c.stats.samples_in(),
                    samples_out: c.stats.samples_out(),
                    dropped: c.stats.dropped_total(),
                    failed: c.stats.failed(),
                    queue,
                    fleet,
                    sink,
                }
            })
            .collect();
        Status {
            components,
            memory_budget: view.budget.total() as u64,
            memory_in_use: view.budget.in_use() as u64,
        }
    }
}
