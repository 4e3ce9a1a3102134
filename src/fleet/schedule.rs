//! When a miner is polled: the first poll anywhere in the first interval (so a fleet
//! that starts together does not poll together), then every `interval × (1 ±
//! jitter/2)`. And when its connection is recycled: after 80 to 100% of
//! `connection_ttl`, so a fleet that connected together does not reconnect together.

use std::time::Duration;

/// The wait before a miner's first poll.
pub(crate) fn first_poll(interval: Duration, rng: &mut fastrand::Rng) -> Duration {
    interval.mul_f64(rng.f64())
}

/// The wait from one poll to the next.
pub(crate) fn next_poll(interval: Duration, jitter: f64, rng: &mut fastrand::Rng) -> Duration {
    interval.mul_f64(1.0 + jitter * (rng.f64() - 0.5))
}

/// How long a connection serves before it is recycled.
pub(crate) fn connection_life(ttl: Duration, rng: &mut fastrand::Rng) -> Duration {
    ttl.mul_f64(1.0 - 0.2 * rng.f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_live_most_of_their_ttl_spread_over_the_rest() {
        let (ttl, mut rng) = (Duration::from_secs(3600), fastrand::Rng::with_seed(2));
        let lives: Vec<Duration> = (0..1000).map(|_| connection_life(ttl, &mut rng)).collect();
        let (min, max) = (lives.iter().min().unwrap(), lives.iter().max().unwrap());
        assert!(*min >= ttl.mul_f64(0.8) && *max <= ttl, "{min:?}..{max:?}");
        // Spread over the 12 minutes, not bunched.
        assert!(
            *min < ttl.mul_f64(0.82) && *max > ttl.mul_f64(0.98),
            "{min:?}..{max:?}"
        );
    }

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
