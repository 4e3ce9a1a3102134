//! Large answers, charged to the memory budget while they are read.
//!
//! tonic holds a message whole until it can decode it, so a miner answering with
//! megabytes (a firmware fault, or a hostile one) would have each of its calls hold up
//! to `max_message_size` outside the budget: 10,000 such miners, tens of GiB.
//! [`Framing`] follows the gRPC message prefixes (a compression flag and a length) in
//! an answer's data; a message declared larger than [`FREE`] takes a charge of its
//! size from the budget before its data goes on. The charge is held until the answer
//! ends: tonic keeps the buffer it read the message into for as long as the answer
//! lasts (a status stream's, for the stream's life), so an answer holds a charge for
//! its largest message. With no room the answer waits, within its call's deadline, and
//! HTTP/2 flow control holds the miner back meanwhile (the answer's data is not taken,
//! so its credit is not given back). A message declared above `max_message_size` is
//! not charged: tonic refuses it at its prefix. A healthy miner's answers (a few KiB)
//! never wait.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use crate::fleet::stats::PoolStats;
use crate::pipeline::batch::MemoryBudget;

/// A message up to this size is read without a charge: one HTTP/2 frame's worth, at
/// most six at once per miner (five calls and the status stream), which the cost per
/// miner covers.
pub(crate) const FREE: usize = 16 << 10;

/// gRPC's prefix of each message: a compression flag and a 4-byte length.
const PREFIX: usize = 5;

/// The budget large answers are charged to, the largest message read, and the
/// counters of them.
#[derive(Clone)]
pub(crate) struct AnswerMemory {
    budget: MemoryBudget,
    max_message_size: usize,
    stats: Arc<PoolStats>,
}

/// A wait for room in the budget.
pub(crate) type Charging = Pin<Box<dyn Future<Output = OwnedSemaphorePermit> + Send>>;

impl AnswerMemory {
    pub(crate) fn new(
        budget: MemoryBudget,
        max_message_size: usize,
        stats: Arc<PoolStats>,
    ) -> Self {
        AnswerMemory {
            budget,
            max_message_size,
            stats,
        }
    }

    /// Whether a message declared `bytes` long (its prefix included) is read at all:
    /// tonic refuses one above `max_message_size` without reading it, so it is never
    /// charged (a miner declaring 4 GiB would otherwise queue for the whole budget).
    pub(crate) fn reads(&self, bytes: usize) -> bool {
        bytes.saturating_sub(PREFIX) <= self.max_message_size
    }

    /// A charge of `bytes` at once if the budget has room, or the wait for it.
    pub(crate) fn charge(&self, bytes: usize) -> Result<OwnedSemaphorePermit, Charging> {
        self.stats.answers_charged.fetch_add(1, Relaxed);
        if let Some(permit) = self.budget.try_charge(bytes) {
            return Ok(permit);
        }
        self.stats.answers_waited.fetch_add(1, Relaxed);
        let budget = self.budget.clone();
        Err(Box::pin(async move { budget.charge(bytes).await }))
    }
}

/// Where an answer's data stands among its gRPC messages.
#[derive(Default)]
pub(crate) struct Framing {
    /// The next message's prefix, as far as it has come.
    prefix: [u8; PREFIX],
    have: usize,
    /// Bytes of the current message still to come.
    remaining: usize,
}

impl Framing {
    /// Follows `chunk` of the answer's data. Returns the size of a message that begins
    /// in it and does not end in it, when larger than [`FREE`]: the charge the chunk
    /// needs before it goes on (tonic will hold that message whole).
    pub(crate) fn follow(&mut self, mut chunk: &[u8]) -> Option<usize> {
        let mut open = None;
        while !chunk.is_empty() {
            if self.remaining > 0 {
                let n = self.remaining.min(chunk.len());
                self.remaining -= n;
                chunk = &chunk[n..];
                if self.remaining == 0 {
                    open = None;
                }
                continue;
            }
            let n = (PREFIX - self.have).min(chunk.len());
            self.prefix[self.have..self.have + n].copy_from_slice(&chunk[..n]);
            self.have += n;
            chunk = &chunk[n..];
            if self.have == PREFIX {
                self.have = 0;
                let [_, a, b, c, d] = self.prefix;
                self.remaining = u32::from_be_bytes([a, b, c, d]) as usize;
                open = (self.remaining > FREE).then_some(PREFIX + self.remaining);
            }
        }
        open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the data so far ends inside a message (or its prefix).
    fn inside(framing: &Framing) -> bool {
        framing.remaining > 0 || framing.have > 0
    }

    fn message(len: usize) -> Vec<u8> {
        let mut m = vec![0u8];
        m.extend_from_slice(&(len as u32).to_be_bytes());
        m.resize(PREFIX + len, 7);
        m
    }

    #[test]
    fn small_messages_need_no_charge_however_they_are_cut() {
        let data: Vec<u8> = [message(100), message(FREE), message(0)].concat();
        for cut in 1..data.len() {
            let mut framing = Framing::default();
            assert_eq!(framing.follow(&data[..cut]), None);
            assert_eq!(framing.follow(&data[cut..]), None);
            assert!(!inside(&framing), "cut at {cut}");
        }
    }

    #[test]
    fn a_large_message_is_charged_where_it_begins_and_ends_where_it_ends() {
        let big = FREE + 1;
        let data: Vec<u8> = [message(10), message(big), message(10)].concat();
        // Its prefix split over two chunks: the charge comes with the second.
        let mut framing = Framing::default();
        assert_eq!(framing.follow(&data[..17]), None);
        assert_eq!(framing.follow(&data[17..100]), Some(PREFIX + big));
        assert!(inside(&framing));
        assert_eq!(framing.follow(&data[100..PREFIX + 10 + PREFIX + big]), None);
        assert!(!inside(&framing), "whole");
        assert_eq!(framing.follow(&data[PREFIX + 10 + PREFIX + big..]), None);
        // Begun and ended in one chunk: already all there, nothing to hold back.
        let mut framing = Framing::default();
        assert_eq!(framing.follow(&data), None);
        // A small message, then a large one begun: the large one's size.
        let mut framing = Framing::default();
        assert_eq!(framing.follow(&data[..40]), Some(PREFIX + big));
    }

    #[tokio::test]
    async fn a_charge_waits_for_room_and_is_counted() {
        let budget = MemoryBudget::new(100 << 10);
        let memory = AnswerMemory::new(budget.clone(), 1 << 20, Arc::new(PoolStats::default()));
        assert!(memory.reads(PREFIX + (1 << 20)) && !memory.reads(PREFIX + (1 << 20) + 1));
        let Ok(first) = memory.charge(60 << 10) else {
            panic!("the budget has room for the first")
        };
        let Err(waiting) = memory.charge(60 << 10) else {
            panic!("no room for a second")
        };
        let waiting = tokio::spawn(waiting);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(first);
        let second = waiting.await.unwrap();
        assert_eq!(budget.in_use(), 60 << 10);
        drop(second);
        assert_eq!(budget.in_use(), 0);
        let stats = &memory.stats;
        assert_eq!(
            (
                stats.answers_charged.load(Relaxed),
                stats.answers_waited.load(Relaxed)
            ),
            (2, 1)
        );
    }
}
