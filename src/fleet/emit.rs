//! From thousands of miner tasks to one stream of batches, with bounded room.
//!
//! Miner tasks hand their samples to one bounded queue; [`forward`] gathers them into
//! batches for the pipeline. When the pipeline is full, the queue fills: a poll that
//! finds no room is skipped and counted (the miner is asked nothing), the answers of a
//! poll already under way and status changes are held by their miner task until there
//! is room (they are facts, not to be lost), and the status stream is still read, its
//! latest status applied once there is room (an unread stream would keep its HTTP/2
//! window, 64 KiB a miner, in buffers). What waits is at most one poll's answers and
//! one status change per miner; nothing grows with an outage.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::stats::PoolStats;
use crate::pipeline::batch::{Batch, MemoryBudget};
use crate::pipeline::fanout::Fanout;
use crate::toolkit::sample::Sample;

/// Room for this many polls' samples between the miners and the batcher: a few
/// hundred kilobytes, enough to ride over one slow batch downstream.
const QUEUE_POLLS: usize = 512;

/// A batch smaller than `batch_size` still leaves after this long, so a small fleet's
/// samples are not held back.
const FLUSH_AFTER: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub(crate) struct Emitter {
    tx: mpsc::Sender<Vec<Sample>>,
    stats: Arc<PoolStats>,
}

impl Emitter {
    pub(crate) fn new(stats: Arc<PoolStats>) -> (Self, mpsc::Receiver<Vec<Sample>>) {
        let (tx, rx) = mpsc::channel(QUEUE_POLLS);
        (Emitter { tx, stats }, rx)
    }

    /// Whether a poll may start: no room now counts a skipped poll. Room is checked,
    /// not reserved, because a poll then waits for the governors: slots held through
    /// that wait would fill the queue while nothing flows (measured: 2,000 miners on
    /// 500 calls/s skipped 2,264 polls with the batcher idle).
    pub(crate) fn room_for_a_poll(&self) -> bool {
        let room = self.tx.capacity() > 0;
        if !room {
            self.skipped_poll();
        }
        room
    }

    /// Counts a poll the miner does not get.
    pub(crate) fn skipped_poll(&self) {
        self.stats.polls_skipped.fetch_add(1, Relaxed);
    }

    /// A place in the queue, once there is one; `None` once the batcher is gone.
    pub(crate) async fn reserve(&self) -> Option<mpsc::Permit<'_, Vec<Sample>>> {
        self.tx.reserve().await.ok()
    }

    /// Queues `samples` if there is room now, leaving them empty; else leaves them.
    pub(crate) fn try_send(&self, samples: &mut Vec<Sample>) {
        if samples.is_empty() {
            return;
        }
        match self.tx.try_send(std::mem::take(samples)) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(back)) => *samples = back,
        }
    }

    /// Waits for room, then queues `samples`.
    pub(crate) async fn send(&self, samples: Vec<Sample>) {
        if samples.is_empty() {
            return;
        }
        // Fails only once the batcher is gone, i.e. the pipeline has stopped.
        let _ = self.tx.send(samples).await;
    }
}

/// Batches what the miners queue and sends it on, until every miner task has gone.
pub(crate) async fn forward(
    mut rx: mpsc::Receiver<Vec<Sample>>,
    out: &mut Fanout,
    budget: &MemoryBudget,
    batch_size: usize,
) {
    let mut pending: Vec<Sample> = Vec::with_capacity(batch_size);
    let mut flush = tokio::time::interval(FLUSH_AFTER);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            received = rx.recv() => match received {
                Some(samples) => {
                    pending.extend(samples);
                    if pending.len() >= batch_size {
                        send(&mut pending, out, budget).await;
                    }
                }
                None => break,
            },
            _ = flush.tick() => send(&mut pending, out, budget).await,
        }
    }
    send(&mut pending, out, budget).await;
}

async fn send(pending: &mut Vec<Sample>, out: &mut Fanout, budget: &MemoryBudget) {
    if pending.is_empty() {
        return;
    }
    let batch = Batch::new(std::mem::take(pending), budget).await;
    out.send(batch).await;
}
