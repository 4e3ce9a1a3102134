//! `/health`'s verdict: degraded when a component failed, when too few of a source's
//! miners are online, when a queue has stayed full, or when a sink has delivered
//! nothing for a while although it had work (samples waiting for its destination, or
//! its destination refusing them). The last two need a look once a second, which
//! [`HealthWatch::watch`] takes.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::api_config::HealthConfig;
use crate::pipeline::stats::{ComponentStats, DropReason, Role};
use crate::topology::running::Views;

#[derive(Debug, serde::Serialize)]
pub struct Health {
    pub status: &'static str,
    pub reasons: Vec<String>,
}

impl Health {
    pub(crate) fn is_healthy(&self) -> bool {
        self.reasons.is_empty()
    }
}

/// Since when a condition has held, as last observed.
#[derive(Debug, Default)]
struct Since(Mutex<Option<Instant>>);

impl Since {
    fn note(&self, holds: bool, now: Instant) {
        let mut since = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *since = holds.then(|| since.unwrap_or(now));
    }

    /// How long the condition has held, once it has held at least `bound`.
    fn lasted(&self, bound: Duration, now: Instant) -> Option<Duration> {
        let since = *self.0.lock().unwrap_or_else(|e| e.into_inner());
        since
            .map(|s| now.saturating_duration_since(s))
            .filter(|d| *d >= bound)
    }
}

/// Drops that mean the destination did not take what a sink gave it.
const REFUSALS: [DropReason; 3] = [
    DropReason::DeliveryFailed,
    DropReason::WriteFailed,
    DropReason::OutputClosed,
];

fn refused(stats: &ComponentStats) -> u64 {
    REFUSALS.iter().map(|r| stats.dropped_for(*r)).sum()
}

/// A sink's counters at the last look, to tell a stalled sink from an idle one.
#[derive(Debug, Default)]
struct SinkProgress(Mutex<SinkSeen>);

#[derive(Debug, Default)]
struct SinkSeen {
    delivered: u64,
    refused: u64,
    stall: Option<Stall>,
}

#[derive(Debug)]
struct Stall {
    since: Instant,
    /// Refusals counted before the stall began.
    refused_before: u64,
}

impl SinkProgress {
    /// Stalled: nothing delivered since the last look, while samples wait for the
    /// destination or it refused some. A sink with nothing to do is not stalled.
    fn observe(&self, stats: &ComponentStats, now: Instant) {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (delivered, refused) = (stats.samples_out(), refused(stats));
        let had_work = stats.in_flight.load(Relaxed) > 0 || refused > seen.refused;
        seen.stall = match (delivered == seen.delivered && had_work, seen.stall.take()) {
            (false, _) => None,
            (true, Some(stall)) => Some(stall),
            (true, None) => Some(Stall {
                since: now,
                refused_before: seen.refused,
            }),
        };
        seen.delivered = delivered;
        seen.refused = refused;
    }

    fn reason(
        &self,
        id: &str,
        stats: &ComponentStats,
        bound: Duration,
        now: Instant,
    ) -> Option<String> {
        let seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let stall = seen.stall.as_ref()?;
        let lasted = now.saturating_duration_since(stall.since);
        (lasted >= bound).then(|| {
            format!(
                "sink `{id}` has delivered nothing for {}s: {} sample(s) wait for its destination, {} refused meanwhile (is it down, or refusing them? see the log)",
                lasted.as_secs(),
                stats.in_flight.load(Relaxed).max(0),
                seen.refused - stall.refused_before,
            )
        })
    }
}

/// The pipeline as `/health` judges it, with what it saw at its last looks (kept by
/// component id, so a reload that keeps a component keeps what was seen of it).
pub struct HealthWatch {
    views: Views,
    bounds: HealthConfig,
    /// Per queue, by consumer id: since when it has been full.
    full: Mutex<HashMap<String, Arc<Since>>>,
    /// Per sink, by id: whether it delivers.
    sinks: Mutex<HashMap<String, Arc<SinkProgress>>>,
}

impl HealthWatch {
    pub fn new(views: Views, bounds: HealthConfig) -> Self {
        HealthWatch {
            views,
            bounds,
            full: Mutex::default(),
            sinks: Mutex::default(),
        }
    }

    /// Looks once a second at queues and sinks; runs until dropped.
    pub(crate) async fn watch(&self) {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        loop {
            ticker.tick().await;
            self.observe(Instant::now());
        }
    }

    /// What was seen of `id`, made on first sight; forgets components that left.
    fn seen<T: Default>(map: &Mutex<HashMap<String, Arc<T>>>, id: &str) -> Arc<T> {
        let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(id.to_string()).or_default().clone()
    }

    /// Notes which queues are full and which sinks are stalled now.
    fn observe(&self, now: Instant) {
        let view = self.views.borrow().clone();
        for queue in &view.queues {
            let full = queue.depth().is_some_and(|(depth, cap)| depth >= cap);
            Self::seen(&self.full, &queue.consumer).note(full, now);
        }
        for sink in view.components.iter().filter(|c| c.role == Role::Sink) {
            Self::seen(&self.sinks, &sink.id).observe(&sink.stats, now);
        }
        let current = |id: &String| view.components.iter().any(|c| &c.id == id);
        self.full
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id, _| current(id));
        self.sinks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id, _| current(id));
    }

    pub fn health(&self) -> Health {
        self.health_at(Instant::now())
    }

    fn health_at(&self, now: Instant) -> Health {
        let view = self.views.borrow().clone();
        let mut reasons = Vec::new();
        for component in &view.components {
            if component.stats.failed() {
                reasons.push(format!(
                    "{} `{}` failed; see the log",
                    component.role.as_str(),
                    component.id
                ));
            }
        }
        let min_online = self.bounds.min_online;
        for component in &view.components {
            let Some(fleet) = component.published.as_ref().and_then(|p| p.fleet()) else {
                continue;
            };
            if fleet.miners > 0 && (fleet.online as f64) < min_online * fleet.miners as f64 {
                reasons.push(format!(
                    "source `{}`: {} of {} miners online, below health.min_online ({:.0}%)",
                    component.id,
                    fleet.online,
                    fleet.miners,
                    min_online * 100.0
                ));
            }
            let bound = self.bounds.short_of_call_budget_for.0;
            if let Some((governor, lasted)) = fleet.short_of_budget.filter(|(_, l)| *l > bound) {
                let (late, remedy) = match governor {
                    "connects" => ("connect late", "raise it, or look for what makes the miners reconnect (the log says why they went offline)"),
                    _ => ("are polled late", "raise it, lengthen `interval`, or poll fewer calls"),
                };
                reasons.push(format!(
                    "source `{}` has used all of `rate.{governor}` for {}s: its miners {late}; {remedy}",
                    component.id,
                    lasted.as_secs()
                ));
            }
        }
        for queue in &view.queues {
            let full = Self::seen(&self.full, &queue.consumer);
            if let Some(full) = full.lasted(self.bounds.queue_full_for.0, now) {
                reasons.push(format!(
                    "the queue of `{}` has been full for {}s (it is not keeping up, or its destination is down); the sources are held back",
                    queue.consumer,
                    full.as_secs()
                ));
            }
        }
        for sink in view.components.iter().filter(|c| c.role == Role::Sink) {
            let progress = Self::seen(&self.sinks, &sink.id);
            let bound = self.bounds.sink_failing_for.0;
            reasons.extend(progress.reason(&sink.id, &sink.stats, bound, now));
            let disk = &sink.stats.disk;
            if let (true, Some(full)) = (disk.over_warning(), disk.fullness()) {
                reasons.push(format!(
                    "the disk buffer of sink `{}` is {:.0}% full ({} samples, the oldest {}s old): its destination is down or not keeping up; when full, the sink {}",
                    sink.id,
                    full * 100.0,
                    disk.samples.load(std::sync::atomic::Ordering::Relaxed),
                    disk.oldest_age_ms.load(std::sync::atomic::Ordering::Relaxed) / 1000,
                    "holds the sources back (`when_full: block`) or drops new samples (`drop_newest`)"
                ));
            }
        }
        Health {
            status: if reasons.is_empty() { "ok" } else { "degraded" },
            reasons,
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;
    use crate::pipeline::batch::{Batch, MemoryBudget, SharedBatch};
    use crate::toolkit::units::HumanDuration;
    use crate::topology::running::{ComponentEntry, PipelineView, QueueEntry};

    /// A pipeline of one sink, `kafka`, behind `queue`.
    fn one_sink(
        queue: &mpsc::Sender<SharedBatch>,
        stats: Arc<ComponentStats>,
        bounds: HealthConfig,
    ) -> HealthWatch {
        let view = PipelineView {
            components: vec![ComponentEntry {
                id: "kafka".into(),
                role: Role::Sink,
                stats,
                published: None,
            }],
            queues: vec![QueueEntry::new("kafka".into(), queue.downgrade())],
            budget: MemoryBudget::new(1 << 20),
        };
        // The view stays readable after its sender is gone.
        let (_, views) = tokio::sync::watch::channel(Arc::new(view));
        HealthWatch::new(views, bounds)
    }

    fn bounds(queue_full_for: u64, sink_failing_for: u64) -> HealthConfig {
        HealthConfig {
            min_online: 0.5,
            queue_full_for: HumanDuration(Duration::from_secs(queue_full_for)),
            sink_failing_for: HumanDuration(Duration::from_secs(sink_failing_for)),
            short_of_call_budget_for: HumanDuration(Duration::from_secs(120)),
        }
    }

    /// A source whose fleet is all online and whose `rate.rpcs` has been used up for
    /// `short`.
    struct ShortFleet(Option<Duration>);

    impl crate::pipeline::component::Published for ShortFleet {
        fn publish(&self, _: &str, _: &mut crate::pipeline::metrics::Exposition) {}

        fn fleet(&self) -> Option<crate::pipeline::component::FleetSummary> {
            Some(crate::pipeline::component::FleetSummary {
                miners: 10,
                online: 10,
                short_of_budget: self.0.map(|lasted| ("rpcs", lasted)),
                ..Default::default()
            })
        }
    }

    #[test]
    fn a_source_short_of_its_call_budget_past_the_bound_is_a_reason() {
        let health = |short: Option<Duration>| {
            let view = PipelineView {
                components: vec![ComponentEntry {
                    id: "fleet".into(),
                    role: Role::Source,
                    stats: Arc::default(),
                    published: Some(Arc::new(ShortFleet(short))),
                }],
                queues: Vec::new(),
                budget: MemoryBudget::new(1 << 20),
            };
            let (_, views) = tokio::sync::watch::channel(Arc::new(view));
            HealthWatch::new(views, bounds(60, 60)).health()
        };
        assert!(health(None).is_healthy());
        assert!(health(Some(secs(100))).is_healthy(), "within 120 s");
        assert_eq!(
            health(Some(secs(130))).reasons,
            ["source `fleet` has used all of `rate.rpcs` for 130s: its miners are polled late; raise it, lengthen `interval`, or poll fewer calls"]
        );
    }

    #[tokio::test]
    async fn a_queue_full_past_its_bound_and_a_failed_component_are_reasons() {
        let (tx, _rx) = mpsc::channel(1);
        let stats = Arc::new(ComponentStats::default());
        let t = one_sink(&tx, stats.clone(), bounds(10, 60));
        let start = Instant::now();
        t.observe(start);
        assert!(t.health_at(start).is_healthy());

        let batch = Batch::new(Vec::new(), &t.views.borrow().budget.clone()).await;
        tx.try_send(Arc::new(batch)).unwrap();
        t.observe(start + secs(1));
        assert!(
            t.health_at(start + secs(10)).is_healthy(),
            "9 s is within the bound"
        );
        let health = t.health_at(start + secs(12));
        assert_eq!(health.status, "degraded");
        assert_eq!(
            health.reasons,
            ["the queue of `kafka` has been full for 11s (it is not keeping up, or its destination is down); the sources are held back"]
        );

        stats.mark_failed();
        assert!(t
            .health_at(start)
            .reasons
            .contains(&"sink `kafka` failed; see the log".to_string()));
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_sink_with_samples_waiting_and_no_delivery_is_failing_after_the_bound() {
        let (tx, _rx) = mpsc::channel(1);
        let stats = Arc::new(ComponentStats::default());
        let t = one_sink(&tx, stats.clone(), bounds(60, 30));
        let start = Instant::now();
        stats.sent(100);
        t.observe(start);
        stats.sent(100);
        stats.in_flight.store(5000, Relaxed);
        t.observe(start + secs(1)); // delivering: not stalled
        for at in 2..=40 {
            t.observe(start + secs(at)); // nothing delivered from 2 s on
        }
        assert!(t.health_at(start + secs(31)).is_healthy(), "29 s");
        assert_eq!(
            t.health_at(start + secs(40)).reasons,
            ["sink `kafka` has delivered nothing for 38s: 5000 sample(s) wait for its destination, 0 refused meanwhile (is it down, or refusing them? see the log)"]
        );
        // One acknowledgement ends the stall.
        stats.sent(1);
        t.observe(start + secs(41));
        assert!(t.health_at(start + secs(41)).is_healthy());
    }

    #[test]
    fn a_sink_whose_destination_refuses_everything_is_failing_an_idle_one_is_not() {
        let (tx, _rx) = mpsc::channel(1);
        let stats = Arc::new(ComponentStats::default());
        let t = one_sink(&tx, stats.clone(), bounds(60, 30));
        let start = Instant::now();
        stats.sent(10);
        stats.dropped(DropReason::QueueFull, 7); // not the destination's doing
        for at in 0..40 {
            t.observe(start + secs(at)); // idle: nothing waits, nothing is refused
        }
        assert!(t.health_at(start + secs(40)).is_healthy());
        for at in 40..80 {
            stats.dropped(DropReason::DeliveryFailed, 3);
            t.observe(start + secs(at));
        }
        assert_eq!(
            t.health_at(start + secs(80)).reasons,
            ["sink `kafka` has delivered nothing for 40s: 0 sample(s) wait for its destination, 120 refused meanwhile (is it down, or refusing them? see the log)"]
        );
    }
}
