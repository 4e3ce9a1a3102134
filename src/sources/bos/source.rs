//! The fleet's loop: one task per miner, sharing the pool, the governors and one
//! queue to the pipeline; drained in order when the pipeline stops.

use std::num::NonZeroU32;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use std::time::Duration;

use governor::Quota;
use tokio_util::task::TaskTracker;

use super::client::{CallSettings, Credentials};
use super::config::{BosConfig, Compression};
use super::connect::Dialer;
use super::emit::{self, Emitter};
use super::fair_rate::FairRateLimiter;
use super::miner::{MinerTask, Shared};
use super::pool::ConnectionPool;
use super::stats::PoolStats;
use super::status::StatusLog;
use super::tls;
use crate::pipeline::component::{ComponentResult, SourceConfig, SourceContext, Started};
use crate::toolkit::panic;
use crate::toolkit::sample::MinerState;
use crate::toolkit::secret::Secret;

/// A miner's task panicked: a bug, which fails the source.
#[derive(Debug, thiserror::Error)]
#[error("the task of miner `{miner}` panicked: {message}")]
struct MinerPanicked {
    miner: Arc<str>,
    message: String,
}

impl SourceConfig for BosConfig {
    fn start(self: Box<Self>, ctx: SourceContext) -> Started {
        let stats = Arc::new(PoolStats::default());
        Started::task(run(*self, ctx, stats.clone())).publishing(stats)
    }
}

/// Runs every miner task until the pipeline stops, then drains what they queued;
/// `stats` is where the pool's state is kept for the operator.
pub async fn run(
    config: BosConfig,
    mut ctx: SourceContext,
    stats: Arc<PoolStats>,
) -> ComponentResult {
    let targets = config.miners()?;
    let password = match (&config.password, &config.password_file) {
        (Some(password), _) => password.clone(),
        (None, Some(path)) => Secret::from_file(path)?,
        (None, None) => unreachable!("config checks require one of them"),
    };
    let tls = config.tls.as_ref().map(tls::client_config).transpose()?;
    stats.miners.store(targets.len() as u64, Relaxed);
    let needed = targets.len() as u64 + 64;
    if let Some(limit) = crate::toolkit::limits::open_files_short_of(needed) {
        tracing::warn!(source = %ctx.id, miners = targets.len(), needed, limit, "the open-file limit is too low for this fleet: miners beyond it will fail to connect. Raise it (`ulimit -n`, or LimitNOFILE in a systemd unit) or split the fleet with `shard`");
    }
    let demand = targets.len() as f64 * config.polls.len() as f64 / config.interval.0.as_secs_f64();
    if demand > 0.8 * f64::from(config.rate.rpcs_per_second) {
        tracing::warn!(
            source = %ctx.id,
            calls_per_second = demand.round(),
            rpcs_per_second = config.rate.rpcs_per_second,
            "the fleet's polls need most or more of `rate.rpcs_per_second`; polls will run late. Raise it, lengthen `interval`, or poll fewer calls"
        );
    }
    tracing::info!(source = %ctx.id, miners = targets.len(), shard = ?config.shard, "bos source starting");

    let per_second = |n: u32| Quota::per_second(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
    // Connections are admitted one at a time (a burst of 1), so no second ever sees
    // more than `connects_per_second` of them, even right after a quiet spell.
    let connects = Arc::new(FairRateLimiter::new(
        per_second(config.rate.connects_per_second).allow_burst(NonZeroU32::MIN),
    ));
    let (emitter, queue) = Emitter::new(stats.clone());
    let status_log = Arc::new(StatusLog::default());
    let shared = Arc::new(Shared {
        calls: Arc::new(CallSettings {
            credentials: Credentials {
                username: config.username.clone(),
                password,
            },
            gzip: config.compression == Compression::Gzip,
            timeout: config.timeout.0,
            fleet_rpcs: FairRateLimiter::new(per_second(config.rate.rpcs_per_second)),
            stats: stats.clone(),
        }),
        dialer: Dialer::new(&config, tls, connects, stats.clone()),
        pool: ConnectionPool::new(config.max_connections, stats.clone()),
        emitter,
        stats: stats.clone(),
        status_log: status_log.clone(),
        config,
    });

    let tasks = TaskTracker::new();
    // A miner task that panics stops the whole source (a panic is a bug, and the
    // source is failed), which drains what the other miners queued, in order.
    let stop = ctx.stop.child_token();
    let panicked = Arc::new(Mutex::new(None));
    for (index, target) in targets.into_iter().enumerate() {
        let miner = target.id.clone();
        let task = MinerTask::new(index, target, shared.clone());
        let (stop, panicked) = (stop.clone(), panicked.clone());
        tasks.spawn(async move {
            let run = std::panic::AssertUnwindSafe(task.run(stop.clone()));
            if let Err(payload) = run.catch_unwind().await {
                let message = panic::message(payload.as_ref());
                let mut first = panicked.lock().unwrap_or_else(|e| e.into_inner());
                first.get_or_insert(MinerPanicked { miner, message });
                stop.cancel();
            }
        });
    }
    // Only poll-only miners park channels; streaming miners hold theirs.
    if !shared.config.stream {
        tasks.spawn(close_idle(shared.clone(), stop.clone()));
    }
    tasks.close();
    let batch_size = shared.config.batch_size;
    // The queue closes once every task (each holding `shared`) has returned.
    drop(shared);
    emit::forward(queue, &mut ctx.out, &ctx.budget, batch_size).await;
    tasks.wait().await;

    tracing::info!(
        source = %ctx.id,
        miners = stats.miners.load(Relaxed),
        online = stats.in_state(MinerState::Online),
        degraded = stats.in_state(MinerState::Degraded),
        offline = stats.in_state(MinerState::Offline),
        auth_failed = stats.in_state(MinerState::AuthFailed),
        unsupported = stats.in_state(MinerState::Unsupported),
        connect_attempts = stats.connect_attempts.load(Relaxed),
        rpc_ok = stats.rpc_ok(),
        rpc_failed = stats.rpc_failed(),
        rpc_p50_ms = stats.latency_quantile_ms(0.5),
        rpc_p99_ms = stats.latency_quantile_ms(0.99),
        polls_skipped = stats.polls_skipped.load(Relaxed),
        stream_reopens = stats.stream_reopens.load(Relaxed),
        logs_suppressed = status_log.suppressed(),
        "bos source finished"
    );
    let panicked = panicked.lock().unwrap_or_else(|e| e.into_inner()).take();
    match panicked {
        Some(panicked) => Err(panicked.into()),
        None => Ok(()),
    }
}

/// Closes parked poll-only connections that sat idle past `idle_timeout`.
async fn close_idle(shared: Arc<Shared>, stop: tokio_util::sync::CancellationToken) {
    let idle_timeout = shared.config.idle_timeout.0;
    let every = (idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => shared.pool.close_idle(idle_timeout),
        }
    }
}
