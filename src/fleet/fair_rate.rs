//! A fleet-wide rate governor that serves its waiters in arrival order, with one
//! queue that goes first.
//!
//! `governor`'s own `until_ready` is not fair: every waiter sleeps until the next free
//! cell, they all wake together, one wins and the rest sleep again. When the fleet asks
//! for more than the quota (more polls than `rate.rpcs` allows, or a
//! reconnect storm at `rate.connects`) the losers are chosen by chance, and
//! a miner can lose for many seconds in a row: 18 of 200 miners waited 3 to 10 s for
//! their login while the others polled. Queueing the waiters first (tokio's mutex is
//! FIFO) bounds each wait by the queue ahead of it: a slow fleet, not a starved miner.
//!
//! Calls that bring a miner online (version, login, status stream) go first: after a
//! site-wide blip the fleet reconnects before it polls again. They are few (bounded by
//! the connect governor, and by sessions expiring), so they cannot starve the polls.

//!
//! Each limiter also measures how much of its budget the fleet uses, over windows of
//! [`USAGE_WINDOW`], for the headroom gauge and `/health`: a fleet that uses all of
//! its call budget for minutes polls late.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::Mutex;

use crate::toolkit::units::Rate;

/// The burst a call governor allows: a tenth of a second's calls. Any one-second span
/// then sees at most the rate plus a tenth, and a busy governor need not wake for
/// every call (tokio's timer ticks in milliseconds; at 10,000 calls a second a burst
/// of one would cap the fleet near 1,000).
pub(crate) const CALL_BURST: Duration = Duration::from_millis(100);

/// `rate`, allowing the events of `burst` (at least one) at once.
pub(crate) fn quota(rate: Rate, burst: Duration) -> Quota {
    let burst = NonZeroU32::new(rate.events_in(burst)).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(rate.period())
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
        .allow_burst(burst)
}

/// Waits for a cell of `limiter`, sleeping on tokio's timer.
///
/// `governor`'s own `until_ready` sleeps on `futures-timer`, whose one thread of its
/// own wakes every waiter across threads: with a poll's calls spaced by the per-miner
/// governor, 10,000 miners made some 4,000 such waits a second. The wait is measured
/// on the limiter's own clock (another clock's `now` starts elsewhere).
pub(crate) async fn until_ready(limiter: &DefaultDirectRateLimiter) {
    while let Err(not_until) = limiter.check() {
        let wait = not_until.wait_time_from(limiter.clock().now());
        // At least a millisecond, tokio's tick: a zero wait would spin.
        tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
    }
}

/// How often the used share of the budget is measured.
pub(crate) const USAGE_WINDOW: Duration = Duration::from_secs(10);

/// A window's use of the budget at or above this share is "short of budget".
const SHORT_AT: f64 = 0.95;

pub(crate) struct FairRateLimiter {
    limiter: DefaultDirectRateLimiter,
    /// Every waiter's turn at the limiter, in order.
    turn: Mutex<()>,
    /// Where ordinary waiters queue before they may queue for a turn.
    ordinary: Mutex<()>,
    per_second: f64,
    usage: std::sync::Mutex<Usage>,
}

/// Admissions in the current window, and what the last full window used.
struct Usage {
    started: Instant,
    admitted: u64,
    /// The share of the budget the last window used (0 to about 1).
    used: f64,
    /// Since when every window has been short of budget.
    short_since: Option<Instant>,
}

impl FairRateLimiter {
    pub(crate) fn new(rate: Rate, burst: Duration) -> Self {
        FairRateLimiter {
            limiter: RateLimiter::direct(quota(rate, burst)),
            turn: Mutex::new(()),
            ordinary: Mutex::new(()),
            per_second: rate.as_per_second(),
            usage: std::sync::Mutex::new(Usage {
                started: Instant::now(),
                admitted: 0,
                used: 0.0,
                short_since: None,
            }),
        }
    }

    /// Counts one admission, and closes the window if its time is up.
    fn admitted(&self, now: Instant) {
        let mut usage = self.lock_usage();
        usage.admitted += 1;
        self.roll(&mut usage, now);
    }

    fn roll(&self, usage: &mut Usage, now: Instant) {
        let elapsed = now.saturating_duration_since(usage.started);
        if elapsed < USAGE_WINDOW {
            return;
        }
        usage.used = usage.admitted as f64 / (self.per_second * elapsed.as_secs_f64());
        usage.short_since = match usage.used >= SHORT_AT {
            true => usage.short_since.or(Some(usage.started)),
            false => None,
        };
        usage.started = now;
        usage.admitted = 0;
    }

    fn lock_usage(&self) -> std::sync::MutexGuard<'_, Usage> {
        self.usage.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The share of the budget left over the last window, 0 to 1.
    pub(crate) fn headroom(&self, now: Instant) -> f64 {
        let mut usage = self.lock_usage();
        self.roll(&mut usage, now);
        (1.0 - usage.used).clamp(0.0, 1.0)
    }

    /// How long the fleet has used all (95% or more) of this budget, if it does.
    pub(crate) fn short_for(&self, now: Instant) -> Option<Duration> {
        let mut usage = self.lock_usage();
        self.roll(&mut usage, now);
        usage
            .short_since
            .map(|since| now.saturating_duration_since(since))
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
        until_ready(&self.limiter).await;
        self.admitted(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn quotas_hold_fractions_and_a_tenth_of_a_second_of_burst() {
        let rate = |text: &str| text.parse::<Rate>().unwrap();
        let q = quota(rate("30/min"), CALL_BURST);
        assert_eq!(q.replenish_interval(), Duration::from_secs(2));
        assert_eq!(q.burst_size().get(), 1);
        let q = quota(rate("10000/s"), CALL_BURST);
        assert_eq!(q.replenish_interval(), Duration::from_micros(100));
        assert_eq!(q.burst_size().get(), 1000);
        assert_eq!(quota(rate("200"), Duration::ZERO).burst_size().get(), 1);
    }

    /// The headroom gauge and the "short of budget" clock, on made-up times: a
    /// limiter asked for all of its rate for two windows is short since the first;
    /// one asked for a third of it (and a tail of the full rate) has about 60% left.
    #[test]
    fn usage_is_measured_per_window() {
        let limiter = FairRateLimiter::new("100/s".parse().unwrap(), CALL_BURST);
        let t0 = limiter.lock_usage().started;
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(limiter.headroom(t0), 1.0);
        assert_eq!(limiter.short_for(t0), None);
        for i in 0..2100 {
            limiter.admitted(at(i * 10));
        }
        // 21 s at 100/s: two windows closed, both full.
        assert_eq!(limiter.short_for(at(21_000)), Some(Duration::from_secs(21)));
        assert!(limiter.headroom(at(21_000)) < 0.05);
        for i in 0..333 {
            limiter.admitted(at(21_000 + i * 30));
        }
        let headroom = limiter.headroom(at(31_000));
        assert!((0.55..0.65).contains(&headroom), "{headroom}");
        assert_eq!(limiter.short_for(at(31_000)), None);
    }

    /// Queues `waiters` (an id, and whether it goes first) one after another on one
    /// limiter of 200 calls/s with a burst of 1, and says in which order they got in.
    async fn admission_order(waiters: impl IntoIterator<Item = (u32, bool)>) -> Vec<u32> {
        let limiter = Arc::new(FairRateLimiter::new(
            "200/s".parse().unwrap(),
            Duration::ZERO,
        ));
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
