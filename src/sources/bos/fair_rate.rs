//! A fleet-wide rate governor that serves its waiters in arrival order, with one
//! queue that goes first.
//!
//! `governor`'s own `until_ready` is not fair: every waiter sleeps until the next free
//! cell, they all wake together, one wins and the rest sleep again. When the fleet asks
//! for more than the quota (more polls than `rate.rpcs_per_second` allows, or a
//! reconnect storm at `rate.connects_per_second`) the losers are chosen by chance, and
//! a miner can lose for many seconds in a row: 18 of 200 miners waited 3 to 10 s for
//! their login while the others polled. Queueing the waiters first (tokio's mutex is
//! FIFO) bounds each wait by the queue ahead of it: a slow fleet, not a starved miner.
//!
//! Calls that bring a miner online (version, login, status stream) go first: after a
//! site-wide blip the fleet reconnects before it polls again. They are few (bounded by
//! the connect governor, and by sessions expiring), so they cannot starve the polls.

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::Mutex;

pub(crate) struct FairRateLimiter {
    limiter: DefaultDirectRateLimiter,
    /// Every waiter's turn at the limiter, in order.
    turn: Mutex<()>,
    /// Where ordinary waiters queue before they may queue for a turn.
    ordinary: Mutex<()>,
}

impl FairRateLimiter {
    pub(crate) fn new(quota: Quota) -> Self {
        FairRateLimiter {
            limiter: RateLimiter::direct(quota),
            turn: Mutex::new(()),
            ordinary: Mutex::new(()),
        }
    }

    /// Waits for this caller's turn, then for a free cell. Dropping the future (a
    /// stop, a deadline) leaves the queue.
    pub(crate) async fn until_ready(&self) {
        let _queued = self.ordinary.lock().await;
        self.until_ready_first().await;
    }

    /// As [`Self::until_ready`], ahead of every ordinary waiter but the one already
    /// waiting for a turn.
    pub(crate) async fn until_ready_first(&self) {
        let _turn = self.turn.lock().await;
        self.limiter.until_ready().await;
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Queues `waiters` (an id, and whether it goes first) one after another on one
    /// limiter of 200 calls/s with a burst of 1, and says in which order they got in.
    async fn admission_order(waiters: impl IntoIterator<Item = (u32, bool)>) -> Vec<u32> {
        let quota = Quota::per_second(NonZeroU32::new(200).unwrap()).allow_burst(NonZeroU32::MIN);
        let limiter = Arc::new(FairRateLimiter::new(quota));
        let admitted = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (id, first) in waiters {
            let (limiter, admitted) = (limiter.clone(), admitted.clone());
            tasks.push(tokio::spawn(async move {
                match first {
                    true => limiter.until_ready_first().await,
                    false => limiter.until_ready().await,
                }
                admitted.lock().unwrap().push(id);
            }));
            // Let the task reach the queue before the next one is spawned.
            tokio::task::yield_now().await;
        }
        for task in tasks {
            task.await.unwrap();
        }
        let order = admitted.lock().unwrap().clone();
        order
    }

    /// Waiters that queue in order are admitted in that order, even when all of them
    /// are asleep on the same free cell.
    #[tokio::test(flavor = "current_thread")]
    async fn waiters_are_admitted_in_arrival_order() {
        let order = admission_order((0..30).map(|id| (id, false))).await;
        assert_eq!(order, (0..30).collect::<Vec<_>>());
    }

    /// Waiters that go first overtake the ordinary queue, in their own arrival order.
    #[tokio::test(flavor = "current_thread")]
    async fn first_waiters_overtake_the_ordinary_queue() {
        let waiters = (0..10)
            .map(|id| (id, false))
            .chain((100..105).map(|id| (id, true)));
        let order = admission_order(waiters).await;
        // 0 took the free cell, 1 was waiting for the next one when the others came.
        let expected: Vec<_> = [0, 1].into_iter().chain(100..105).chain(2..10).collect();
        assert_eq!(order, expected);
    }
}
