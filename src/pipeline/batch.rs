//! Batches of samples, and the process-wide memory budget they are charged against.
//!
//! Counting queued batches alone is not enough: when samples grow, a queue of N batches
//! grows with them (a known way collectors run out of memory). So every batch holds a
//! charge on one budget of bytes for as long as it lives; a full budget makes the next
//! batch wait, which holds back the source that is creating it.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::toolkit::sample::Sample;

/// The bytes all live batches may hold together.
#[derive(Clone, Debug)]
pub struct MemoryBudget {
    bytes: Arc<Semaphore>,
    /// The budget's size; a reload may change it.
    total: Arc<AtomicUsize>,
}

impl MemoryBudget {
    pub fn new(total: u64) -> Self {
        let total = usize::try_from(total)
            .unwrap_or(usize::MAX)
            .clamp(1, Semaphore::MAX_PERMITS);
        MemoryBudget {
            bytes: Arc::new(Semaphore::new(total)),
            total: Arc::new(AtomicUsize::new(total)),
        }
    }

    /// Bytes currently charged by live batches.
    pub(crate) fn in_use(&self) -> usize {
        self.total().saturating_sub(self.bytes.available_permits())
    }

    pub fn total(&self) -> usize {
        self.total.load(Relaxed)
    }

    /// Grows or shrinks the budget (a reload). Shrinking takes back bytes as batches
    /// release them: until then, more than the new total may be in use, never more
    /// than the old one.
    pub(crate) fn resize(&self, total: u64) {
        let total = usize::try_from(total)
            .unwrap_or(usize::MAX)
            .clamp(1, Semaphore::MAX_PERMITS);
        let old = self.total.swap(total, Relaxed);
        if total > old {
            self.bytes.add_permits(total - old);
            return;
        }
        let mut owed = old - total;
        owed -= self.bytes.forget_permits(owed);
        if owed > 0 {
            let bytes = self.bytes.clone();
            tokio::spawn(async move {
                while owed > 0 {
                    let take = owed.min(u32::MAX as usize) as u32;
                    match bytes.acquire_many(take).await {
                        Ok(permit) => permit.forget(),
                        Err(_) => return,
                    }
                    owed -= take as usize;
                }
            });
        }
    }

    /// Waits until `bytes` fit in the budget. A batch larger than the whole budget is
    /// charged the whole budget, so it waits for everything else but never forever.
    pub(crate) async fn charge(&self, bytes: usize) -> OwnedSemaphorePermit {
        match self
            .bytes
            .clone()
            .acquire_many_owned(self.clamp(bytes))
            .await
        {
            Ok(permit) => permit,
            Err(_) => unreachable!("the budget's semaphore is never closed"),
        }
    }

    /// `bytes` charged at once if they fit now (clamped as by [`MemoryBudget::charge`]).
    pub(crate) fn try_charge(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        self.bytes
            .clone()
            .try_acquire_many_owned(self.clamp(bytes))
            .ok()
    }

    fn clamp(&self, bytes: usize) -> u32 {
        bytes.clamp(1, self.total()).min(u32::MAX as usize) as u32
    }
}

/// Bytes a component holds outside batches (a sink's own buffers and open writers),
/// charged to the same budget. It never waits: a component that cannot grow its
/// reservation gives memory back (writes out, closes) instead, since the batches
/// filling the budget may be the ones queued in front of it.
pub(crate) struct Reservation {
    budget: MemoryBudget,
    held: Option<OwnedSemaphorePermit>,
}

impl Reservation {
    pub(crate) fn new(budget: &MemoryBudget) -> Self {
        Reservation {
            budget: budget.clone(),
            held: None,
        }
    }

    pub(crate) fn bytes(&self) -> usize {
        self.held.as_ref().map_or(0, |p| p.num_permits())
    }

    /// Holds exactly `bytes` if the budget has room for the growth; shrinking always
    /// succeeds. On `false` the reservation is unchanged.
    pub(crate) fn try_resize(&mut self, bytes: usize) -> bool {
        let held = self.bytes();
        if bytes <= held {
            if let Some(permit) = self.held.as_mut() {
                drop(permit.split(held - bytes));
            }
            return true;
        }
        let more = u32::try_from(bytes - held).unwrap_or(u32::MAX);
        let Ok(permit) = self.budget.bytes.clone().try_acquire_many_owned(more) else {
            return false;
        };
        match self.held.as_mut() {
            Some(held) => held.merge(permit),
            None => self.held = Some(permit),
        }
        true
    }

    /// Moves up to `bytes` of what this reservation holds into a new one, without
    /// giving them back to the budget in between (where another component could take
    /// them): memory that changes hands stays charged.
    pub(crate) fn split_off(&mut self, bytes: usize) -> Reservation {
        Reservation {
            budget: self.budget.clone(),
            held: self
                .held
                .as_mut()
                .and_then(|permit| permit.split(bytes.min(permit.num_permits()))),
        }
    }

    /// Takes over what `other` holds.
    pub(crate) fn merge(&mut self, mut other: Reservation) {
        match (self.held.as_mut(), other.held.take()) {
            (Some(held), Some(permit)) => held.merge(permit),
            (None, permit) => self.held = permit,
            (Some(_), None) => {}
        }
    }
}

/// Samples that travel together between stages, with their memory charge.
#[derive(Debug)]
pub struct Batch {
    samples: Vec<Sample>,
    /// Shared with batches derived from this one, so the bytes stay charged until the
    /// last of them is dropped.
    charge: Arc<OwnedSemaphorePermit>,
}

/// A batch as it sits in queues: fan-out to several consumers shares one copy.
pub type SharedBatch = Arc<Batch>;

impl Batch {
    /// Charges `samples` to `budget`, waiting for room.
    pub async fn new(samples: Vec<Sample>, budget: &MemoryBudget) -> Self {
        let bytes = samples.iter().map(Sample::estimated_bytes).sum();
        Batch {
            charge: Arc::new(budget.charge(bytes).await),
            samples,
        }
    }

    /// A batch made by a transform from this one. It shares this batch's charge instead
    /// of waiting for a new one: a transform waiting on a budget that only its own
    /// input queue could free would never wake up.
    pub fn derive(&self, samples: Vec<Sample>) -> Batch {
        Batch {
            samples,
            charge: Arc::clone(&self.charge),
        }
    }

    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toolkit::sample::SampleKind;
    use std::time::Duration;

    fn samples(n: usize) -> Vec<Sample> {
        (0..n)
            .map(|_| Sample::new(SampleKind::Miner, "m".into(), Default::default()))
            .collect()
    }

    #[tokio::test]
    async fn full_budget_waits_until_a_batch_is_dropped() {
        let one = samples(10)
            .iter()
            .map(Sample::estimated_bytes)
            .sum::<usize>();
        let budget = MemoryBudget::new(one as u64 * 2);
        let a = Batch::new(samples(10), &budget).await;
        let _b = Batch::new(samples(10), &budget).await;
        assert_eq!(budget.in_use(), 2 * one);

        let budget2 = budget.clone();
        let third = tokio::spawn(async move { Batch::new(samples(10), &budget2).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !third.is_finished(),
            "a full budget holds the third batch back"
        );
        drop(a);
        let c = tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .expect("dropping a batch frees room")
            .unwrap();
        assert_eq!(c.len(), 10);
    }

    #[tokio::test]
    async fn derived_batch_keeps_the_charge_alive() {
        let budget = MemoryBudget::new(1 << 20);
        let parent = Batch::new(samples(10), &budget).await;
        let charged = budget.in_use();
        let child = parent.derive(samples(3));
        drop(parent);
        assert_eq!(budget.in_use(), charged, "the child still holds the bytes");
        drop(child);
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test]
    async fn a_resized_budget_grows_at_once_and_shrinks_as_batches_go() {
        let budget = MemoryBudget::new(1000);
        let held = Batch::new(samples(1), &budget).await;
        let used = budget.in_use();
        budget.resize(2000);
        assert_eq!(budget.total(), 2000);
        assert_eq!(budget.in_use(), used);
        budget.resize(10);
        assert_eq!(budget.total(), 10);
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), async {
            while budget.bytes.available_permits() != 10 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the budget settles at its new size once the batch is gone");
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test]
    async fn a_reservation_grows_only_into_room_and_gives_back_what_it_sheds() {
        let budget = MemoryBudget::new(2000);
        let mut reservation = Reservation::new(&budget);
        assert!(reservation.try_resize(600));
        assert_eq!((reservation.bytes(), budget.in_use()), (600, 600));
        assert!(!reservation.try_resize(2400), "more than the budget");
        assert_eq!(reservation.bytes(), 600, "a failed growth changes nothing");
        let _batch = Batch::new(samples(1), &budget).await;
        let batch_bytes = budget.in_use() - 600;
        assert!(!reservation.try_resize(2000), "the batch holds the rest");
        assert!(reservation.try_resize(100));
        assert_eq!(budget.in_use(), 100 + batch_bytes);
        drop(reservation);
        assert_eq!(budget.in_use(), batch_bytes);
    }

    #[test]
    fn memory_that_changes_hands_stays_charged() {
        let budget = MemoryBudget::new(1000);
        let mut sink = Reservation::new(&budget);
        assert!(sink.try_resize(900));
        let mut moved = sink.split_off(300);
        assert_eq!(
            (sink.bytes(), moved.bytes(), budget.in_use()),
            (600, 300, 900)
        );
        assert!(!moved.try_resize(500), "the budget has 100 left, not 200");
        let more = sink.split_off(5000);
        assert_eq!(
            (sink.bytes(), more.bytes()),
            (0, 600),
            "no more than it holds"
        );
        moved.merge(more);
        assert_eq!((moved.bytes(), budget.in_use()), (900, 900));
        drop(moved);
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test]
    async fn oversized_batch_is_charged_the_whole_budget() {
        let budget = MemoryBudget::new(100);
        let big = Batch::new(samples(100), &budget).await;
        assert_eq!(budget.in_use(), 100);
        drop(big);
        assert_eq!(budget.in_use(), 0);
    }
}
