//! A budget of log lines, so a flood (ten thousand miners going offline, a broker
//! refusing every message) is a handful of lines plus a count of what was left out.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

pub(crate) struct LogBudget {
    limiter: DefaultDirectRateLimiter,
    suppressed: AtomicU64,
}

impl LogBudget {
    /// `per_second` lines on average, bursts of `burst`.
    pub(crate) fn new(per_second: NonZeroU32, burst: NonZeroU32) -> Self {
        LogBudget {
            limiter: RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst)),
            suppressed: AtomicU64::new(0),
        }
    }

    /// True when a line may be written now; otherwise counts it as suppressed.
    pub(crate) fn allow(&self) -> bool {
        let allowed = self.limiter.check().is_ok();
        if !allowed {
            self.suppressed.fetch_add(1, Relaxed);
        }
        allowed
    }

    /// Lines left out since the start.
    pub(crate) fn suppressed(&self) -> u64 {
        self.suppressed.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_to_the_burst_and_counted() {
        let budget = LogBudget::new(NonZeroU32::MIN, NonZeroU32::new(5).unwrap());
        let written = (0..1000).filter(|_| budget.allow()).count();
        assert!((5..=6).contains(&written), "{written}");
        assert_eq!(budget.suppressed(), 1000 - written as u64);
    }
}
