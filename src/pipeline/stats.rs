//! Per-component counters: samples in, out, and dropped with a reason.
//!
//! A sample counted in is a sample delivered or a sample counted as dropped; these
//! counters are how the shutdown report and `/metrics` prove it.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};

use chrono::{DateTime, Utc};

use super::metrics::Exposition;
use crate::toolkit::histogram::LatencyHistogram;

/// Which section a component is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Source,
    Transform,
    Sink,
}

impl Role {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Transform => "transform",
            Role::Sink => "sink",
        }
    }
}

/// Why samples were dropped. Every drop has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// A consumer's queue was full and it opted into `when_full: drop_newest`.
    QueueFull,
    /// A consumer had already stopped (it failed), so it could not take the batch.
    ConsumerStopped,
    /// The sink's output went away (for example a closed stdout pipe).
    OutputClosed,
    /// A sink could not write what it held (a disk error) and stopped.
    WriteFailed,
    /// The destination refused a sample for good (a Kafka broker: too large, not
    /// authorised, no such topic).
    DeliveryFailed,
    /// Shutdown's deadline passed before the destination acknowledged the sample.
    ShutdownTimeout,
    /// The component failed (returned an error or panicked) while it held the sample,
    /// or the sample was queued for it.
    ComponentFailed,
    /// A second signal abandoned the pipeline while the sample was in it.
    Abandoned,
    /// A sink's disk buffer was full and it opted into `when_full: drop_newest`.
    BufferFull,
}

impl DropReason {
    pub(crate) const ALL: [DropReason; 9] = [
        DropReason::QueueFull,
        DropReason::ConsumerStopped,
        DropReason::OutputClosed,
        DropReason::WriteFailed,
        DropReason::DeliveryFailed,
        DropReason::ShutdownTimeout,
        DropReason::ComponentFailed,
        DropReason::Abandoned,
        DropReason::BufferFull,
    ];

    /// Drops that happen before a sample reaches the consumer's queue, so were never
    /// received by it.
    fn before_the_queue(self) -> bool {
        matches!(self, DropReason::QueueFull | DropReason::ConsumerStopped)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::ConsumerStopped => "consumer_stopped",
            DropReason::OutputClosed => "output_closed",
            DropReason::WriteFailed => "write_failed",
            DropReason::DeliveryFailed => "delivery_failed",
            DropReason::ShutdownTimeout => "shutdown_timeout",
            DropReason::ComponentFailed => "component_failed",
            DropReason::Abandoned => "abandoned",
            DropReason::BufferFull => "buffer_full",
        }
    }
}

#[derive(Debug, Default)]
pub struct ComponentStats {
    samples_in: AtomicU64,
    samples_out: AtomicU64,
    /// Samples waiting in this component's input queue.
    queued: AtomicI64,
    /// Samples a transform removed because the user asked it to (a filter), neither
    /// passed on nor dropped.
    filtered: AtomicU64,
    /// Bytes a sink wrote or had acknowledged (encoded size).
    bytes_out: AtomicU64,
    dropped: [AtomicU64; DropReason::ALL.len()],
    failed: AtomicBool,
    /// For sinks that wait for acknowledgements (Kafka): samples handed over and not
    /// yet acknowledged, and the wait for each acknowledgement.
    pub in_flight: AtomicI64,
    pub delivery: LatencyHistogram,
    /// For sinks: each delivered sample's age, from its timestamp (when the miner
    /// answered) to its delivery (written, acknowledged).
    pub(crate) age: LatencyHistogram,
    /// For sinks with `buffer: {type: disk}`.
    pub(crate) disk: DiskStats,
}

/// A sink's disk buffer, for `/metrics`, `/health` and the progress line.
#[derive(Debug, Default)]
pub(crate) struct DiskStats {
    pub(crate) enabled: AtomicBool,
    /// Samples in it not yet delivered (those in flight included).
    pub(crate) samples: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) max_bytes: AtomicU64,
    /// `warn_at`, in thousandths.
    pub(crate) warn_at_permille: AtomicU64,
    pub(crate) oldest_age_ms: AtomicU64,
    /// Samples a previous run left in it, taken in at the start.
    pub(crate) recovered: AtomicU64,
    /// Damaged records skipped, and bytes of records cut short, found at the start.
    pub(crate) corrupt: AtomicU64,
    pub(crate) truncated_bytes: AtomicU64,
}

impl DiskStats {
    fn publish(&self, sink: &[(&'static str, &str)], out: &mut Exposition) {
        let gauges = [
            (
                "rigtap_sink_buffer_samples",
                "Samples in the sink's disk buffer not yet delivered.",
                self.samples.load(Relaxed) as f64,
            ),
            (
                "rigtap_sink_buffer_bytes",
                "Bytes the sink's disk buffer takes on disk.",
                self.bytes.load(Relaxed) as f64,
            ),
            (
                "rigtap_sink_buffer_max_bytes",
                "The most the sink's disk buffer may take (`buffer.max_size`).",
                self.max_bytes.load(Relaxed) as f64,
            ),
            (
                "rigtap_sink_buffer_oldest_age_seconds",
                "Age of the oldest samples waiting in the sink's disk buffer.",
                self.oldest_age_ms.load(Relaxed) as f64 / 1e3,
            ),
        ];
        for (name, help, value) in gauges {
            out.gauge(name, help, sink, value);
        }
        let counters = [
            ("rigtap_sink_buffer_recovered_samples", "Samples a previous run left in the disk buffer, delivered by this one.", &self.recovered),
            ("rigtap_sink_buffer_corrupt_records", "Damaged records found in the disk buffer at the start and skipped.", &self.corrupt),
            ("rigtap_sink_buffer_truncated_bytes", "Bytes of records cut short (a crash mid-write) cut off the disk buffer at the start.", &self.truncated_bytes),
        ];
        for (name, help, value) in counters {
            out.counter(name, help, sink, value.load(Relaxed));
        }
    }

    /// How full it is (0 to 1), when the sink has one.
    pub(crate) fn fullness(&self) -> Option<f64> {
        let max = self.max_bytes.load(Relaxed);
        (self.enabled.load(Relaxed) && max > 0)
            .then(|| self.bytes.load(Relaxed) as f64 / max as f64)
    }

    /// Whether it is fuller than its `warn_at`.
    pub(crate) fn over_warning(&self) -> bool {
        self.fullness()
            .is_some_and(|f| f * 1000.0 > self.warn_at_permille.load(Relaxed) as f64)
    }
}

impl ComponentStats {
    /// A producer put `n` samples in this component's queue. (The consumer may take
    /// them before this is counted: the count is briefly low, never lost.)
    pub(crate) fn enqueued(&self, n: usize) {
        self.queued.fetch_add(n as i64, Relaxed);
    }

    /// The component took `n` samples from its queue.
    pub fn received(&self, n: usize) {
        self.samples_in.fetch_add(n as u64, Relaxed);
        self.queued.fetch_sub(n as i64, Relaxed);
    }

    /// A disk buffer gave back `n` samples a previous run left in it: taken in.
    pub(crate) fn recovered(&self, n: u64) {
        self.samples_in.fetch_add(n, Relaxed);
        self.disk.recovered.fetch_add(n, Relaxed);
    }

    pub(crate) fn filtered(&self, n: usize) {
        self.filtered.fetch_add(n as u64, Relaxed);
    }

    /// Samples waiting in the input queue now.
    pub(crate) fn queued_samples(&self) -> u64 {
        self.queued.load(Relaxed).max(0) as u64
    }

    /// Samples the component took in and has neither passed on, dropped, filtered, nor
    /// kept in a disk buffer: what it holds in memory now (buffers, batches in flight).
    pub(crate) fn held(&self) -> u64 {
        let after_queue: u64 = DropReason::ALL
            .iter()
            .filter(|r| !r.before_the_queue())
            .map(|r| self.dropped_for(*r))
            .sum();
        let accounted = self.samples_out()
            + after_queue
            + self.filtered.load(Relaxed)
            + self.disk.samples.load(Relaxed);
        self.samples_in().saturating_sub(accounted)
    }

    /// Counts what the component holds as dropped for `reason` (it failed, or the
    /// pipeline was abandoned), so its ledger balances; returns how many.
    pub(crate) fn settle(&self, reason: DropReason) -> u64 {
        let held = self.held();
        self.dropped(reason, held as usize);
        held
    }

    pub fn sent(&self, n: usize) {
        self.samples_out.fetch_add(n as u64, Relaxed);
    }

    /// A sink delivered samples stamped `timestamps`: counts them, and their ages.
    pub(crate) fn delivered(&self, timestamps: impl Iterator<Item = DateTime<Utc>>) {
        let n = self.aged(timestamps);
        self.sent(n);
    }

    /// Records the ages of samples stamped `timestamps` (a sink that counts them as
    /// delivered later, as Parquet does when their file is finished); returns how many.
    pub(crate) fn aged(&self, timestamps: impl Iterator<Item = DateTime<Utc>>) -> usize {
        let now = Utc::now();
        let mut n = 0;
        for timestamp in timestamps {
            self.age
                .record((now - timestamp).to_std().unwrap_or_default());
            n += 1;
        }
        n
    }

    pub(crate) fn sent_bytes(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Relaxed);
    }

    /// The component returned an error; the pipeline is stopping.
    pub(crate) fn mark_failed(&self) {
        self.failed.store(true, Relaxed);
    }

    pub fn failed(&self) -> bool {
        self.failed.load(Relaxed)
    }

    pub(crate) fn bytes_out(&self) -> u64 {
        self.bytes_out.load(Relaxed)
    }

    pub fn dropped(&self, reason: DropReason, n: usize) {
        self.dropped[reason as usize].fetch_add(n as u64, Relaxed);
    }

    pub fn samples_in(&self) -> u64 {
        self.samples_in.load(Relaxed)
    }

    pub fn samples_out(&self) -> u64 {
        self.samples_out.load(Relaxed)
    }

    pub fn dropped_for(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize].load(Relaxed)
    }

    pub(crate) fn dropped_total(&self) -> u64 {
        DropReason::ALL.iter().map(|r| self.dropped_for(*r)).sum()
    }

    /// The drops by reason, for a log line: `write_failed=100 component_failed=7`
    /// (reasons with none left out; empty when nothing was dropped).
    pub(crate) fn drops_by_reason(&self) -> String {
        let drops: Vec<String> = DropReason::ALL
            .iter()
            .map(|r| (r, self.dropped_for(*r)))
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| format!("{}={n}", r.as_str()))
            .collect();
        drops.join(" ")
    }

    /// The series every component has, under its `id` and `role`.
    pub(crate) fn publish(&self, id: &str, role: Role, out: &mut Exposition) {
        let labels = [("component", id), ("kind", role.as_str())];
        out.counter(
            "rigtap_component_received_samples",
            "Samples a component took from its input queue.",
            &labels,
            self.samples_in(),
        );
        out.counter(
            "rigtap_component_sent_samples",
            "Samples a component passed on; for a sink, delivered (written, acknowledged).",
            &labels,
            self.samples_out(),
        );
        out.counter(
            "rigtap_component_sent_bytes",
            "Encoded bytes a sink delivered.",
            &labels,
            self.bytes_out(),
        );
        out.counter(
            "rigtap_component_filtered_samples",
            "Samples a transform removed because its condition asked for it (not drops).",
            &labels,
            self.filtered.load(Relaxed),
        );
        for reason in DropReason::ALL {
            out.counter(
                "rigtap_component_dropped_samples",
                "Samples a component dropped, by reason; every drop has one.",
                &[labels[0], labels[1], ("reason", reason.as_str())],
                self.dropped_for(reason),
            );
        }
        out.gauge(
            "rigtap_component_failed",
            "1 when the component returned an error.",
            &labels,
            f64::from(u8::from(self.failed())),
        );
        if role == Role::Sink {
            let sink = [labels[0]];
            out.gauge(
                "rigtap_sink_in_flight_samples",
                "Samples handed to the destination and not yet acknowledged.",
                &sink,
                self.in_flight.load(Relaxed) as f64,
            );
            out.histogram(
                "rigtap_sink_sample_age_seconds",
                "From a sample's timestamp (the miner's answer) to its delivery by the sink (for Parquet, written into its file).",
                &sink,
                &self.age,
            );
            out.histogram(
                "rigtap_sink_delivery_duration_seconds",
                "From handing a sample to the destination to its acknowledgement.",
                &sink,
                &self.delivery,
            );
            if self.disk.enabled.load(Relaxed) {
                self.disk.publish(&sink, out);
            }
        }
    }
}
