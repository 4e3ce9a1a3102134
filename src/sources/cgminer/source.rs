//! The fleet's loop for stock firmware: one task per miner asks its commands each
//! interval, one short connection per command and never two at once (many of these
//! firmwares serve one client at a time), behind the fleet-wide connect governor; it
//! backs off on failure behind the same breaker as `bos`, and every change of state is
//! a status sample with its code.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use tokio::time::{sleep, sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::Code;

use super::config::{CgminerConfig, Command};
use super::dialect::{samples, Answers};
use super::wire::{exchange, WireError};
use crate::fleet::backoff::Backoff;
use crate::fleet::breaker::Breaker;
use crate::fleet::completeness::{Completeness, Overdue};
use crate::fleet::emit::{self, Emitter};
use crate::fleet::fair_rate::FairRateLimiter;
use crate::fleet::record::Recorder;
use crate::fleet::schedule;
use crate::fleet::stats::{BackoffKind, GaugeGuard, Method, PoolStats};
use crate::fleet::status::{MinerStatus, StatusLog};
use crate::fleet::targets::Target;
use crate::pipeline::component::{
    offered, ComponentResult, Offer, Reconfigure, SourceConfig, SourceContext, Started,
};
use crate::toolkit::sample::{MinerState, Sample, StatusCode};

impl SourceConfig for CgminerConfig {
    fn start(self: Box<Self>, ctx: SourceContext) -> Started {
        let stats = ctx.kept.get::<PoolStats>();
        let running = Arc::new(Running {
            miners: self.miners().ok(),
            config: (*self).clone(),
        });
        Started::task(run(*self, ctx, stats.clone()))
            .publishing(stats)
            .reconfigurable(running)
    }
}

/// What a reload compares a new config with: the running one, and its miners. A
/// config that reads the same may name an inventory whose rows changed.
struct Running {
    config: CgminerConfig,
    miners: Option<Vec<Target>>,
}

impl Reconfigure for Running {
    /// Keeps the source running when its config and its miners are unchanged; else it
    /// is restarted with the new ones (its counters carry on).
    fn offer(&self, new: Box<dyn SourceConfig>) -> Offer {
        let new = offered::<CgminerConfig>(new);
        let same = *new == self.config && new.miners().ok() == self.miners;
        Box::pin(std::future::ready(match same {
            true => Ok(None),
            false => Err(new as Box<dyn SourceConfig>),
        }))
    }
}

/// What every miner task shares.
struct Shared {
    config: CgminerConfig,
    connects: FairRateLimiter,
    emitter: Emitter,
    stats: Arc<PoolStats>,
    log: StatusLog,
    /// With `record:`, where each poll's answers go.
    recorder: Option<Recorder>,
}

async fn run(
    config: CgminerConfig,
    mut ctx: SourceContext,
    stats: Arc<PoolStats>,
) -> ComponentResult {
    let targets = config.miners()?;
    let recorder = config
        .record
        .as_ref()
        .map(|record| Recorder::create(record, &ctx.id.to_string()))
        .transpose()?;
    // The counters carry on across a restart; the states are this run's miners'.
    stats.reset_states();
    stats.miners.store(targets.len() as u64, Relaxed);
    if targets.is_empty() {
        tracing::warn!(source = %ctx.id, "this source holds no miners (the inventory's `api` column gives them all to other sources, or its shard is empty); it collects nothing");
        // Idle rather than finished: a source that ends would end a pipeline of one.
        ctx.stop.cancelled().await;
        return Ok(());
    }
    tracing::info!(source = %ctx.id, miners = targets.len(), "cgminer source starting");
    let (emitter, queue) = Emitter::new(stats.clone());
    let batch_size = config.batch_size;
    let shared = Arc::new(Shared {
        connects: FairRateLimiter::new(config.connects, Duration::ZERO),
        config,
        emitter,
        stats: stats.clone(),
        log: StatusLog::default(),
        recorder,
    });
    let tasks = TaskTracker::new();
    let stop = ctx.stop.child_token();
    for (index, target) in targets.into_iter().enumerate() {
        tasks.spawn(miner(index, target, shared.clone(), stop.clone()));
    }
    tasks.close();
    drop(shared);
    tokio::join!(
        emit::forward(queue, &mut ctx.out, &ctx.budget, batch_size),
        tasks.wait()
    );
    tracing::info!(
        source = %ctx.id,
        online = stats.in_state(MinerState::Online),
        degraded = stats.in_state(MinerState::Degraded),
        offline = stats.in_state(MinerState::Offline),
        connect_attempts = stats.connect_attempts.load(Relaxed),
        polls_skipped = stats.polls_skipped.load(Relaxed),
        polls_expected = stats.polls_expected.load(Relaxed),
        polls_received = stats.polls_received.load(Relaxed),
        polls_missed = stats.polls_missed.load(Relaxed),
        polls_late = stats.polls_late.load(Relaxed),
        "cgminer source finished"
    );
    Ok(())
}

/// What one poll found wrong, for the miner's state.
struct Problem {
    code: StatusCode,
    message: String,
}

/// A command a firmware refused as unknown is asked again after this long (a firmware
/// upgrade may add it).
const REFUSED_FOR: Duration = Duration::from_secs(3600);

/// One miner, until `stop`.
async fn miner(index: usize, target: Target, shared: Arc<Shared>, stop: CancellationToken) {
    let config = &shared.config;
    let stats = &shared.stats;
    let mut status = MinerStatus::default();
    let mut breaker = Breaker::new(config.breaker.clone());
    let mut backoff = Backoff::new(config.backoff.clone(), index as u64);
    let mut rng = fastrand::Rng::with_seed(index as u64);
    // Commands the firmware does not know, and since when.
    let mut refused: HashMap<Command, Instant> = HashMap::new();
    // The polls it owed and what arrived; a gap found while skipping waits here for
    // the next samples.
    let mut completeness = Completeness::new(config.interval.0);
    let mut owed: Vec<Sample> = Vec::new();
    let enter = |status: &mut MinerStatus, state, code, message: &str| {
        status.change((state, code, message), &target, &shared.log, stats)
    };
    let greeting = format!("asking {} over the CGMiner API", target.address);
    if let Some(sample) = enter(
        &mut status,
        MinerState::Connecting,
        StatusCode::Connecting,
        &greeting,
    ) {
        shared.emitter.send(vec![sample]).await;
    }
    let mut next = Instant::now() + schedule::first_poll(config.interval.0, &mut rng);
    // How long the last poll's samples waited for room downstream.
    let mut held_back = Duration::ZERO;
    loop {
        if let Some(wait) = breaker.wait(std::time::Instant::now()) {
            let _open = GaugeGuard::up(&stats.breaker_open);
            if stop.run_until_cancelled(sleep(wait)).await.is_none() {
                break;
            }
        }
        if stop.run_until_cancelled(sleep_until(next)).await.is_none() {
            break;
        }
        // Of the lateness, what the samples' wait for room caused is backpressure
        // (`skipped`); the rest is the poll's own overrun (`late`).
        let late = next.elapsed();
        let waited = std::mem::take(&mut held_back).min(late);
        owed.extend(completeness.late(waited, Overdue::HeldBack, &target, stats));
        owed.extend(completeness.late(late - waited, Overdue::Overrun, &target, stats));
        next = Instant::now() + schedule::next_poll(config.interval.0, config.jitter, &mut rng);
        if !shared.emitter.room_for_a_poll() {
            let why = "the poll was skipped: the pipeline was full (backpressure)";
            owed.extend(completeness.missed(StatusCode::Skipped, why, &target, stats));
            continue;
        }
        refused.retain(|_, since| since.elapsed() < REFUSED_FOR);
        // Boxed: its future holds a whole answer's buffer (about 9 KB), which inline
        // would stay in every miner's task between polls.
        let Some(polled) = stop
            .run_until_cancelled(Box::pin(poll(&target, &shared, &mut refused)))
            .await
        else {
            break;
        };
        let mut out = std::mem::take(&mut owed);
        let mut delay = None;
        match polled {
            Ok((answers, problem)) => {
                breaker.success();
                backoff.reset();
                out.extend(completeness.received(&target, stats));
                out.extend(samples(&target, &answers, Utc::now().trunc_subsecs(3)));
                let (state, code, message) = match problem {
                    Some(p) => (MinerState::Degraded, p.code, p.message),
                    None => (MinerState::Online, StatusCode::Ok, "polling".to_string()),
                };
                out.extend(enter(&mut status, state, code, &message));
            }
            Err(problem) if problem.code == StatusCode::UnsupportedFirmware => {
                out.extend(completeness.missed(problem.code, &problem.message, &target, stats));
                out.extend(enter(
                    &mut status,
                    MinerState::Unsupported,
                    problem.code,
                    &problem.message,
                ));
            }
            Err(problem) => {
                breaker.failure(std::time::Instant::now());
                let wait = backoff.next_delay();
                stats.backoff(BackoffKind::Reconnect, wait);
                delay = Some(wait);
                let message = format!("{}; check that the miner is powered, reachable from this host, and serves its API on that port", problem.message);
                out.extend(completeness.missed(problem.code, &message, &target, stats));
                out.extend(completeness.down(problem.code, &message, &target, stats));
                out.extend(enter(
                    &mut status,
                    MinerState::Offline,
                    problem.code,
                    &message,
                ));
            }
        }
        // Timed only when there is no room: a send that goes at once waits for nothing.
        shared.emitter.try_send(&mut out);
        if !out.is_empty() {
            let waiting = Instant::now();
            shared.emitter.send(out).await;
            held_back = waiting.elapsed();
        }
        if let Some(delay) = delay {
            let _waiting = GaugeGuard::up(&stats.in_backoff);
            if stop.run_until_cancelled(sleep(delay)).await.is_none() {
                break;
            }
            next = next.max(Instant::now());
        }
    }
    // Stopped during a poll that overran: the polls due meanwhile were not made.
    owed.extend(completeness.late(next.elapsed(), Overdue::Overrun, &target, stats));
    owed.extend(status.held_back(&target));
    owed.extend(completeness.close(&target, stats));
    shared.emitter.send(owed).await;
}

/// Asks the miner's commands in turn (or at once, combined): the answers, and what
/// failed if only some did; an error when none answered, or when the firmware knows
/// none of the commands.
async fn poll(
    target: &Target,
    shared: &Shared,
    refused: &mut HashMap<Command, Instant>,
) -> Result<(Answers, Option<Problem>), Problem> {
    let config = &shared.config;
    let wanted: Vec<Command> = config
        .commands
        .iter()
        .copied()
        .filter(|c| !refused.contains_key(c))
        .collect();
    if wanted.is_empty() {
        let names: Vec<&str> = config.commands.iter().map(|c| c.as_str()).collect();
        return Err(Problem {
            code: StatusCode::UnsupportedFirmware,
            message: format!(
                "the firmware knows none of the commands asked ({}); list the ones it serves under `commands`",
                names.join(", ")
            ),
        });
    }
    let asks: Vec<(Vec<Command>, String)> = match config.combine {
        true => vec![(
            wanted.clone(),
            wanted
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join("+"),
        )],
        false => wanted
            .iter()
            .map(|c| (vec![*c], c.as_str().to_string()))
            .collect(),
    };
    let max = usize::try_from(config.max_answer_size.0).unwrap_or(usize::MAX);
    let mut answers = Answers::default();
    let (mut answered, mut failures) = (0, Vec::new());
    let mut recorded = serde_json::Map::new();
    for (commands, text) in asks {
        shared.connects.until_ready().await;
        shared.stats.connect_attempts.fetch_add(1, Relaxed);
        let started = std::time::Instant::now();
        let result = match exchange(&target.address, &text, config.timeout.0, max).await {
            Ok(reply) => {
                if shared.recorder.is_some() {
                    let raw = String::from_utf8_lossy(&reply.raw).into_owned();
                    recorded.insert(text.clone(), raw.into());
                }
                reply.answer
            }
            Err(e) => Err(e),
        };
        let code = match &result {
            Ok(_) => Code::Ok,
            Err(e) => grpc_code(e),
        };
        for command in &commands {
            shared
                .stats
                .rpc(method(*command), code, started.elapsed(), false);
        }
        match result {
            Ok(answer) => {
                answered += 1;
                answers.add(&answer);
            }
            // A command this firmware does not know: not asked again for a while.
            // (Other refusals, "no pools" or no devices while it boots, are failures.)
            Err(e) if commands.len() == 1 && e.unknown_command() => {
                refused.insert(commands[0], Instant::now());
            }
            // Nothing answered the first ask (no connection, or silence to the end of
            // the timeout): the rest would wait as long, each. One poll of a dead
            // miner took four timeouts.
            Err(e) if answered == 0 && failures.is_empty() && e.unreachable() => {
                failures.push((text, e));
                break;
            }
            Err(e) => failures.push((text, e)),
        }
    }
    if let (Some(recorder), false) = (&shared.recorder, recorded.is_empty()) {
        let mut fields = serde_json::Map::with_capacity(1);
        fields.insert("cgminer".into(), recorded.into());
        recorder.poll(&target.id, fields);
    }
    let problem = |failures: &[(String, WireError)]| {
        let (_, first) = &failures[0];
        Problem {
            code: status_code(first),
            message: failures
                .iter()
                .map(|(command, e)| format!("{command}: {e}"))
                .collect::<Vec<_>>()
                .join("; "),
        }
    };
    match (answered, failures.is_empty()) {
        (_, true) => Ok((answers, None)),
        (0, false) => Err(problem(&failures)),
        (_, false) => Ok((answers, Some(problem(&failures)))),
    }
}

fn method(command: Command) -> Method {
    match command {
        Command::Summary => Method::Summary,
        Command::Stats | Command::Estats => Method::Stats,
        Command::Edevs | Command::Devs => Method::Devs,
        Command::Pools => Method::Pools,
    }
}

/// The gRPC-style code the source's call counters use for a command's outcome.
fn grpc_code(error: &WireError) -> Code {
    match error {
        WireError::Connect(_) | WireError::Io(_) => Code::Unavailable,
        WireError::Timeout(_) => Code::DeadlineExceeded,
        WireError::TooLarge(_) => Code::OutOfRange,
        WireError::Json(_) => Code::DataLoss,
        WireError::Refused { .. } => Code::Unimplemented,
    }
}

fn status_code(error: &WireError) -> StatusCode {
    match error {
        WireError::Connect(_) | WireError::Io(_) => StatusCode::Unreachable,
        WireError::Timeout(_) => StatusCode::Timeout,
        WireError::TooLarge(_) | WireError::Json(_) => StatusCode::BadAnswer,
        WireError::Refused { .. } => StatusCode::MinerError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toolkit::future_size::future_size;

    #[test]
    fn a_miner_task_holds_no_answer_buffer_between_polls() {
        let task = future_size!(miner, usize, Target, Arc<Shared>, CancellationToken);
        // With its poll inline, a stock miner's task was 18.9 KB, all the time.
        assert!(task < 4096, "{task} bytes");
    }
}
