//! When a miner is polled: the first poll anywhere in the first interval (so a fleet
//! that starts together does not poll together), then every `interval × (1 ±
//! jitter/2)`.

use std::time::Duration;

/// The wait before a miner's first poll.
pub(crate) fn first_poll(interval: Duration, rng: &mut fastrand::Rng) -> Duration {
    interval.mul_f64(rng.f64())
}

/// The wait from one poll to the next.
pub(crate) fn next_poll(interval: Duration, jitter: f64, rng: &mut fastrand::Rng) -> Duration {
    interval.mul_f64(1.0 + jitter * (rng.f64() - 0.5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_stay_within_the_jitter() {
        let (interval, mut rng) = (Duration::from_millis(200), fastrand::Rng::with_seed(1));
        for _ in 0..1000 {
            assert!(first_poll(interval, &mut rng) < interval);
            let wait = next_poll(interval, 0.5, &mut rng);
            assert!((Duration::from_millis(150)..=Duration::from_millis(250)).contains(&wait));
        }
        assert_eq!(next_poll(interval, 0.0, &mut rng), interval);
    }
}
