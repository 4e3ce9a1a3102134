//! The fleet's loop: one task per miner, sharing the pool, the governors and one
//! queue to the pipeline; drained in order when the pipeline stops.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use tokio_util::task::TaskTracker;

use super::answer_memory::AnswerMemory;
use super::client::{CallSettings, Credentials};
use super::config::{BosConfig, Compression};
use super::connect::Dialer;
use super::miner::{MinerTask, Shared};
use super::pool::ConnectionPool;
use super::tls;
use crate::fleet::emit::{self, Emitter};
use crate::fleet::fair_rate::{FairRateLimiter, CALL_BURST};
use crate::fleet::record::Recorder;
use crate::fleet::stats::{Governors, PoolStats};
use crate::fleet::status::StatusLog;
use crate::fleet::targets::Target;
use crate::pipeline::component::{
    offered, ComponentResult, Offer, Reconfigure, SourceConfig, SourceContext, Started,
};
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
        // The pool's counters carry on when a reload restarts the source.
        let stats = ctx.kept.get::<PoolStats>();
        let (commands, rx) = mpsc::channel(1);
        let handle = Arc::new(Handle {
            current: Arc::new(Mutex::new((*self).clone())),
            commands,
        });
        Started::task(run_with(*self, ctx, stats.clone(), Some(rx)))
            .publishing(stats)
            .reconfigurable(handle)
    }
}

/// A change a reload asks of the running source: these are its miners now; the
/// reply says how many were added and removed.
type Retarget = (Vec<Target>, oneshot::Sender<(usize, usize)>);

/// How a reload reaches a running `bos` source.
struct Handle {
    current: Arc<Mutex<BosConfig>>,
    commands: mpsc::Sender<Retarget>,
}

impl Reconfigure for Handle {
    /// Takes the new config as it runs when only the targets (or the shard) changed:
    /// only the new miners connect and only the removed ones close. Anything else
    /// needs a restart.
    fn offer(&self, new: Box<dyn SourceConfig>) -> Offer {
        let new = offered::<BosConfig>(new);
        let current = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut same = (*new).clone();
        same.targets = current.targets.clone();
        same.shard = current.shard;
        let commands = self.commands.clone();
        let miners = (same == current).then(|| new.miners().ok()).flatten();
        let handle_current = new.clone();
        let applied = async move {
            let Some(miners) = miners else {
                return Err(new as Box<dyn SourceConfig>);
            };
            let (reply, answer) = oneshot::channel();
            if commands.send((miners, reply)).await.is_err() {
                return Err(new as Box<dyn SourceConfig>);
            }
            match answer.await {
                Ok((0, 0)) => Ok(None),
                Ok((added, removed)) => {
                    Ok(Some(format!("{added} miner(s) added, {removed} removed")))
                }
                Err(_) => Err(new as Box<dyn SourceConfig>),
            }
        };
        let current = self.current.clone();
        Box::pin(async move {
            let outcome = applied.await;
            if outcome.is_ok() {
                *current.lock().unwrap_or_else(|e| e.into_inner()) = *handle_current;
            }
            outcome
        })
    }
}

/// Runs every miner task until the pipeline stops, then drains what they queued;
/// `stats` is where the pool's state is kept for the operator.
pub async fn run(config: BosConfig, ctx: SourceContext, stats: Arc<PoolStats>) -> ComponentResult {
    run_with(config, ctx, stats, None).await
}

/// [`run`], with the reloads' requests to change the miners.
async fn run_with(
    config: BosConfig,
    mut ctx: SourceContext,
    stats: Arc<PoolStats>,
    retargets: Option<mpsc::Receiver<Retarget>>,
) -> ComponentResult {
    let targets = config.miners()?;
    let password = match (&config.password, &config.password_file) {
        (Some(password), _) => password.clone(),
        (None, Some(path)) => Secret::from_file(path)?,
        (None, None) => unreachable!("config checks require one of them"),
    };
    let tls = config.tls.as_ref().map(tls::client_config).transpose()?;
    let recorder = config
        .record
        .as_ref()
        .map(|record| Recorder::create(record, &ctx.id.to_string()))
        .transpose()?;
    // The counters carry on across a restart; the states are this run's miners'.
    stats.reset_states();
    stats.miners.store(targets.len() as u64, Relaxed);
    let needed = targets.len() as u64 + 64;
    if let Some(limit) = crate::toolkit::limits::open_files_short_of(needed) {
        tracing::warn!(source = %ctx.id, miners = targets.len(), needed, limit, "the open-file limit is too low for this fleet: miners beyond it will fail to connect. Raise it (`ulimit -n`, or LimitNOFILE in a systemd unit) or split the fleet with `shard`");
    }
    let demand = targets.len() as f64 * config.polls.len() as f64 / config.interval.0.as_secs_f64();
    if demand > 0.8 * config.rate.rpcs.as_per_second() {
        tracing::warn!(
            source = %ctx.id,
            calls_per_second = demand.round(),
            rpcs = %config.rate.rpcs,
            "the fleet's polls need most or more of `rate.rpcs`; polls will run late. Raise it, lengthen `interval`, or poll fewer calls"
        );
    }
    if targets.is_empty() {
        tracing::warn!(source = %ctx.id, shard = ?config.shard, "this agent's shard holds none of the fleet's miners; it collects nothing until a reload gives it some");
    }
    tracing::info!(source = %ctx.id, miners = targets.len(), shard = ?config.shard, "bos source starting");

    // Connections are admitted one at a time (a burst of 1), so no second ever sees
    // more than `rate.connects` of them, even right after a quiet spell.
    let connects = Arc::new(FairRateLimiter::new(config.rate.connects, Duration::ZERO));
    let fleet_rpcs = Arc::new(FairRateLimiter::new(config.rate.rpcs, CALL_BURST));
    stats.set_governors(Governors {
        connects: connects.clone(),
        rpcs: fleet_rpcs.clone(),
    });
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
            retry: config.retry.clone(),
            // Within usize on every platform rigtap builds for: at most 1 GiB (checked).
            max_message_size: usize::try_from(config.max_message_size.0).unwrap_or(usize::MAX),
            fleet_rpcs,
            stats: stats.clone(),
        }),
        dialer: Dialer::new(
            &config,
            tls,
            connects,
            stats.clone(),
            AnswerMemory::new(
                ctx.budget.clone(),
                usize::try_from(config.max_message_size.0).unwrap_or(usize::MAX),
                stats.clone(),
            ),
        ),
        pool: ConnectionPool::new(config.max_connections, stats.clone()),
        emitter,
        stats: stats.clone(),
        status_log: status_log.clone(),
        recorder,
        config,
    });

    // A miner task that panics stops the whole source (a panic is a bug, and the
    // source is failed), which drains what the other miners queued, in order.
    let stop = ctx.stop.child_token();
    let batch_size = shared.config.batch_size;
    let mut miners = Miners {
        tasks: TaskTracker::new(),
        running: HashMap::new(),
        next_index: 0,
        stop: stop.clone(),
        panicked: Arc::new(Mutex::new(None)),
        shared,
    };
    miners.update(targets);
    // Only poll-only miners park channels; streaming miners hold theirs. An
    // `idle_timeout` of zero keeps parked channels until the cap evicts them.
    if !miners.shared.config.stream && !miners.shared.config.idle_timeout.0.is_zero() {
        let shared = miners.shared.clone();
        miners.tasks.spawn(close_idle(shared, stop.clone()));
    }
    let panicked = miners.panicked.clone();
    let managing = async move {
        if let Some(mut retargets) = retargets {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    retarget = retargets.recv() => match retarget {
                        Some((targets, reply)) => {
                            let _ = reply.send(miners.update(targets));
                        }
                        None => {
                            stop.cancelled().await;
                            break;
                        }
                    },
                }
            }
        }
        // The queue closes once every task (each holding `shared`) has returned.
        miners.tasks.close();
        let tasks = miners.tasks.clone();
        drop(miners);
        tasks.wait().await;
    };
    tokio::join!(
        emit::forward(queue, &mut ctx.out, &ctx.budget, batch_size),
        managing
    );

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
        polls_expected = stats.polls_expected.load(Relaxed),
        polls_received = stats.polls_received.load(Relaxed),
        polls_missed = stats.polls_missed.load(Relaxed),
        polls_late = stats.polls_late.load(Relaxed),
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

/// The source's miners, each with its task; a reload adds and removes them.
struct Miners {
    shared: Arc<Shared>,
    tasks: TaskTracker,
    /// Each running miner's target, and how to remove it.
    running: HashMap<Arc<str>, (Target, Removal)>,
    /// Miner tasks are numbered for their seeds and their place in the pool.
    next_index: usize,
    stop: CancellationToken,
    panicked: Arc<Mutex<Option<MinerPanicked>>>,
}

impl Miners {
    /// Makes `targets` the running miners: starts the new ones, stops the removed
    /// ones, restarts those whose address or labels changed; returns (added, removed).
    fn update(&mut self, targets: Vec<Target>) -> (usize, usize) {
        let wanted: HashMap<Arc<str>, Target> =
            targets.into_iter().map(|t| (t.id.clone(), t)).collect();
        let gone: Vec<Arc<str>> = self
            .running
            .iter()
            .filter(|(id, (target, _))| wanted.get(*id) != Some(target))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            if let Some((_, removal)) = self.running.remove(id) {
                removal.remove();
            }
        }
        let mut added = 0;
        for (id, target) in wanted {
            if !self.running.contains_key(&id) {
                self.start(target);
                added += 1;
            }
        }
        self.shared
            .stats
            .miners
            .store(self.running.len() as u64, Relaxed);
        (added, gone.len())
    }

    fn start(&mut self, target: Target) {
        let index = self.next_index;
        self.next_index += 1;
        let miner = target.id.clone();
        // The miner stops when the source stops, or when a reload removes it.
        let miner_stop = self.stop.child_token();
        let removed = CancellationToken::new();
        let removal = Removal {
            stop: miner_stop.clone(),
            removed: removed.clone(),
        };
        self.running
            .insert(miner.clone(), (target.clone(), removal));
        let task = MinerTask::new(index, target, self.shared.clone());
        let (stop, panicked) = (self.stop.clone(), self.panicked.clone());
        // Combinators, not an `async move` block, which would hold the task twice: as
        // captured, and in the future it is moved into.
        let run = std::panic::AssertUnwindSafe(task.run(miner_stop, removed));
        self.tasks.spawn(run.catch_unwind().map(move |ran| {
            if let Err(payload) = ran {
                let message = panic::message(payload.as_ref());
                let mut first = panicked.lock().unwrap_or_else(|e| e.into_inner());
                first.get_or_insert(MinerPanicked { miner, message });
                stop.cancel();
            }
        }));
    }
}

/// How a reload removes one miner: it stops, and knows it was removed (so it leaves
/// the pool's counts).
struct Removal {
    stop: CancellationToken,
    removed: CancellationToken,
}

impl Removal {
    fn remove(&self) {
        self.removed.cancel();
        self.stop.cancel();
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
