//! The queue in front of a transform or sink: how many batches it holds, what a full
//! queue does to the next one, and the consumer's end of it ([`Input`]).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use tokio::sync::mpsc;

use super::batch::SharedBatch;
use super::stats::ComponentStats;
use crate::toolkit::units::{ByteSize, HumanDuration};

/// What the user writes under a component's `buffer:`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    /// Batches the queue holds; a full queue holds back its inputs (or drops, if asked).
    #[serde(default = "default_max_batches")]
    pub max_batches: usize,
    #[serde(default)]
    pub when_full: WhenFull,
    /// `memory` (the queue alone) or `disk`: a sink's samples go through a file buffer
    /// too, removed only once delivered, and kept across restarts.
    #[serde(default, rename = "type")]
    pub kind: BufferKind,
    /// `type: disk`: the buffer's directory (one per sink).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// `type: disk`: the most its files take; a full buffer does as `when_full` says.
    #[serde(default = "default_max_size")]
    pub max_size: ByteSize,
    /// `type: disk`: how often what was appended is synced to the disk (a killed
    /// process loses nothing appended; a power loss at most this much).
    #[serde(default = "default_sync_every")]
    pub sync_every: HumanDuration,
    /// `type: disk`: `/health` says so when the buffer is fuller than this share.
    #[serde(default = "default_warn_at")]
    pub warn_at: f64,
}

/// Where a sink's samples wait for it.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BufferKind {
    #[default]
    Memory,
    Disk,
}

fn default_max_size() -> ByteSize {
    ByteSize(10 << 30)
}

fn default_sync_every() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(1))
}

fn default_warn_at() -> f64 {
    0.8
}

/// A sink's disk buffer, as the topology hands it over.
#[derive(Clone, Debug, PartialEq)]
pub struct DiskBuffer {
    pub path: PathBuf,
    pub max_size: ByteSize,
    pub sync_every: HumanDuration,
    pub warn_at: f64,
    /// Block (backpressure) or drop new samples (counted) when full.
    pub when_full: WhenFull,
}

impl BufferConfig {
    /// The disk buffer it asks for, if any.
    pub fn disk(&self) -> Option<DiskBuffer> {
        match (self.kind, &self.path) {
            (BufferKind::Disk, Some(path)) => Some(DiskBuffer {
                path: path.clone(),
                max_size: self.max_size,
                sync_every: self.sync_every,
                warn_at: self.warn_at,
                when_full: self.when_full,
            }),
            _ => None,
        }
    }
}

/// 16 batches of a few hundred samples keep a sink busy through a slow flush while
/// staying small next to the memory budget.
fn default_max_batches() -> usize {
    16
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            max_batches: default_max_batches(),
            when_full: WhenFull::default(),
            kind: BufferKind::default(),
            path: None,
            max_size: default_max_size(),
            sync_every: default_sync_every(),
            warn_at: default_warn_at(),
        }
    }
}

/// What a full queue does to a new batch.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait for room: backpressure reaches the sources (the default, loses nothing).
    #[default]
    Block,
    /// Drop the new batch and count it (`reason: queue_full`).
    DropNewest,
}

/// A consumer's end of its queue. Taking a batch counts it as received. When the
/// consumer ends (done, failed or panicked), the receiver is left in a slot for the
/// topology, which drains whatever producers still send and counts it, so a failed
/// component's queue never loses samples silently.
pub struct Input {
    rx: Option<mpsc::Receiver<SharedBatch>>,
    stats: Arc<ComponentStats>,
    leftover: Arc<Mutex<Option<mpsc::Receiver<SharedBatch>>>>,
}

/// Where a consumer's receiver goes when its [`Input`] is dropped.
pub(crate) type Leftover = Arc<Mutex<Option<mpsc::Receiver<SharedBatch>>>>;

impl Input {
    pub fn new(rx: mpsc::Receiver<SharedBatch>, stats: Arc<ComponentStats>) -> (Self, Leftover) {
        let leftover = Leftover::default();
        let input = Input {
            rx: Some(rx),
            stats,
            leftover: leftover.clone(),
        };
        (input, leftover)
    }

    /// The next batch, counted as received; `None` once every producer has finished
    /// and the queue is empty. Cancel-safe, like the channel's own `recv`.
    pub async fn recv(&mut self) -> Option<SharedBatch> {
        let batch = self.rx.as_mut()?.recv().await?;
        self.stats.received(batch.len());
        Some(batch)
    }
}

impl Drop for Input {
    fn drop(&mut self) {
        let mut slot = self.leftover.lock().unwrap_or_else(|e| e.into_inner());
        *slot = self.rx.take();
    }
}
