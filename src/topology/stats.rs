//! Per-component counters: samples in, out, and dropped with a reason.
//!
//! A sample counted in is a sample delivered or a sample counted as dropped; these
//! counters are how the shutdown report (and later `/metrics`) proves it.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};

use crate::telemetry::histogram::LatencyHistogram;

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
}

impl DropReason {
    pub const ALL: [DropReason; 6] = [
        DropReason::QueueFull,
        DropReason::ConsumerStopped,
        DropReason::OutputClosed,
        DropReason::WriteFailed,
        DropReason::DeliveryFailed,
        DropReason::ShutdownTimeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::ConsumerStopped => "consumer_stopped",
            DropReason::OutputClosed => "output_closed",
            DropReason::WriteFailed => "write_failed",
            DropReason::DeliveryFailed => "delivery_failed",
            DropReason::ShutdownTimeout => "shutdown_timeout",
        }
    }
}

#[derive(Debug, Default)]
pub struct ComponentStats {
    samples_in: AtomicU64,
    samples_out: AtomicU64,
    /// Bytes a sink wrote or had acknowledged (encoded size).
    bytes_out: AtomicU64,
    dropped: [AtomicU64; DropReason::ALL.len()],
    failed: AtomicBool,
    /// For sinks that wait for acknowledgements (Kafka): samples handed over and not
    /// yet acknowledged, the wait for each acknowledgement, and the destination's own
    /// retries and request errors (as its client counts them).
    pub in_flight: AtomicI64,
    pub delivery: LatencyHistogram,
    pub retries: AtomicU64,
    pub errors: AtomicU64,
}

impl ComponentStats {
    pub fn received(&self, n: usize) {
        self.samples_in.fetch_add(n as u64, Relaxed);
    }

    pub fn sent(&self, n: usize) {
        self.samples_out.fetch_add(n as u64, Relaxed);
    }

    pub fn sent_bytes(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Relaxed);
    }

    /// The component returned an error; the pipeline is stopping.
    pub fn mark_failed(&self) {
        self.failed.store(true, Relaxed);
    }

    pub fn failed(&self) -> bool {
        self.failed.load(Relaxed)
    }

    pub fn bytes_out(&self) -> u64 {
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

    pub fn dropped_total(&self) -> u64 {
        DropReason::ALL.iter().map(|r| self.dropped_for(*r)).sum()
    }
}
