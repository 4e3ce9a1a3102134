//! What a simulated miner was asked, as it arrived on the wire: every call by method,
//! per second, and whether the request and the answer were compressed. Tests check a
//! collector's manners with it (its rate limits, retries and compression).

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

/// Events per second, for the last `keep` seconds.
#[derive(Debug)]
pub struct PerSecond {
    seconds: Mutex<VecDeque<(u64, u64)>>,
    epoch: Instant,
    keep: usize,
}

impl PerSecond {
    pub(crate) fn keeping(keep: usize) -> Self {
        PerSecond {
            seconds: Mutex::default(),
            epoch: Instant::now(),
            keep,
        }
    }

    pub(crate) fn record(&self) {
        let mut seconds = self.lock();
        // Read under the lock, so seconds are pushed in order.
        let second = self.epoch.elapsed().as_secs();
        match seconds.back_mut() {
            Some((s, count)) if *s == second => *count += 1,
            _ => seconds.push_back((second, 1)),
        }
        while seconds.len() > self.keep {
            seconds.pop_front();
        }
    }

    /// The most events in any one second (of those kept).
    pub fn peak_per_second(&self) -> u64 {
        self.lock().iter().map(|(_, c)| *c).max().unwrap_or(0)
    }

    /// Forgets what was recorded (a test measuring one phase starts here).
    pub fn reset(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, u64)>> {
        self.seconds.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Calls one miner has seen.
#[derive(Debug)]
pub struct CallCounters {
    /// Login attempts, good or bad.
    pub logins: AtomicU64,
    /// GetMinerStatus streams opened.
    pub status_streams: AtomicU64,
    /// Every call, by method name (`GetMinerStats`), failed ones included.
    by_method: Mutex<BTreeMap<String, u64>>,
    /// Every call, per second (the last minute).
    pub per_second: PerSecond,
    /// Calls whose request came gzip-compressed (`grpc-encoding: gzip`).
    pub compressed_requests: AtomicU64,
    /// Calls answered gzip-compressed.
    pub compressed_answers: AtomicU64,
}

impl Default for CallCounters {
    fn default() -> Self {
        CallCounters {
            logins: AtomicU64::default(),
            status_streams: AtomicU64::default(),
            by_method: Mutex::default(),
            per_second: PerSecond::keeping(60),
            compressed_requests: AtomicU64::default(),
            compressed_answers: AtomicU64::default(),
        }
    }
}

impl CallCounters {
    /// Calls of `method` (its name in the API, e.g. `GetMinerStats`).
    pub fn of(&self, method: &str) -> u64 {
        let by_method = self.by_method.lock().unwrap_or_else(|e| e.into_inner());
        by_method.get(method).copied().unwrap_or(0)
    }

    /// Every call, whatever its method.
    pub fn total(&self) -> u64 {
        let by_method = self.by_method.lock().unwrap_or_else(|e| e.into_inner());
        by_method.values().sum()
    }
}

/// Counts each request to one miner (and `fleet`, fleet-wide, per second) as it
/// arrives, and each answer's compression as it leaves.
#[derive(Clone)]
pub(crate) struct CountCalls {
    pub calls: Arc<CallCounters>,
    pub fleet: Arc<PerSecond>,
}

impl<S> tower_layer::Layer<S> for CountCalls {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            counting: self.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Counted<S> {
    inner: S,
    counting: CountCalls,
}

fn gzipped(headers: &http::HeaderMap) -> bool {
    headers
        .get("grpc-encoding")
        .is_some_and(|encoding| encoding == "gzip")
}

impl<S, B, R> tower_service::Service<http::Request<B>> for Counted<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let CountCalls { calls, fleet } = &self.counting;
        let method = request.uri().path().rsplit('/').next().unwrap_or_default();
        *calls
            .by_method
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(method.to_string())
            .or_default() += 1;
        calls.per_second.record();
        fleet.record();
        if gzipped(request.headers()) {
            calls.compressed_requests.fetch_add(1, Relaxed);
        }
        let calls = calls.clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            if gzipped(response.headers()) {
                calls.compressed_answers.fetch_add(1, Relaxed);
            }
            Ok(response)
        })
    }
}
