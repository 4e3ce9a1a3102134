//! One task per miner: connect, check the API version, log in, hold the status stream
//! open, poll on an interval, and on failure back off (with the breaker deciding when
//! a dead miner is tried at all). Every change of state is a status sample.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use governor::{DefaultDirectRateLimiter, RateLimiter};
use tokio::time::{sleep, sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Streaming};

use super::client::{Auth, CallError, CallSettings, MinerClient};
use super::config::{BosConfig, Poll};
use super::connect::{DialError, Dialer, TlsProblem};
use super::poll::{samples, Answers};
use super::pool::{Connection, ConnectionPool};
use super::record;
use crate::fleet::backoff::Backoff;
use crate::fleet::breaker::Breaker;
use crate::fleet::completeness::{silent_stream, Completeness, Overdue};
use crate::fleet::emit::Emitter;
use crate::fleet::fair_rate::{quota, CALL_BURST};
use crate::fleet::record::Recorder;
use crate::fleet::schedule;
use crate::fleet::stats::{BackoffKind, GaugeGuard, Method, PoolStats};
use crate::fleet::status::{MinerStatus, StatusLog};
use crate::fleet::targets::Target;
use crate::toolkit::error_chain::clipped;
use crate::toolkit::proto::bos::v1 as api;
use crate::toolkit::sample::{MinerState, Sample, StatusCode};

/// What every miner task of one source shares.
pub(crate) struct Shared {
    pub config: BosConfig,
    pub calls: Arc<CallSettings>,
    pub(crate) dialer: Dialer,
    pub pool: ConnectionPool,
    pub(crate) emitter: Emitter,
    pub stats: Arc<PoolStats>,
    pub(crate) status_log: Arc<StatusLog>,
    /// With `record:`, where each poll's answers go.
    pub(crate) recorder: Option<Recorder>,
}

/// Why a session ended badly, with the message users see (what failed, what to check)
/// and, when offline, its stable code.
enum Failure {
    Offline(StatusCode, String),
    AuthFailed(String),
    Unsupported(String),
}

enum End {
    Stopped,
    /// `connection_ttl` passed: reconnect at once, no failure.
    Recycle,
}

/// What the status stream did.
enum StreamEvent {
    Status(i32),
    /// Ended, failed, or (`silent`) said nothing for longer than `stream_idle_timeout`.
    Lost {
        code: StatusCode,
        why: String,
        silent: bool,
    },
}

pub(crate) struct MinerTask {
    index: usize,
    target: Target,
    shared: Arc<Shared>,
    status: MinerStatus,
    /// The polls it owed and what arrived (missed ones become gap samples).
    completeness: Completeness,
    breaker: Breaker,
    backoff: Backoff,
    auth: Arc<Auth>,
    rpcs: Arc<DefaultDirectRateLimiter>,
    rng: fastrand::Rng,
    /// The last status the stream reported.
    miner_status: Option<i32>,
    /// What failed in the last poll, if anything.
    poll_problem: Option<(StatusCode, String)>,
    /// Samples waiting for room downstream, in order: at most one poll's answers and a
    /// status change, since no poll is made and no state change applied while any wait.
    held: Vec<Sample>,
    /// A state change (from the stream or a poll) waits to be applied once `held` is
    /// gone and there is room; only the latest matters.
    deferred: bool,
    /// When the next poll was due as a recycled connection closed: the next session
    /// keeps the schedule, so the polls its connect waited through (behind
    /// `rate.connects`, say) are counted late, not lost from the count.
    resume_poll: Option<Instant>,
}

impl MinerTask {
    pub(crate) fn new(index: usize, target: Target, shared: Arc<Shared>) -> Self {
        let config = &shared.config;
        let completeness = Completeness::new(config.interval.0);
        MinerTask {
            completeness,
            index,
            breaker: Breaker::new(config.breaker.clone()),
            backoff: Backoff::new(config.backoff.clone(), index as u64),
            rpcs: Arc::new(RateLimiter::direct(quota(
                config.rate.rpcs_per_miner,
                CALL_BURST,
            ))),
            rng: fastrand::Rng::with_seed(index as u64),
            target,
            shared,
            status: MinerStatus::default(),
            auth: Arc::default(),
            miner_status: None,
            poll_problem: None,
            held: Vec::new(),
            deferred: false,
            resume_poll: None,
        }
    }

    /// Runs until `stop`. A miner `removed` by a reload also leaves the pool's counts
    /// (its state, its parked connection); at the pipeline's stop they stay, for the
    /// source's final summary.
    ///
    /// An `async move` block rather than an `async fn`, which would hold the task twice
    /// in its future (as given, and moved into its body): there is one per miner.
    #[allow(clippy::manual_async_fn)] // on purpose, above
    pub(crate) fn run(
        mut self,
        stop: CancellationToken,
        removed: CancellationToken,
    ) -> impl Future<Output = ()> {
        async move {
            self.run_until(&stop).await;
            // Stopped while a recycled connection waited to reconnect: the polls that
            // came due meanwhile were not made.
            self.count_resumed_late();
            if let Some(held) = self.status.held_back(&self.target) {
                self.hold(vec![held]);
            }
            let owed = self.completeness.close(&self.target, &self.shared.stats);
            self.hold(owed);
            // Even during a stop (the pipeline drains meanwhile): answers already in and
            // state changes the counts include are facts.
            self.flush().await;
            if removed.is_cancelled() {
                if let Some(state) = self.status.state() {
                    self.shared.stats.leave(state);
                }
                drop(self.shared.pool.take(self.index));
            }
        }
    }

    async fn run_until(&mut self, stop: &CancellationToken) {
        let stop = stop.clone();
        let greeting = format!("connecting to {}", self.target.address);
        self.enter(MinerState::Connecting, StatusCode::Connecting, &greeting);
        self.flush().await;
        let shared = self.shared.clone();
        loop {
            if let Some(wait) = self.breaker.wait(std::time::Instant::now()) {
                let _open = GaugeGuard::up(&shared.stats.breaker_open);
                if stopped_during(wait, &stop).await {
                    return;
                }
            }
            let delay = match self.session(&stop).await {
                Ok(End::Stopped) => return,
                Ok(End::Recycle) => continue,
                Err(failure) => {
                    // A recycled connection's reconnect failed: the polls due while it
                    // waited are late; the outage's count from now.
                    self.count_resumed_late();
                    self.breaker.failure(std::time::Instant::now());
                    let (state, code, message, delay) = match failure {
                        Failure::AuthFailed(m) => (
                            MinerState::AuthFailed,
                            StatusCode::AuthFailed,
                            m,
                            shared.config.auth_retry.0,
                        ),
                        Failure::Unsupported(m) => (
                            MinerState::Unsupported,
                            StatusCode::UnsupportedFirmware,
                            m,
                            shared.config.backoff.max.0,
                        ),
                        // An open breaker is the wait: it is waited out at the top.
                        Failure::Offline(StatusCode::BreakerOpen, m) => (
                            MinerState::Offline,
                            StatusCode::BreakerOpen,
                            m,
                            Duration::ZERO,
                        ),
                        Failure::Offline(code, m) => {
                            let delay = self.backoff.next_delay();
                            shared.stats.backoff(BackoffKind::Reconnect, delay);
                            (MinerState::Offline, code, m, delay)
                        }
                    };
                    self.enter(state, code, &message);
                    let gap = self
                        .completeness
                        .down(code, &message, &self.target, &shared.stats);
                    self.hold(gap);
                    // Nothing is read while it waits here, so it may wait for room.
                    self.flush().await;
                    delay
                }
            };
            let _waiting = GaugeGuard::up(&shared.stats.in_backoff);
            if stopped_during(delay, &stop).await {
                return;
            }
        }
    }

    /// One connection's life: from dialling to a failure, a stop, or its TTL.
    async fn session(&mut self, stop: &CancellationToken) -> Result<End, Failure> {
        let shared = self.shared.clone();
        let config = &shared.config;
        let Some(first) = self.connect(stop).await? else {
            return Ok(End::Stopped);
        };
        // Calls wait for the governors, which can take seconds in a large fleet: a stop
        // ends the wait (and the calls) rather than sit it out.
        // Boxed, as the connect and the polls are (see `connect`).
        let Some(stream) = stop.run_until_cancelled(Box::pin(self.open(&first))).await else {
            return Ok(End::Stopped);
        };
        let mut stream = stream?;
        self.breaker.success();
        self.backoff.reset();
        self.poll_problem = None;
        self.refresh();

        let recycle_at = first.retire_at;
        let mut next_poll = self.resume_poll.take().unwrap_or_else(|| {
            Instant::now() + schedule::first_poll(config.interval.0, &mut self.rng)
        });
        let mut connection = Some(first);
        // Absolute, not per wait: the loop wakes for polls far more often than the
        // stream is allowed to stay silent.
        let idle = config.stream_idle_timeout.0;
        let mut stream_deadline = Instant::now() + idle;
        // When the stream last said something (or was opened): a silence is a gap.
        let mut stream_heard = Utc::now().trunc_subsecs(3);
        loop {
            let waiting = !self.held.is_empty() || self.deferred;
            // Not `biased`: a poll that overruns its interval must not starve the
            // stream, nor a busy stream the polls.
            tokio::select! {
                _ = stop.cancelled() => return Ok(End::Stopped),
                _ = sleep_until(recycle_at), if stream.is_some() => {
                    self.resume_poll = Some(next_poll);
                    return Ok(End::Recycle);
                }
                _ = sleep_until(next_poll) => {
                    // Nothing in this loop waits for room downstream (answers are held
                    // instead), so a poll comes due late only after one that overran.
                    let late = self.completeness.late(
                        next_poll.elapsed(),
                        Overdue::Overrun,
                        &self.target,
                        &shared.stats,
                    );
                    if !late.is_empty() {
                        self.hold(late);
                    }
                    next_poll = Instant::now()
                        + schedule::next_poll(config.interval.0, config.jitter, &mut self.rng);
                    if !self.held.is_empty() {
                        // The last poll's answers still wait for room downstream.
                        shared.emitter.skipped_poll();
                        self.skipped();
                        continue;
                    }
                    let conn = match connection.take() {
                        Some(conn) => conn,
                        None => match self.unpark(stop).await? {
                            Some(conn) => conn,
                            None => return Ok(End::Stopped),
                        },
                    };
                    // A stop cuts the calls short (they may be queued behind the
                    // governors), not the queueing of answers already in.
                    let client = self.client(&conn);
                    let Some(asked) = stop.run_until_cancelled(Box::pin(self.ask(&client))).await else {
                        return Ok(End::Stopped);
                    };
                    match asked {
                        Some((answers, errors)) => {
                            if conn.channel.went_silent() {
                                return Err(self.keepalive_failure());
                            }
                            self.record(answers, errors)?;
                            self.refresh();
                        }
                        None => self.skipped(),
                    }
                    if stream.is_some() {
                        connection = Some(conn);
                    } else {
                        shared.pool.park(self.index, conn);
                    }
                }
                permit = shared.emitter.reserve(), if waiting => {
                    if let Some(permit) = permit {
                        match self.held.is_empty() {
                            false => permit.send(std::mem::take(&mut self.held)),
                            true => drop(permit),
                        }
                    }
                    if self.deferred && self.held.is_empty() {
                        self.deferred = false;
                        self.refresh();
                    }
                }
                // Always read, even with the pipeline full: an unread stream holds its
                // HTTP/2 window in buffers. Its messages are state: the latest applies.
                event = next_event(&mut stream, stream_deadline, idle) => match event {
                    StreamEvent::Status(status) => {
                        stream_deadline = Instant::now() + idle;
                        stream_heard = Utc::now().trunc_subsecs(3);
                        self.miner_status = Some(status);
                        self.refresh();
                    }
                    StreamEvent::Lost { code, why, silent } => {
                        shared.stats.stream_reopens.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::debug!(miner = %self.target.id, %why, "re-opening the status stream");
                        // Silent past its idle timeout: what it would have said is
                        // missing. (A stream that ended or failed goes with its
                        // connection; the polls' gaps say so.)
                        if silent {
                            self.hold(vec![silent_stream(&self.target, stream_heard, code, &why)]);
                        }
                        let Some(conn) = connection.as_ref() else {
                            return Err(Failure::Offline(code, why));
                        };
                        if conn.channel.went_silent() {
                            return Err(self.keepalive_failure());
                        }
                        let client = self.client(conn);
                        let Some(reopened) = stop.run_until_cancelled(Box::pin(client.status_stream())).await else {
                            return Ok(End::Stopped);
                        };
                        stream = Some(reopened.map_err(|e| self.failure(e))?);
                        stream_deadline = Instant::now() + idle;
                        stream_heard = Utc::now().trunc_subsecs(3);
                    }
                },
            }
        }
    }

    /// The polls due since a recycled connection closed, counted late (none if no
    /// recycle waits).
    fn count_resumed_late(&mut self) {
        if let Some(due) = self.resume_poll.take() {
            let late = self.completeness.late(
                due.elapsed(),
                Overdue::Overrun,
                &self.target,
                &self.shared.stats,
            );
            self.hold(late);
        }
    }

    /// A new connection's first calls: the API version, the login, and the status
    /// stream (when configured).
    async fn open(
        &self,
        connection: &Connection,
    ) -> Result<Option<Streaming<api::GetMinerStatusResponse>>, Failure> {
        // A poll-only miner's parked channel must be closable once evicted, so the
        // client (a clone of the channel) lives only for these calls.
        let client = self.client(connection);
        self.check_version(&client).await?;
        client.login().await.map_err(|e| self.failure(e))?;
        match self.shared.config.stream {
            true => Ok(Some(
                client.status_stream().await.map_err(|e| self.failure(e))?,
            )),
            false => Ok(None),
        }
    }

    /// A place under the connection cap, then a channel.
    ///
    /// Its future (TCP, TLS and HTTP/2 handshakes: about 11 KiB), a poll's (5 KiB), and
    /// the opening calls' (1.5 KiB) are boxed: a task's size is that of its largest
    /// await, kept for the task's whole life, so inline they cost every miner 13 KiB;
    /// boxed they exist only while under way. What stays inline is the wait of a
    /// session between polls (about 1.4 KB).
    async fn connect(&mut self, stop: &CancellationToken) -> Result<Option<Connection>, Failure> {
        Box::pin(self.connect_inline(stop)).await
    }

    async fn connect_inline(
        &mut self,
        stop: &CancellationToken,
    ) -> Result<Option<Connection>, Failure> {
        let shared = self.shared.clone();
        let Some(slot) = stop.run_until_cancelled(shared.pool.slot()).await else {
            return Ok(None);
        };
        let Some(dialled) = stop
            .run_until_cancelled(shared.dialer.dial(&self.target))
            .await
        else {
            return Ok(None);
        };
        match dialled {
            Ok(channel) => {
                let life = schedule::connection_life(shared.config.connection_ttl.0, &mut self.rng);
                Ok(Some(shared.pool.open(slot, channel, life)))
            }
            Err(e) => Err(Failure::Offline(e.status_code(), self.connect_message(&e))),
        }
    }

    /// A poll-only miner's parked connection, or a new one if it was evicted or is
    /// past its life. A retired one is closed first: it would hold its place under
    /// `max_connections` while the new one waits for a place.
    async fn unpark(&mut self, stop: &CancellationToken) -> Result<Option<Connection>, Failure> {
        let parked = self.shared.pool.take(self.index).filter(|c| !c.retired());
        match parked {
            Some(conn) => Ok(Some(conn)),
            None => self.connect(stop).await,
        }
    }

    fn client(&self, connection: &Connection) -> MinerClient {
        MinerClient {
            channel: connection.channel.clone(),
            auth: self.auth.clone(),
            miner_rpcs: self.rpcs.clone(),
            settings: self.shared.calls.clone(),
            reused: connection
                .served
                .swap(true, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Firmware before API 1.0 numbers fields differently; reading it would produce
    /// wrong values, so such miners are reported, not read.
    async fn check_version(&self, client: &MinerClient) -> Result<(), Failure> {
        match client.api_version().await {
            Ok(version) if version.major >= 1 => Ok(()),
            Ok(version) => Err(Failure::Unsupported(format!(
                "the firmware reports miner API {}.{}; rigtap needs API 1.0 or later (Braiins OS 23.08 or newer): upgrade the firmware, or remove the miner from `targets`",
                version.major, version.minor
            ))),
            Err(e) if e.code() == Code::Unimplemented => Err(Failure::Unsupported(
                "the miner has no API version service: firmware before Braiins OS 23.03 has no gRPC API; upgrade it, or remove the miner from `targets`".into(),
            )),
            Err(e) => Err(self.failure(e)),
        }
    }

    /// Makes the configured calls at once over the one channel. A poll with no room
    /// downstream is skipped (and counted, `None`) before any call is made.
    async fn ask(&self, client: &MinerClient) -> Option<(Answers, Vec<CallError>)> {
        let shared = &self.shared;
        if !shared.emitter.room_for_a_poll() {
            return None;
        }
        let wants = |poll: Poll| shared.config.polls.contains(&poll);
        let (details, stats, hashboards, cooling, pools) = tokio::join!(
            maybe(wants(Poll::Details), client.details()),
            maybe(wants(Poll::Stats), client.stats()),
            maybe(wants(Poll::Hashboards), client.hashboards()),
            maybe(wants(Poll::Cooling), client.cooling()),
            maybe(wants(Poll::Pools), client.pools()),
        );
        let mut errors: Vec<CallError> = Vec::new();
        let answers = Answers {
            details: keep(details, &mut errors),
            stats: keep(stats, &mut errors),
            hashboards: keep(hashboards, &mut errors),
            cooling: keep(cooling, &mut errors),
            pools: keep(pools, &mut errors),
        };
        Some((answers, errors))
    }

    /// Queues a poll's samples (held until there is room), then judges its errors: a
    /// refused login or nothing answered ends the session; some calls failing
    /// degrades it.
    fn record(&mut self, answers: Answers, mut errors: Vec<CallError>) -> Result<(), Failure> {
        let calls_answered = answers.answered();
        if let Some(recorder) = &self.shared.recorder {
            recorder.poll(&self.target.id, record::fields(&answers));
        }
        let at = Utc::now().trunc_subsecs(3);
        let produced = samples(&self.target, self.miner_status, &answers, at);
        let answered = !produced.is_empty();
        if answered {
            let gap = self.completeness.received(&self.target, &self.shared.stats);
            self.hold(gap);
        }
        self.hold(produced);

        if let Some(auth) = errors
            .iter()
            .position(|e| matches!(e, CallError::BadCredentials { .. }))
        {
            return Err(self.failure(errors.swap_remove(auth)));
        }
        let now = std::time::Instant::now();
        let outcomes = std::iter::repeat_n(false, calls_answered)
            .chain(errors.iter().map(CallError::transient));
        for failed in outcomes {
            if let Some((calls, failures)) = self.breaker.call(failed, now) {
                let last = errors
                    .iter()
                    .find(|e| e.transient())
                    .map_or_else(String::new, |e| format!("; the last: {e}"));
                return Err(Failure::Offline(StatusCode::BreakerOpen, format!(
                    "{failures} of the last {calls} calls failed, at least `breaker.failure_rate` of them{last}; no calls for {:?}, then a trial",
                    self.shared.config.breaker.open_for.0
                )));
            }
        }
        if !answered && !errors.is_empty() && errors.iter().all(CallError::transient) {
            return Err(self.failure(errors.swap_remove(0)));
        }
        self.poll_problem = errors.first().map(|first| {
            let calls: Vec<String> = errors.iter().map(ToString::to_string).collect();
            (
                first.status_code(),
                format!(
                    "some calls fail: {}; the other telemetry still flows",
                    calls.join("; ")
                ),
            )
        });
        Ok(())
    }

    /// Online, or degraded when a call fails or the miner reports it is not mining.
    /// With samples still held (the pipeline is full), the change waits: it is applied
    /// once they are gone, from the state then.
    fn refresh(&mut self) {
        if !self.held.is_empty() {
            self.deferred = true;
            let stats = &self.shared.stats;
            stats
                .status_deferred
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        let normal = api::MinerStatus::Normal as i32;
        let (state, code, message) = match (&self.poll_problem, self.miner_status) {
            (Some((code, problem)), _) => (MinerState::Degraded, *code, problem.clone()),
            (None, Some(status)) if status != normal => (
                MinerState::Degraded,
                StatusCode::NotMining,
                format!(
                    "the miner reports status {}; check its pools, power limits and tuner",
                    super::poll::status_name(status).unwrap_or_else(|| status.to_string())
                ),
            ),
            (None, _) => (
                MinerState::Online,
                StatusCode::Ok,
                "streaming and polling".to_string(),
            ),
        };
        self.enter(state, code, &message);
    }

    /// Moves to `state`; a change is queued as a status sample (held until there is
    /// room) and logged.
    fn enter(&mut self, state: MinerState, code: StatusCode, message: &str) {
        let shared = self.shared.clone();
        let change = (state, code, message);
        if let Some(sample) =
            self.status
                .change(change, &self.target, &shared.status_log, &shared.stats)
        {
            self.hold(vec![sample]);
        }
    }

    /// Queues `samples` now if there is room, else holds them (in order).
    /// A due poll not made: the pipeline is full.
    fn skipped(&mut self) {
        let why = "the poll was skipped: the pipeline was full (backpressure)";
        let gap =
            (self.completeness).missed(StatusCode::Skipped, why, &self.target, &self.shared.stats);
        self.held.extend(gap);
    }

    fn hold(&mut self, samples: Vec<Sample>) {
        self.held.extend(samples);
        self.shared.emitter.try_send(&mut self.held);
    }

    /// Waits for room, then queues what is held.
    async fn flush(&mut self) {
        let held = std::mem::take(&mut self.held);
        self.shared.emitter.send(held).await;
    }

    fn failure(&self, error: CallError) -> Failure {
        match error {
            CallError::BadCredentials { .. } => Failure::AuthFailed(format!(
                "{error}; check `username` and `password` for this miner (a firmware upgrade can reset them); next try in {:?}",
                self.shared.config.auth_retry.0
            )),
            // Logged in, then refused (a token the miner no longer takes, or a user
            // without the right to this call): not a miner that is down.
            error if matches!(error.code(), Code::Unauthenticated | Code::PermissionDenied) => {
                Failure::AuthFailed(format!(
                    "{error}; the miner accepted the login and refused the session: check that user's rights on the miner; next try in {:?}",
                    self.shared.config.auth_retry.0
                ))
            }
            error => {
                // TLS 1.3 clients finish their handshake before the miner checks their
                // certificate; a miner that wants one then closes the connection at the
                // first call, and the transport keeps no more than that.
                let tls = self.shared.config.tls.as_ref();
                let wants_certificate = tls.is_some_and(|t| t.cert_file.is_none())
                    && matches!(error.code(), Code::Cancelled | Code::Unknown);
                let problem = error.tls_problem().or(wants_certificate.then_some(TlsProblem::ClientCertificate));
                match problem {
                    Some(problem) => Failure::Offline(
                        StatusCode::TlsFailed,
                        format!("{error}; {}", problem.hint()),
                    ),
                    None => Failure::Offline(error.status_code(), format!(
                        "{error}; check that the miner at {} is up and its gRPC API answers",
                        self.target.address
                    )),
                }
            }
        }
    }

    /// The connection was closed because the miner left a keepalive ping unanswered.
    fn keepalive_failure(&self) -> Failure {
        let keepalive = &self.shared.config.keepalive;
        Failure::Offline(
            StatusCode::Timeout,
            format!(
                "the miner at {} answered no keepalive ping within {:?} (one every {:?}): it accepts connections but does not answer (hung, overloaded, or a link that drops packets)",
                self.target.address, keepalive.timeout.0, keepalive.interval.0
            ),
        )
    }

    fn connect_message(&self, error: &DialError) -> String {
        let hint = match error {
            DialError::Tls { problem, .. } => problem.hint(),
            DialError::Timeout(_) | DialError::Transport(_) => "check that the miner is powered, reachable from this host, and serves its gRPC API on that port",
        };
        format!("cannot connect to {}: {error}; {hint}", self.target.address)
    }
}

async fn maybe<T>(wanted: bool, call: impl std::future::Future<Output = T>) -> Option<T> {
    match wanted {
        true => Some(call.await),
        false => None,
    }
}

/// A call's answer, with its error (if any) set aside.
fn keep<T>(result: Option<Result<T, CallError>>, errors: &mut Vec<CallError>) -> Option<T> {
    match result? {
        Ok(answer) => Some(answer),
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

/// The next thing the status stream does, or `Lost` at `deadline`; never resolves
/// without a stream. Dropping it loses nothing (`Streaming::message` is cancel-safe).
async fn next_event(
    stream: &mut Option<Streaming<api::GetMinerStatusResponse>>,
    deadline: Instant,
    idle: Duration,
) -> StreamEvent {
    let Some(stream) = stream.as_mut() else {
        return std::future::pending().await;
    };
    match tokio::time::timeout_at(deadline, stream.message()).await {
        Ok(Ok(Some(message))) => StreamEvent::Status(message.status),
        Ok(Ok(None)) => StreamEvent::Lost {
            code: StatusCode::Unreachable,
            why: "the status stream ended".into(),
            silent: false,
        },
        Ok(Err(status)) => {
            let message = format!(
                "the status stream failed: {}: {}",
                status.code(),
                clipped(status.message())
            );
            let error = CallError::Status {
                method: Method::GetMinerStatus,
                status,
            };
            StreamEvent::Lost {
                code: error.status_code(),
                why: message,
                silent: false,
            }
        }
        Err(_) => StreamEvent::Lost {
            code: StatusCode::Timeout,
            why: format!("the status stream was silent for {idle:?}"),
            silent: true,
        },
    }
}

/// Sleeps for `wait`; true if the pipeline stopped meanwhile.
async fn stopped_during(wait: Duration, stop: &CancellationToken) -> bool {
    stop.run_until_cancelled(sleep(wait)).await.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toolkit::future_size::future_size;

    #[test]
    fn a_miner_task_holds_no_call_between_polls() {
        let task = future_size!(
            MinerTask::run,
            MinerTask,
            CancellationToken,
            CancellationToken
        );
        // The task's state and the wait between polls, about 1.5 KB. The connect, a
        // poll or the opening calls inline would add 1.5 to 11 KB to every miner.
        let bound = std::mem::size_of::<MinerTask>() + 2048;
        assert!(task < bound, "{task} bytes, over {bound}");
    }
}
