//! Exponential backoff with jitter: after the n-th consecutive failure, with
//! `c = min(max, initial * multiplier^n)`, wait a uniformly random time in
//! `(c * (1 - jitter), c]`. The default `jitter: 1` is full jitter, `(0, c]`.
//!
//! Full jitter (rather than a fixed exponential delay) spreads a fleet that failed at
//! the same moment, so its retries do not arrive at the miners (or the governor) in
//! waves; a smaller fraction keeps each wait closer to its ceiling.

use std::time::Duration;

use serde::Deserialize;

use crate::toolkit::units::HumanDuration;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct BackoffConfig {
    pub initial: HumanDuration,
    pub max: HumanDuration,
    pub(crate) multiplier: f64,
    /// The randomised share of each wait, 0 (none) to 1 (full jitter).
    #[serde(default = "full_jitter")]
    pub(crate) jitter: f64,
}

fn full_jitter() -> f64 {
    1.0
}

impl BackoffConfig {
    /// The rules `serde` cannot say: the bad key, and what to change.
    pub(crate) fn check(&self) -> Result<(), (&'static str, String)> {
        if !(1.0..=100.0).contains(&self.multiplier) {
            return Err((
                "multiplier",
                format!(
                    "`multiplier` grows each wait: from 1 (constant) to 100, found {}",
                    self.multiplier
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err((
                "jitter",
                format!(
                    "`jitter` is the randomised share of each wait, from 0 (none) to 1 (full jitter), found {}",
                    self.jitter
                ),
            ));
        }
        if self.initial > self.max {
            return Err((
                "initial",
                format!(
                    "`initial` ({}) is longer than `max` ({}): the first wait would exceed the longest",
                    self.initial, self.max
                ),
            ));
        }
        Ok(())
    }
}

pub(crate) struct Backoff {
    config: BackoffConfig,
    failures: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    pub(crate) fn new(config: BackoffConfig, seed: u64) -> Self {
        Backoff {
            config,
            failures: 0,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// The ceiling of the next wait, before jitter.
    fn ceiling(&self) -> Duration {
        let initial = self.config.initial.0.as_secs_f64();
        let grown = initial * self.config.multiplier.powi(self.failures.min(64) as i32);
        Duration::from_secs_f64(grown.min(self.config.max.0.as_secs_f64()))
    }

    /// Records a failure and returns how long to wait before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        ceiling.mul_f64(1.0 - self.config.jitter * self.rng.f64())
    }

    /// A success: the next failure starts from `initial` again.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff() -> Backoff {
        Backoff::new(
            BackoffConfig {
                initial: HumanDuration(Duration::from_millis(100)),
                max: HumanDuration(Duration::from_secs(2)),
                multiplier: 2.0,
                jitter: 1.0,
            },
            7,
        )
    }

    #[test]
    fn a_jitter_fraction_keeps_waits_near_the_ceiling() {
        let mut b = backoff();
        b.config.jitter = 0.2;
        for _ in 0..10 {
            b.next_delay();
        }
        for _ in 0..1000 {
            let delay = b.next_delay().as_millis();
            assert!((1600..=2000).contains(&delay), "{delay} ms");
        }
        b.config.jitter = 0.0;
        assert_eq!(b.next_delay(), Duration::from_secs(2));
    }

    #[test]
    fn grows_to_the_cap_and_jitters_below_it() {
        let mut b = backoff();
        let ceilings: Vec<u64> = (0..8)
            .map(|_| {
                let ceiling = b.ceiling();
                let delay = b.next_delay();
                assert!(delay <= ceiling, "{delay:?} above {ceiling:?}");
                ceiling.as_millis() as u64
            })
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
    }

    #[test]
    fn full_jitter_spreads_the_whole_range() {
        let mut b = backoff();
        for _ in 0..10 {
            b.next_delay();
        }
        let delays: Vec<Duration> = (0..1000).map(|_| b.next_delay()).collect();
        let low = delays.iter().filter(|d| d.as_millis() < 500).count();
        let high = delays.iter().filter(|d| d.as_millis() > 1500).count();
        // Uniform over [0, 2s): a quarter in each of these ranges, give or take.
        assert!((150..350).contains(&low), "{low} of 1000 below 0.5s");
        assert!((150..350).contains(&high), "{high} of 1000 above 1.5s");
    }

    #[test]
    fn reset_starts_over() {
        let mut b = backoff();
        for _ in 0..5 {
            b.next_delay();
        }
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }
}
