//! The queue in front of a transform or sink: how many batches it holds, what a full
//! queue does to the next one, and the consumer's end of it ([`Input`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use tokio::sync::{mpsc, watch};

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

/// The queue in front of a sink with a disk buffer (and `when_full: block`): a
/// producer's send returns only once the sink has appended the batch to its buffer,
/// so whatever a producer counts as handed on is on disk, and a `kill -9` loses none
/// of it. The queue still holds up to `max_batches`; each producer waits for its own.
///
/// Until the sink first asks for a batch (a sink replaced by a reload starts only once
/// its predecessor has finished), producers do not wait: the queue takes batches as a
/// plain queue would, so a producer that also feeds the predecessor can never wait on
/// a sink that waits on it.
pub struct Handoff {
    /// Batches put in the queue; counted under this lock, with the send, so a
    /// batch's count is its place in the queue.
    queued: tokio::sync::Mutex<u64>,
    /// Batches the sink has appended (or settled otherwise), in queue order;
    /// `u64::MAX` once the sink is gone.
    appended: watch::Sender<u64>,
    /// The sink has asked for a batch.
    taking: AtomicBool,
}

impl Handoff {
    pub(crate) fn new() -> Arc<Handoff> {
        Arc::new(Handoff {
            queued: tokio::sync::Mutex::new(0),
            appended: watch::Sender::new(0),
            taking: AtomicBool::new(false),
        })
    }

    /// Puts `batch` in the queue and waits until the sink has appended it (or has
    /// stopped); `false` if the queue is closed.
    pub(crate) async fn send(&self, tx: &mpsc::Sender<SharedBatch>, batch: SharedBatch) -> bool {
        let mut appended = self.appended.subscribe();
        let place = {
            let mut queued = self.queued.lock().await;
            if tx.send(batch).await.is_err() {
                return false;
            }
            *queued += 1;
            *queued
        };
        if self.taking.load(Ordering::Acquire) {
            tokio::select! {
                _ = appended.wait_for(|a| *a >= place) => {}
                _ = tx.closed() => {}
            }
        }
        true
    }
}

/// A consumer's end of its queue. Taking a batch counts it as received. When the
/// consumer ends (done, failed or panicked), the receiver is left in a slot for the
/// topology, which drains whatever producers still send and counts it, so a failed
/// component's queue never loses samples silently.
pub struct Input {
    rx: Option<mpsc::Receiver<SharedBatch>>,
    stats: Arc<ComponentStats>,
    leftover: Arc<Mutex<Option<mpsc::Receiver<SharedBatch>>>>,
    handoff: Option<Arc<Handoff>>,
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
            handoff: None,
        };
        (input, leftover)
    }

    /// Producers wait on `handoff` until [`Input::handed_off`] says their batch is
    /// appended.
    pub(crate) fn with_handoff(mut self, handoff: Option<Arc<Handoff>>) -> Self {
        self.handoff = handoff;
        self
    }

    /// The oldest batch taken and not yet said so is in the sink's disk buffer (or
    /// settled otherwise): its producer may go on. A sink with a disk buffer calls
    /// this once for every batch it takes, in order.
    pub(crate) fn handed_off(&self) {
        if let Some(handoff) = &self.handoff {
            handoff.appended.send_modify(|a| *a = a.saturating_add(1));
        }
    }

    /// The next batch, counted as received; `None` once every producer has finished
    /// and the queue is empty. Cancel-safe, like the channel's own `recv`.
    pub async fn recv(&mut self) -> Option<SharedBatch> {
        if let Some(handoff) = &self.handoff {
            handoff.taking.store(true, Ordering::Release);
        }
        let batch = self.rx.as_mut()?.recv().await?;
        self.stats.received(batch.len());
        Some(batch)
    }
}

impl Drop for Input {
    fn drop(&mut self) {
        // The topology drains and counts what is left; no producer waits on it.
        if let Some(handoff) = &self.handoff {
            handoff.appended.send_replace(u64::MAX);
        }
        let mut slot = self.leftover.lock().unwrap_or_else(|e| e.into_inner());
        *slot = self.rx.take();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::pipeline::batch::{Batch, MemoryBudget};
    use crate::toolkit::sample::{Sample, SampleKind};

    async fn batch() -> SharedBatch {
        let sample = Sample::new(SampleKind::Miner, "m-1".into(), Default::default());
        Arc::new(Batch::new(vec![sample], &MemoryBudget::new(1 << 20)).await)
    }

    #[tokio::test]
    async fn a_send_returns_once_the_sink_has_appended_its_batch_or_is_gone() {
        let (tx, rx) = mpsc::channel(4);
        let handoff = Handoff::new();
        let (input, _leftover) = Input::new(rx, Arc::default());
        let mut input = input.with_handoff(Some(handoff.clone()));
        let send = |batch| {
            let (handoff, tx) = (handoff.clone(), tx.clone());
            tokio::spawn(async move { handoff.send(&tx, batch).await })
        };
        // Until the sink first asks for a batch, a send does not wait.
        assert!(send(batch().await).await.unwrap());
        input.recv().await.unwrap();
        input.handed_off();
        let (first, second) = (send(batch().await), send(batch().await));
        input.recv().await.unwrap();
        input.recv().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !first.is_finished() && !second.is_finished(),
            "taken, not yet appended: both producers wait"
        );
        input.handed_off();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // One of the two was first in the queue; only it goes on.
        assert_eq!(
            [first.is_finished(), second.is_finished()]
                .iter()
                .filter(|f| **f)
                .count(),
            1
        );
        input.handed_off();
        assert!(first.await.unwrap() && second.await.unwrap());

        // A batch the sink never appends: its producer goes on when the sink is gone.
        let third = send(batch().await);
        input.recv().await.unwrap();
        drop(input);
        assert!(
            third.await.unwrap(),
            "in the queue, drained by the topology"
        );
    }
}
