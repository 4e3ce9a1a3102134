//! Latencies in fixed buckets, lock-free: the miner API's call latency, the Kafka
//! sink's delivery latency. Rendered as Prometheus histograms; percentiles for log
//! lines are bucket bounds.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds in ms: from a loopback call (under 1 ms) to the longest sensible wait.
pub(crate) const BOUNDS_MS: [u64; 14] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000,
];

#[derive(Debug, Default)]
pub struct LatencyHistogram {
    counts: [AtomicU64; BOUNDS_MS.len() + 1],
    sum_us: AtomicU64,
}

impl LatencyHistogram {
    pub(crate) fn record(&self, latency: Duration) {
        let ms = latency.as_secs_f64() * 1000.0;
        let bucket = BOUNDS_MS
            .iter()
            .position(|&bound| ms <= bound as f64)
            .unwrap_or(BOUNDS_MS.len());
        self.counts[bucket].fetch_add(1, Relaxed);
        self.sum_us
            .fetch_add(latency.as_micros().min(u64::MAX as u128) as u64, Relaxed);
    }

    /// Counts per bucket; the last is above every bound.
    pub fn counts(&self) -> Vec<u64> {
        self.counts.iter().map(|c| c.load(Relaxed)).collect()
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// The sum of every recorded latency, in seconds.
    pub(crate) fn sum_seconds(&self) -> f64 {
        self.sum_us.load(Relaxed) as f64 / 1e6
    }
}

/// The bound of the bucket holding quantile `q` (0..=1) of per-bucket `counts`; `None`
/// before anything was recorded or when it falls above the last bound.
pub(crate) fn quantile_ms(counts: &[u64], q: f64) -> Option<u64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (bucket, count) in counts.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return BOUNDS_MS.get(bucket).copied();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_bucket_bounds() {
        let h = LatencyHistogram::default();
        assert_eq!(quantile_ms(&h.counts(), 0.5), None);
        for _ in 0..90 {
            h.record(Duration::from_micros(700));
        }
        for _ in 0..10 {
            h.record(Duration::from_millis(150));
        }
        let q = |q| quantile_ms(&h.counts(), q);
        assert_eq!(q(0.5), Some(1));
        assert_eq!(q(0.9), Some(1));
        assert_eq!(q(0.99), Some(200));
        assert!((h.sum_seconds() - (90.0 * 0.0007 + 10.0 * 0.15)).abs() < 1e-9);
        h.record(Duration::from_secs(60));
        assert_eq!(quantile_ms(&h.counts(), 1.0), None, "above the last bound");
        assert_eq!(h.count(), 101);
    }
}
