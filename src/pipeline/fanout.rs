//! Sending one producer's batches to every consumer that lists it as an input.
//!
//! Consumers share one `Arc` of each batch. A blocking consumer (the default) makes the
//! producer wait for room, so the slowest consumer sets the pace; a consumer that opted
//! into `drop_newest` loses the batch instead, and that loss is counted. A sink with a
//! disk buffer takes a batch only once it is appended there ([`Handoff`]).
//!
//! The list of consumers is shared with the topology, which changes it on a reload
//! (a consumer added, removed or replaced); each batch goes to the consumers listed
//! when it is sent.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::batch::{Batch, SharedBatch};
use super::queue::{Handoff, WhenFull};
use super::stats::{ComponentStats, DropReason};
use super::tap::Tap;

/// One consumer's queue, as seen by a producer.
#[derive(Clone)]
pub struct Output {
    pub consumer: Arc<str>,
    pub tx: mpsc::Sender<SharedBatch>,
    pub when_full: WhenFull,
    /// The consumer's counters, where its drops are recorded.
    pub consumer_stats: Arc<ComponentStats>,
    /// For a sink with a disk buffer: a send waits until the batch is appended there.
    pub handoff: Option<Arc<Handoff>>,
}

/// A producer's consumers, shared between its fan-out and the topology.
pub type Outputs = Arc<Mutex<Vec<Output>>>;

pub struct Fanout {
    outputs: Outputs,
    stats: Arc<ComponentStats>,
    /// Watchers of this component's output (`rigtap tap`), offered each batch: never
    /// waited for, and what each holds is capped by bytes (not charged to the memory
    /// budget), so a watcher can neither hold the pipeline back nor grow it.
    tap: Option<Arc<Tap>>,
}

impl Fanout {
    pub fn new(outputs: Vec<Output>, stats: Arc<ComponentStats>) -> Self {
        Self::shared(Arc::new(Mutex::new(outputs)), stats)
    }

    /// A fan-out whose consumers the topology may change while it runs.
    pub(crate) fn shared(outputs: Outputs, stats: Arc<ComponentStats>) -> Self {
        Fanout {
            outputs,
            stats,
            tap: None,
        }
    }

    /// Offers every batch to `tap`; never waits for its watchers.
    pub(crate) fn with_tap(mut self, tap: Arc<Tap>) -> Self {
        self.tap = Some(tap);
        self
    }

    /// Delivers `batch` to every consumer, waiting for room where they block.
    pub async fn send(&mut self, batch: Batch) {
        let n = batch.len();
        if n == 0 {
            return;
        }
        if let Some(tap) = &self.tap {
            tap.offer(batch.samples());
        }
        let shared: SharedBatch = Arc::new(batch);
        // The consumers now; a reload meanwhile changes the list for the next batch.
        let outputs = self
            .outputs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for output in &outputs {
            // Counted as queued once it is in: a batch still waiting for room belongs
            // to its producer (which has not counted it as sent either).
            let sent = match output.when_full {
                WhenFull::Block => match &output.handoff {
                    Some(handoff) => handoff.send(&output.tx, shared.clone()).await,
                    None => output.tx.send(shared.clone()).await.is_ok(),
                },
                WhenFull::DropNewest => match output.tx.try_send(shared.clone()) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        output.consumer_stats.dropped(DropReason::QueueFull, n);
                        continue;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                },
            };
            match sent {
                true => output.consumer_stats.enqueued(n),
                false => consumer_stopped(output, n),
            }
        }
        self.stats.sent(n);
    }
}

/// A consumer that failed cannot take batches; they are counted against it, not lost quietly.
fn consumer_stopped(output: &Output, n: usize) {
    output
        .consumer_stats
        .dropped(DropReason::ConsumerStopped, n);
    tracing::debug!(consumer = %output.consumer, samples = n, "consumer has stopped; batch dropped");
}
