//! The state of a `bos` source's pool, as counters and gauges anyone may read: the
//! final log line now, `/metrics` and `/health` later. All relaxed atomics: each value
//! is exact on its own, a set of them read together is only roughly simultaneous.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::sample::MinerState;

#[derive(Debug, Default)]
pub struct PoolStats {
    pub miners: AtomicU64,
    /// Miners in each state, indexed by [`MinerState::index`].
    states: [AtomicI64; MinerState::COUNT],
    /// Miners waiting out a backoff delay, or an open breaker.
    pub in_backoff: AtomicI64,
    pub breaker_open: AtomicI64,
    pub connections_open: AtomicI64,
    pub connect_attempts: AtomicU64,
    pub logins: AtomicU64,
    pub rpc_ok: AtomicU64,
    pub rpc_failed: AtomicU64,
    /// Polls not made because downstream was full (backpressure).
    pub polls_skipped: AtomicU64,
    /// Status streams re-opened after they ended, failed, or went silent.
    pub stream_reopens: AtomicU64,
    pub latency: LatencyHistogram,
}

impl PoolStats {
    /// Moves one miner from `from` (if it had a state) to `to`.
    pub fn transition(&self, from: Option<MinerState>, to: MinerState) {
        if let Some(from) = from {
            self.states[from.index()].fetch_sub(1, Relaxed);
        }
        self.states[to.index()].fetch_add(1, Relaxed);
    }

    pub fn in_state(&self, state: MinerState) -> i64 {
        self.states[state.index()].load(Relaxed)
    }

    pub fn rpc(&self, ok: bool, latency: Duration) {
        if ok { &self.rpc_ok } else { &self.rpc_failed }.fetch_add(1, Relaxed);
        self.latency.record(latency);
    }
}

/// Holds a gauge up for as long as it lives, so every early return takes it down again.
pub struct GaugeGuard<'a>(&'a AtomicI64);

impl<'a> GaugeGuard<'a> {
    pub fn up(gauge: &'a AtomicI64) -> Self {
        gauge.fetch_add(1, Relaxed);
        GaugeGuard(gauge)
    }
}

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// RPC latencies in fixed buckets (upper bounds in ms); percentiles are bucket bounds.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    counts: [AtomicU64; BOUNDS_MS.len() + 1],
    sum_us: AtomicU64,
}

/// From a loopback call (under 1 ms) to the longest sensible deadline.
pub const BOUNDS_MS: [u64; 14] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000,
];

impl LatencyHistogram {
    pub fn record(&self, latency: Duration) {
        let ms = latency.as_secs_f64() * 1000.0;
        let bucket = BOUNDS_MS
            .iter()
            .position(|&bound| ms <= bound as f64)
            .unwrap_or(BOUNDS_MS.len());
        self.counts[bucket].fetch_add(1, Relaxed);
        self.sum_us
            .fetch_add(latency.as_micros().min(u64::MAX as u128) as u64, Relaxed);
    }

    /// The sum of every recorded latency, in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_us.load(Relaxed) as f64 / 1e6
    }

    /// Counts per bucket; the last is above every bound.
    pub fn counts(&self) -> Vec<u64> {
        self.counts.iter().map(|c| c.load(Relaxed)).collect()
    }

    /// The bound of the bucket holding quantile `q` (0..=1); `None` before any call or
    /// when it falls above the last bound.
    pub fn quantile_ms(&self, q: f64) -> Option<u64> {
        let counts = self.counts();
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_bucket_bounds() {
        let h = LatencyHistogram::default();
        assert_eq!(h.quantile_ms(0.5), None);
        for _ in 0..90 {
            h.record(Duration::from_micros(700));
        }
        for _ in 0..10 {
            h.record(Duration::from_millis(150));
        }
        assert_eq!(h.quantile_ms(0.5), Some(1));
        assert_eq!(h.quantile_ms(0.9), Some(1));
        assert_eq!(h.quantile_ms(0.99), Some(200));
        h.record(Duration::from_secs(60));
        assert_eq!(h.quantile_ms(1.0), None, "above the last bound");
    }

    #[test]
    fn states_and_gauges_balance() {
        let stats = PoolStats::default();
        stats.transition(None, MinerState::Connecting);
        stats.transition(Some(MinerState::Connecting), MinerState::Online);
        assert_eq!(stats.in_state(MinerState::Connecting), 0);
        assert_eq!(stats.in_state(MinerState::Online), 1);
        {
            let _guard = GaugeGuard::up(&stats.in_backoff);
            assert_eq!(stats.in_backoff.load(Relaxed), 1);
        }
        assert_eq!(stats.in_backoff.load(Relaxed), 0);
    }
}
