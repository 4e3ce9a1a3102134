//! A circuit breaker per miner: closed (calls flow), open (no attempts at all for
//! `open_for`), half-open (one trial; `successes_to_close` successes close it, one
//! failure opens it again). An open breaker is what makes a dead miner cost nearly
//! nothing: no connection attempts, no timers beyond one sleep.
//!
//! It opens on `failure_threshold` sessions in a row that failed, or, with
//! `failure_rate` set, when that share of a miner's calls failed within `window`
//! (at least `min_calls` of them): a miner that answers one call in three never fails
//! a whole session, yet is not worth polling at full rate. Calls are counted in ten
//! slots of a tenth of the window each, so a miner costs a few hundred bytes more.

use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::toolkit::units::HumanDuration;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long an open breaker refuses attempts.
    pub open_for: HumanDuration,
    /// Successes in half-open state that close it.
    pub(crate) successes_to_close: u32,
    /// The share of calls (0 to 1) failing within `window` that opens it; none: off.
    #[serde(default)]
    pub(crate) failure_rate: Option<f64>,
    pub(crate) window: HumanDuration,
    /// Fewer calls than this in the window are too few to judge.
    pub(crate) min_calls: u32,
}

impl BreakerConfig {
    /// The rules `serde` cannot say: the bad key, and what to change.
    pub(crate) fn check(&self) -> Result<(), (&'static str, String)> {
        for (key, value) in [
            ("failure_threshold", self.failure_threshold),
            ("successes_to_close", self.successes_to_close),
            ("min_calls", self.min_calls),
        ] {
            if value == 0 {
                return Err((key, format!("`breaker.{key}` must be at least 1")));
            }
        }
        match self.failure_rate {
            Some(rate) if !(rate > 0.0 && rate <= 1.0) => Err((
                "failure_rate",
                format!("`breaker.failure_rate` is a share of calls above 0 and at most 1 (e.g. 0.5), found {rate}"),
            )),
            _ => Ok(()),
        }
    }
}

/// Slots of the failure-rate window.
const SLOTS: usize = 10;

/// Calls and failures per tenth of the window, oldest overwritten first.
struct CallWindow {
    slot_length: Duration,
    /// Which slot (counted from `epoch`) each entry holds, and its (calls, failures).
    slots: [(u64, u32, u32); SLOTS],
    epoch: Instant,
}

impl CallWindow {
    fn new(window: Duration, now: Instant) -> Self {
        CallWindow {
            slot_length: (window / SLOTS as u32).max(Duration::from_millis(1)),
            slots: [(u64::MAX, 0, 0); SLOTS],
            epoch: now,
        }
    }

    fn slot_of(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.epoch).as_nanos() / self.slot_length.as_nanos()) as u64
    }

    fn record(&mut self, failed: bool, now: Instant) {
        let slot = self.slot_of(now);
        let entry = &mut self.slots[(slot % SLOTS as u64) as usize];
        if entry.0 != slot {
            *entry = (slot, 0, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.2 = entry.2.saturating_add(u32::from(failed));
    }

    /// (calls, failures) within the window ending `now`.
    fn totals(&self, now: Instant) -> (u32, u32) {
        let current = self.slot_of(now);
        self.slots
            .iter()
            .filter(|(slot, _, _)| *slot != u64::MAX && current - *slot < SLOTS as u64)
            .fold((0, 0), |(calls, failed), (_, c, f)| (calls + c, failed + f))
    }

    fn clear(&mut self) {
        self.slots = [(u64::MAX, 0, 0); SLOTS];
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BreakerState {
    Closed,
    Open { until: Instant },
    HalfOpen,
}

pub(crate) struct Breaker {
    config: BreakerConfig,
    state: BreakerState,
    failures: u32,
    successes: u32,
    /// Only with `failure_rate` set.
    calls: Option<Box<CallWindow>>,
}

impl Breaker {
    pub(crate) fn new(config: BreakerConfig) -> Self {
        let calls = config
            .failure_rate
            .map(|_| Box::new(CallWindow::new(config.window.0, Instant::now())));
        Breaker {
            config,
            state: BreakerState::Closed,
            failures: 0,
            successes: 0,
            calls,
        }
    }

    #[cfg(test)]
    fn state(&self) -> BreakerState {
        self.state
    }

    /// How long to wait before an attempt is allowed; `None` means now. An open
    /// breaker whose time is up becomes half-open.
    pub(crate) fn wait(&mut self, now: Instant) -> Option<Duration> {
        match self.state {
            BreakerState::Open { until } if now < until => Some(until - now),
            BreakerState::Open { .. } => {
                self.state = BreakerState::HalfOpen;
                self.successes = 0;
                None
            }
            BreakerState::Closed | BreakerState::HalfOpen => None,
        }
    }

    pub(crate) fn success(&mut self) {
        self.failures = 0;
        if self.state == BreakerState::HalfOpen {
            self.successes += 1;
            if self.successes >= self.config.successes_to_close {
                self.state = BreakerState::Closed;
            }
        }
    }

    /// Records one call's outcome; returns the (calls, failures) in the window when
    /// the share of failures opened the breaker.
    pub(crate) fn call(&mut self, failed: bool, now: Instant) -> Option<(u32, u32)> {
        let (Some(rate), Some(window)) = (self.config.failure_rate, self.calls.as_mut()) else {
            return None;
        };
        window.record(failed, now);
        let (calls, failures) = window.totals(now);
        let opens = match self.state {
            // A trial's calls are its probes: one that fails opens it again, and
            // `successes_to_close` that answer close it.
            BreakerState::HalfOpen if failed => true,
            BreakerState::HalfOpen => {
                self.success();
                false
            }
            BreakerState::Closed => {
                calls >= self.config.min_calls && f64::from(failures) >= rate * f64::from(calls)
            }
            BreakerState::Open { .. } => false,
        };
        if opens {
            self.open(now);
        }
        opens.then_some((calls, failures))
    }

    /// Opens for `open_for`, forgetting the calls before: a miner that comes back is
    /// judged on what it does after.
    fn open(&mut self, now: Instant) {
        if let Some(window) = self.calls.as_mut() {
            window.clear();
        }
        self.state = BreakerState::Open {
            until: now + self.config.open_for.0,
        };
    }

    /// Records a failure; returns true when this failure opened the breaker.
    pub(crate) fn failure(&mut self, now: Instant) -> bool {
        self.failures += 1;
        let open = match self.state {
            BreakerState::HalfOpen => true,
            BreakerState::Closed => self.failures >= self.config.failure_threshold,
            BreakerState::Open { .. } => false,
        };
        if open {
            self.open(now);
        }
        open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 3,
            open_for: HumanDuration(Duration::from_secs(10)),
            successes_to_close: 2,
            failure_rate: None,
            window: HumanDuration(Duration::from_secs(10)),
            min_calls: 10,
        }
    }

    fn breaker() -> Breaker {
        Breaker::new(config())
    }

    #[test]
    fn a_failure_rate_within_the_window_opens_it() {
        let t0 = Instant::now();
        let mut b = Breaker::new(BreakerConfig {
            failure_rate: Some(0.5),
            failure_threshold: 1000,
            ..config()
        });
        // One call in three fails: below the rate, however long it goes on.
        for i in 0..300 {
            let at = t0 + Duration::from_millis(100 * i);
            assert_eq!(b.call(i % 3 == 0, at), None);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        // Failures now: the window (10 s, 100 calls) tips past half within it.
        let t1 = t0 + Duration::from_secs(30);
        let mut opened = None;
        for i in 0..100 {
            if let Some(counts) = b.call(true, t1 + Duration::from_millis(100 * i)) {
                opened = Some((i, counts));
                break;
            }
        }
        let (after, (calls, failures)) = opened.expect("the rate opened it");
        assert!(
            f64::from(failures) >= 0.5 * f64::from(calls),
            "{failures} of {calls}"
        );
        // A third of the window failed already: about 25 more tip it past half.
        assert!((15..40).contains(&after), "opened after {after} failures");
        assert!(matches!(b.state(), BreakerState::Open { .. }));
    }

    #[test]
    fn too_few_calls_and_old_calls_do_not_count() {
        let t0 = Instant::now();
        let mut b = Breaker::new(BreakerConfig {
            failure_rate: Some(0.5),
            ..config()
        });
        for i in 0..9 {
            assert_eq!(
                b.call(true, t0 + Duration::from_millis(i)),
                None,
                "9 < min_calls"
            );
        }
        // 20 s later the nine failures have left the window.
        let later = t0 + Duration::from_secs(20);
        for i in 0..9 {
            assert_eq!(b.call(i % 3 == 0, later), None);
        }
        // 3 of 10 failed; with the old ones it would be 12 of 19.
        assert_eq!(b.call(false, later), None);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_half_open_trial_is_judged_by_its_calls() {
        let t0 = Instant::now();
        let mut b = Breaker::new(BreakerConfig {
            failure_rate: Some(0.5),
            failure_threshold: 1000,
            ..config()
        });
        for i in 0..10 {
            b.call(true, t0 + Duration::from_millis(i));
        }
        let t1 = t0 + Duration::from_secs(11);
        assert_eq!(b.wait(t1), None);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.call(false, t1), None);
        assert_eq!(b.state(), BreakerState::HalfOpen, "one of two successes");
        assert_eq!(b.call(false, t1), None);
        assert_eq!(b.state(), BreakerState::Closed);
        // The failures before the open are forgotten: one more does not reopen it.
        assert_eq!(b.call(true, t1), None);
        assert_eq!(b.state(), BreakerState::Closed);

        for i in 0..10 {
            b.call(true, t1 + Duration::from_millis(i));
        }
        let t2 = t1 + Duration::from_secs(11);
        assert_eq!(b.wait(t2), None);
        assert!(b.call(true, t2).is_some(), "a failed probe opens it again");
    }

    #[test]
    fn bad_settings_are_refused() {
        let bad = BreakerConfig {
            failure_rate: Some(1.5),
            ..config()
        };
        assert_eq!(bad.check().unwrap_err().0, "failure_rate");
        let bad = BreakerConfig {
            min_calls: 0,
            ..config()
        };
        assert_eq!(bad.check().unwrap_err().0, "min_calls");
        assert!(config().check().is_ok());
    }

    #[test]
    fn opens_after_the_threshold_and_refuses_until_its_time() {
        let t0 = Instant::now();
        let mut b = breaker();
        assert!(!b.failure(t0));
        assert!(!b.failure(t0));
        assert_eq!(b.wait(t0), None, "still closed below the threshold");
        assert!(b.failure(t0), "the third failure opens it");
        assert_eq!(
            b.wait(t0 + Duration::from_secs(4)),
            Some(Duration::from_secs(6))
        );
        assert_eq!(b.wait(t0 + Duration::from_secs(10)), None);
        assert_eq!(b.state(), BreakerState::HalfOpen);
    }

    #[test]
    fn a_success_between_failures_keeps_it_closed() {
        let t0 = Instant::now();
        let mut b = breaker();
        for _ in 0..10 {
            b.failure(t0);
            b.failure(t0);
            b.success();
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn half_open_closes_after_enough_successes_and_reopens_on_one_failure() {
        let t0 = Instant::now();
        let mut b = breaker();
        (0..3).for_each(|_| {
            b.failure(t0);
        });
        let t1 = t0 + Duration::from_secs(10);
        b.wait(t1);
        b.success();
        assert_eq!(
            b.state(),
            BreakerState::HalfOpen,
            "one success is not enough"
        );
        b.success();
        assert_eq!(b.state(), BreakerState::Closed);

        (0..3).for_each(|_| {
            b.failure(t1);
        });
        let t2 = t1 + Duration::from_secs(10);
        b.wait(t2);
        assert!(b.failure(t2), "a failed trial opens it again at once");
        assert_eq!(
            b.state(),
            BreakerState::Open {
                until: t2 + Duration::from_secs(10)
            }
        );
    }
}
