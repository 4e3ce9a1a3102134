//! A circuit breaker per miner: closed (calls flow), open (no attempts at all for
//! `open_for`), half-open (one trial; `successes_to_close` successes close it, one
//! failure opens it again). An open breaker is what makes a dead miner cost nearly
//! nothing: no connection attempts, no timers beyond one sleep.

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
}

impl Breaker {
    pub(crate) fn new(config: BreakerConfig) -> Self {
        Breaker {
            config,
            state: BreakerState::Closed,
            failures: 0,
            successes: 0,
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

    /// Records a failure; returns true when this failure opened the breaker.
    pub(crate) fn failure(&mut self, now: Instant) -> bool {
        self.failures += 1;
        let open = match self.state {
            BreakerState::HalfOpen => true,
            BreakerState::Closed => self.failures >= self.config.failure_threshold,
            BreakerState::Open { .. } => false,
        };
        if open {
            self.state = BreakerState::Open {
                until: now + self.config.open_for.0,
            };
        }
        open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerConfig {
            failure_threshold: 3,
            open_for: HumanDuration(Duration::from_secs(10)),
            successes_to_close: 2,
        })
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
