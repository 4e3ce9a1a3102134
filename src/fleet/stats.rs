//! The state of a `bos` source's pool, as counters and gauges: read by the final log
//! line, published for `/metrics`, summed for `/health` and the progress line. All
//! relaxed atomics: each value is exact on its own, a set of them read together is
//! only roughly simultaneous.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::Code;

use super::fair_rate::FairRateLimiter;
use crate::pipeline::component::{FleetSummary, Published};
use crate::pipeline::metrics::Exposition;
use crate::toolkit::histogram::{quantile_ms, LatencyHistogram, BOUNDS_MS};
use crate::toolkit::sample::MinerState;

/// gRPC status codes, 0 (OK) to 16 (UNAUTHENTICATED).
const CODES: usize = 17;

/// The miner API calls the source makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    GetApiVersion,
    Login,
    GetMinerStatus,
    GetMinerDetails,
    GetMinerStats,
    GetHashboards,
    GetCoolingState,
    GetPoolGroups,
    /// The CGMiner-style API's commands (the `cgminer` source).
    Summary,
    Stats,
    Devs,
    Pools,
}

impl Method {
    pub(crate) const ALL: [Method; 12] = [
        Method::GetApiVersion,
        Method::Login,
        Method::GetMinerStatus,
        Method::GetMinerDetails,
        Method::GetMinerStats,
        Method::GetHashboards,
        Method::GetCoolingState,
        Method::GetPoolGroups,
        Method::Summary,
        Method::Stats,
        Method::Devs,
        Method::Pools,
    ];

    /// The calls of a new connection (and a re-login), which the fleet-wide governor
    /// lets go before polls.
    pub(crate) fn brings_online(self) -> bool {
        matches!(
            self,
            Method::GetApiVersion | Method::Login | Method::GetMinerStatus
        )
    }

    pub(crate) fn named(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.as_str() == name)
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Method::GetApiVersion => "GetApiVersion",
            Method::Login => "Login",
            Method::GetMinerStatus => "GetMinerStatus",
            Method::GetMinerDetails => "GetMinerDetails",
            Method::GetMinerStats => "GetMinerStats",
            Method::GetHashboards => "GetHashboards",
            Method::GetCoolingState => "GetCoolingState",
            Method::GetPoolGroups => "GetPoolGroups",
            Method::Summary => "summary",
            Method::Stats => "stats",
            Method::Devs => "devs",
            Method::Pools => "pools",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a backoff delay was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BackoffKind {
    /// Before a new session, after one failed.
    Reconnect,
    /// Before a failed call is tried again.
    Retry,
}

/// The fleet-wide governors, for their headroom; set when the source starts.
pub(crate) struct Governors {
    pub connects: Arc<FairRateLimiter>,
    pub rpcs: Arc<FairRateLimiter>,
}

impl fmt::Debug for Governors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Governors")
    }
}

#[derive(Debug, Default)]
pub struct PoolStats {
    pub miners: AtomicU64,
    /// Miners in each state, indexed by [`MinerState::index`].
    states: [AtomicI64; MinerState::COUNT],
    /// Miners waiting out a backoff delay, or an open breaker.
    pub(crate) in_backoff: AtomicI64,
    pub breaker_open: AtomicI64,
    pub connections_open: AtomicI64,
    pub connect_attempts: AtomicU64,
    pub logins: AtomicU64,
    /// Calls by method and gRPC status code.
    calls: [[AtomicU64; CODES]; Method::ALL.len()],
    /// Polls not made because downstream was full (backpressure).
    pub polls_skipped: AtomicU64,
    /// Polls that came due (a miner down owes one per interval), those that brought
    /// samples, and the rest (reported as `kind: gap` samples).
    pub polls_expected: AtomicU64,
    pub polls_received: AtomicU64,
    pub polls_missed: AtomicU64,
    /// Of the missed: polls not made because the ones before overran the interval.
    pub polls_late: AtomicU64,
    /// Status streams re-opened after they ended, failed, or went silent.
    pub stream_reopens: AtomicU64,
    /// Status stream messages read while the pipeline was full: their status is
    /// applied once there is room (the latest wins), so the stream is never left unread.
    pub(crate) status_deferred: AtomicU64,
    /// Status changes past a miner's share of status samples (a flapping miner): the
    /// state they left is reported by the next change or poll.
    pub(crate) status_samples_held: AtomicU64,
    /// Answers larger than one HTTP/2 frame, charged to the memory budget while they
    /// were read, and those of them that waited for room.
    pub(crate) answers_charged: AtomicU64,
    pub(crate) answers_waited: AtomicU64,
    /// Call latency by method.
    latency: [LatencyHistogram; Method::ALL.len()],
    /// Attempts beyond the first, by method (each also counted in `calls`).
    retries: [AtomicU64; Method::ALL.len()],
    /// Calls made on a channel that had served calls before (pool reuse), and on one
    /// opened for them.
    pub(crate) calls_reused: AtomicU64,
    pub(crate) calls_connected: AtomicU64,
    /// TCP + TLS + HTTP/2 handshakes that succeeded.
    pub(crate) connect_duration: LatencyHistogram,
    /// Backoff delays chosen, by [`BackoffKind`].
    backoff_delay: [LatencyHistogram; 2],
    /// The running source's fleet-wide governors.
    governors: Mutex<Option<Arc<Governors>>>,
}

impl PoolStats {
    /// Moves one miner from `from` (if it had a state) to `to`.
    pub(crate) fn transition(&self, from: Option<MinerState>, to: MinerState) {
        if let Some(from) = from {
            self.states[from.index()].fetch_sub(1, Relaxed);
        }
        self.states[to.index()].fetch_add(1, Relaxed);
    }

    /// Forgets which state each miner is in: a source that starts (again, after a
    /// reload) counts its miners afresh, its predecessor's having stopped.
    pub(crate) fn reset_states(&self) {
        for state in &self.states {
            state.store(0, Relaxed);
        }
    }

    /// A miner removed by a reload leaves `state`.
    pub(crate) fn leave(&self, state: MinerState) {
        self.states[state.index()].fetch_sub(1, Relaxed);
    }

    pub fn in_state(&self, state: MinerState) -> i64 {
        self.states[state.index()].load(Relaxed)
    }

    /// One attempt of a call: its code, its latency, and whether its channel had
    /// served calls before.
    pub(crate) fn rpc(&self, method: Method, code: Code, latency: Duration, reused: bool) {
        let code = (code as usize).min(CODES - 1);
        self.calls[method as usize][code].fetch_add(1, Relaxed);
        self.latency[method as usize].record(latency);
        match reused {
            true => &self.calls_reused,
            false => &self.calls_connected,
        }
        .fetch_add(1, Relaxed);
    }

    /// A failed call of `method` is tried again.
    pub(crate) fn retried(&self, method: Method) {
        self.retries[method as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn retries(&self, method: Method) -> u64 {
        self.retries[method as usize].load(Relaxed)
    }

    pub(crate) fn backoff(&self, kind: BackoffKind, delay: Duration) {
        self.backoff_delay[kind as usize].record(delay);
    }

    /// Keeps the running source's fleet-wide governors (a reload that restarts the
    /// source replaces them), for their headroom.
    pub(crate) fn set_governors(&self, governors: Governors) {
        *self.governors.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(governors));
    }

    /// Each fleet-wide governor by its `rate` key.
    fn governors(&self) -> Vec<(&'static str, Arc<FairRateLimiter>)> {
        let governors = self.governors.lock().unwrap_or_else(|e| e.into_inner());
        governors.as_ref().map_or_else(Vec::new, |g| {
            vec![("rpcs", g.rpcs.clone()), ("connects", g.connects.clone())]
        })
    }

    /// The longest time a fleet-wide governor has been short of budget, and which.
    pub(crate) fn short_of_budget(&self, now: Instant) -> Option<(&'static str, Duration)> {
        self.governors()
            .into_iter()
            .filter_map(|(name, governor)| Some((name, governor.short_for(now)?)))
            .max_by_key(|(_, lasted)| *lasted)
    }

    /// Calls of `method` that ended with gRPC status `code` (0..=16).
    pub(crate) fn calls(&self, method: Method, code: usize) -> u64 {
        self.calls[method as usize][code].load(Relaxed)
    }

    /// Attempts of the call named `method` (as the API names it, `GetMinerStats`)
    /// that ended with `code`; 0 for a name that is not a call the source makes.
    pub fn attempts_of(&self, method: &str, code: Code) -> u64 {
        Method::named(method).map_or(0, |m| self.calls(m, (code as usize).min(CODES - 1)))
    }

    /// Retries of the call named `method`.
    pub fn retries_of(&self, method: &str) -> u64 {
        Method::named(method).map_or(0, |m| self.retries(m))
    }

    pub(crate) fn latency(&self, method: Method) -> &LatencyHistogram {
        &self.latency[method as usize]
    }

    pub(crate) fn rpc_ok(&self) -> u64 {
        Method::ALL.iter().map(|m| self.calls(*m, 0)).sum()
    }

    pub(crate) fn rpc_failed(&self) -> u64 {
        let all: u64 = Method::ALL
            .iter()
            .flat_map(|m| (0..CODES).map(|code| self.calls(*m, code)))
            .sum();
        // Read apart from `all`: an OK counted in between must not underflow.
        all.saturating_sub(self.rpc_ok())
    }

    /// The latency quantile `q` over every method, as a bucket bound in ms.
    pub(crate) fn latency_quantile_ms(&self, q: f64) -> Option<u64> {
        let mut counts = vec![0; BOUNDS_MS.len() + 1];
        for histogram in &self.latency {
            for (total, count) in counts.iter_mut().zip(histogram.counts()) {
                *total += count;
            }
        }
        quantile_ms(&counts, q)
    }
}

impl Published for PoolStats {
    fn publish(&self, source: &str, out: &mut Exposition) {
        let labels = [("source", source)];
        let gauges: [(&'static str, &'static str, &AtomicI64); 3] = [
            (
                "rigtap_source_miners_in_backoff",
                "Miners waiting to retry.",
                &self.in_backoff,
            ),
            (
                "rigtap_source_miners_breaker_open",
                "Miners whose circuit breaker is open.",
                &self.breaker_open,
            ),
            (
                "rigtap_source_connections_open",
                "Open HTTP/2 channels to miners.",
                &self.connections_open,
            ),
        ];
        out.gauge(
            "rigtap_source_miners",
            "Miners this source collects from.",
            &labels,
            self.miners.load(Relaxed) as f64,
        );
        for (name, help, gauge) in gauges {
            out.gauge(name, help, &labels, gauge.load(Relaxed) as f64);
        }
        let counters: [(&'static str, &'static str, &AtomicU64); 12] = [
            (
                "rigtap_source_connect_attempts",
                "Connection attempts.",
                &self.connect_attempts,
            ),
            ("rigtap_source_logins", "Logins made.", &self.logins),
            (
                "rigtap_source_polls_skipped",
                "Polls skipped because the pipeline was full (backpressure).",
                &self.polls_skipped,
            ),
            (
                "rigtap_source_expected_polls",
                "Polls that came due, one per interval per miner (a miner down owes them too).",
                &self.polls_expected,
            ),
            (
                "rigtap_source_received_polls",
                "Polls that brought samples.",
                &self.polls_received,
            ),
            (
                "rigtap_source_missed_polls",
                "Polls that came due and brought nothing; each is in a `kind: gap` sample with why.",
                &self.polls_missed,
            ),
            (
                "rigtap_source_polls_late",
                "Polls not made because the polls before them took longer than the interval (each is also a missed poll, code `late`).",
                &self.polls_late,
            ),
            (
                "rigtap_source_stream_reopens",
                "Status streams re-opened.",
                &self.stream_reopens,
            ),
            (
                "rigtap_source_status_deferred",
                "Status stream messages read while the pipeline was full; the latest status is applied once there is room.",
                &self.status_deferred,
            ),
            (
                "rigtap_source_status_samples_held",
                "Status changes of a miner past its 10 status samples in 10 s (a flapping miner); the state they left is reported by the next change or poll.",
                &self.status_samples_held,
            ),
            (
                "rigtap_source_large_answers",
                "Answer messages larger than 16 KiB, charged to memory_budget while they were read.",
                &self.answers_charged,
            ),
            (
                "rigtap_source_large_answers_waited",
                "Large answer messages that waited for room in memory_budget (within their call's deadline).",
                &self.answers_waited,
            ),
        ];
        for (name, help, counter) in counters {
            out.counter(name, help, &labels, counter.load(Relaxed));
        }
        for method in Method::ALL {
            for code in 0..CODES {
                let calls = self.calls(method, code);
                if calls > 0 {
                    // The names gRPC's own libraries use: OK, Unavailable, ...
                    let code = match Code::from_i32(code as i32) {
                        Code::Ok => "OK".to_string(),
                        other => format!("{other:?}"),
                    };
                    out.counter(
                        "rigtap_source_rpcs",
                        "Miner API calls by method and gRPC status code (only those made).",
                        &[
                            ("source", source),
                            ("method", method.as_str()),
                            ("code", &code),
                        ],
                        calls,
                    );
                }
            }
        }
        for state in MinerState::ALL {
            out.gauge(
                "rigtap_source_miners_in_state",
                "Miners by the collector's view of them.",
                &[("source", source), ("state", state.as_str())],
                self.in_state(state) as f64,
            );
        }
        for method in Method::ALL {
            out.histogram(
                "rigtap_source_rpc_duration_seconds",
                "Miner API call latency by method (each attempt).",
                &[("source", source), ("method", method.as_str())],
                self.latency(method),
            );
            if self.latency(method).count() == 0 {
                continue;
            }
            out.counter(
                "rigtap_source_rpc_retries",
                "Failed calls tried again (each retry is also in rigtap_source_rpcs).",
                &[("source", source), ("method", method.as_str())],
                self.retries(method),
            );
        }
        for (channel, calls) in [("open", &self.calls_reused), ("new", &self.calls_connected)] {
            out.counter(
                "rigtap_source_channel_calls",
                "Calls by channel: `open` had served calls before (pool reuse), `new` was opened for them.",
                &[("source", source), ("channel", channel)],
                calls.load(Relaxed),
            );
        }
        out.histogram(
            "rigtap_source_connect_duration_seconds",
            "Time to open a channel to a miner: TCP, TLS and the HTTP/2 handshake.",
            &labels,
            &self.connect_duration,
        );
        for (kind, name) in [
            (BackoffKind::Reconnect, "reconnect"),
            (BackoffKind::Retry, "retry"),
        ] {
            out.histogram(
                "rigtap_source_backoff_delay_seconds",
                "Backoff delays chosen: before a reconnect, or before a call's retry.",
                &[("source", source), ("kind", name)],
                &self.backoff_delay[kind as usize],
            );
        }
        let now = Instant::now();
        for (governor, limiter) in self.governors() {
            out.gauge(
                "rigtap_source_rate_headroom_ratio",
                "Share of a fleet-wide governor's budget (`rate.rpcs`, `rate.connects`) left unused over the last 10 s.",
                &[("source", source), ("governor", governor)],
                limiter.headroom(now),
            );
        }
    }

    fn fleet(&self) -> Option<FleetSummary> {
        Some(FleetSummary {
            miners: self.miners.load(Relaxed),
            online: self.in_state(MinerState::Online).max(0) as u64,
            states: MinerState::ALL
                .iter()
                .map(|s| (s.as_str(), self.in_state(*s)))
                .collect(),
            failed_calls: self.rpc_failed(),
            call_p99_ms: self.latency_quantile_ms(0.99),
            short_of_budget: self.short_of_budget(Instant::now()),
        })
    }
}

/// Holds a gauge up for as long as it lives, so every early return takes it down again.
pub(crate) struct GaugeGuard<'a>(&'a AtomicI64);

impl<'a> GaugeGuard<'a> {
    pub(crate) fn up(gauge: &'a AtomicI64) -> Self {
        gauge.fetch_add(1, Relaxed);
        GaugeGuard(gauge)
    }
}

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_by_method_and_code() {
        let stats = PoolStats::default();
        stats.rpc(
            Method::GetMinerStats,
            Code::Ok,
            Duration::from_micros(500),
            true,
        );
        stats.rpc(
            Method::GetMinerStats,
            Code::Unavailable,
            Duration::from_millis(150),
            true,
        );
        stats.rpc(Method::Login, Code::Ok, Duration::from_micros(800), false);
        assert_eq!(stats.calls_reused.load(Relaxed), 2);
        assert_eq!(stats.calls_connected.load(Relaxed), 1);
        assert_eq!((stats.rpc_ok(), stats.rpc_failed()), (2, 1));
        assert_eq!(
            stats.calls(Method::GetMinerStats, Code::Unavailable as usize),
            1
        );
        assert_eq!(stats.latency(Method::GetMinerStats).count(), 2);
        assert_eq!(stats.latency_quantile_ms(0.5), Some(1));
        assert_eq!(stats.latency_quantile_ms(1.0), Some(200));
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
