//! `rigtap run`: the embedded fleet (if any), the pipeline, and what the operator
//! watches and drives it with (the API, the health watch, the progress line, the
//! service manager), started together, reloaded on request, and stopped in order.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::api::{self, ApiState};
use super::api_config::ApiConfig;
use super::config::{self, AgentConfig};
use super::health::HealthWatch;
use super::metrics;
use super::progress::{self, ProgressMode};
use super::reload::{Reload, ReloadCounts};
use super::service::ServiceManager;
use super::signals::{self, Signals};
use crate::sim::embedded::EmbeddedSim;
use crate::sim::Fleet;
use crate::toolkit::yaml::diagnostic::ConfigError;
use crate::topology::running::{Changes, Ended, Running};

/// How long the API's open connections get to finish once the pipeline has stopped.
const OPERATOR_GRACE: Duration = Duration::from_secs(5);

/// How often `--watch` looks at the config file.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Drained and stopped in order.
    Done,
    /// A component (or the embedded fleet) failed.
    Failed,
    /// A second signal abandoned what was still in flight.
    Abandoned,
}

/// What `rigtap run` was asked for beside the config.
pub struct RunOptions {
    pub duration: Option<Duration>,
    pub progress: ProgressMode,
    /// Reload when the config file changes.
    pub watch: bool,
}

/// Runs `config` (read from `path`) until a signal, the end of the duration, a
/// component's request to stop, or the end of every source; reloads `path` on SIGHUP,
/// `POST /reload` or (with `watch`) a change of the file; then stops in order. A
/// second signal abandons the rest.
pub async fn run(
    path: &Path,
    config: AgentConfig,
    signals: &mut Signals,
    options: RunOptions,
) -> Outcome {
    tracing::info!(summary = %config, "pipeline starting");
    let fleet = match &config.simulator {
        None => None,
        Some(simulator) => match Fleet::start(simulator.sim_config()).await {
            Ok(fleet) => {
                tracing::info!(miners = fleet.len(), first = %simulator.first, "embedded simulator serving");
                Some(fleet)
            }
            Err(e) => {
                tracing::error!("embedded simulator: {e}");
                return Outcome::Failed;
            }
        },
    };
    let service = Arc::new(ServiceManager::from_env());
    let mut running = Running::start(config.pipeline);
    let (reloads, mut requests) = mpsc::channel(8);
    let counts = Arc::new(ReloadCounts::default());
    let operator = CancellationToken::new();
    let operator_tasks = serve_operator(
        &config.api,
        &running,
        &options,
        Operator {
            stop: operator.clone(),
            reloads: reloads.clone(),
            counts: counts.clone(),
            service: service.clone(),
        },
    )
    .await;
    if options.watch {
        let path = path.to_owned();
        operator_tasks.spawn(
            operator
                .clone()
                .run_until_cancelled_owned(watch(path, reloads)),
        );
    }
    operator_tasks.close();
    service.ready("sources started");
    let unchanging = Unchanging {
        api: config.api,
        simulator: config.simulator,
    };

    loop {
        tokio::select! {
            signal = signals.recv() => {
                if signal == "SIGHUP" {
                    tracing::info!(%signal, "reloading the config file");
                    let outcome = reload(path, &mut running, &unchanging, &service, &counts).await;
                    tracing::debug!(?outcome, "reload done");
                    continue;
                }
                tracing::info!(%signal, "stopping: sources stop, queues drain, sinks flush (send it again to abandon)");
                break;
            }
            _ = signals::deadline(options.duration) => {
                tracing::info!("stopping: --duration reached");
                break;
            }
            ended = running.ended() => {
                if ended == Ended::StopRequested {
                    tracing::info!("stopping: a component asked to stop");
                }
                break;
            }
            Some(request) = requests.recv() => {
                let outcome = reload(path, &mut running, &unchanging, &service, &counts).await;
                if let Some(reply) = request.reply {
                    let _ = reply.send(outcome);
                }
            }
        }
    }
    service.stopping();
    // A reload asked for from here on (`POST /reload`, `--watch`) is answered that the
    // pipeline is stopping, instead of waiting for a loop that no longer runs.
    drop(requests);
    let outcome = stop_in_order(&mut running, signals).await;
    operator.cancel();
    // Open API connections get to finish their response; a client that will not read
    // it does not hold the exit back.
    if tokio::time::timeout(OPERATOR_GRACE, operator_tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "the API's connections did not close within {OPERATOR_GRACE:?}; exiting anyway"
        );
    }
    if let Some(fleet) = fleet {
        fleet.shutdown().await;
    }
    outcome
}

/// The sections of the config file a reload does not apply.
struct Unchanging {
    api: ApiConfig,
    simulator: Option<EmbeddedSim>,
}

/// Reads `path` again and applies it: an invalid file leaves the pipeline as it is
/// (its errors are logged, with their positions, and returned).
async fn reload(
    path: &Path,
    running: &mut Running,
    unchanging: &Unchanging,
    service: &ServiceManager,
    counts: &ReloadCounts,
) -> Result<Changes, String> {
    service.reloading();
    // Off the runtime: reading the file and checking what it names (inventories,
    // directories) blocks.
    let loaded = {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || config::load_regular(&path)).await
    };
    let loaded = loaded.unwrap_or_else(|join| {
        Err(ConfigError::Read {
            path: path.to_owned(),
            source: std::io::Error::other(join.to_string()),
        })
    });
    let outcome = match loaded {
        Err(error) => {
            counts.refused.fetch_add(1, Relaxed);
            for line in error.to_string().lines() {
                tracing::error!("reload refused, the pipeline runs on unchanged: {line}");
            }
            Err(error.to_string())
        }
        Ok(new) => {
            if new.api != unchanging.api {
                tracing::warn!("`api` changed: it takes effect when rigtap restarts");
            }
            if new.simulator != unchanging.simulator {
                tracing::warn!("`simulator` changed: it takes effect when rigtap restarts");
            }
            let changes = running.reload(new.pipeline).await;
            counts.applied.fetch_add(1, Relaxed);
            log(&changes);
            Ok(changes)
        }
    };
    service.ready("reloaded");
    outcome
}

fn log(changes: &Changes) {
    if changes.is_empty() {
        tracing::info!("reloaded: nothing changed");
        return;
    }
    let reconfigured: Vec<String> = changes
        .reconfigured
        .iter()
        .map(|(id, what)| format!("{id}: {what}"))
        .collect();
    tracing::info!(
        added = ?changes.added,
        removed = ?changes.removed,
        replaced = ?changes.replaced,
        rewired = ?changes.rewired,
        reconfigured = ?reconfigured,
        memory_budget = ?changes.memory_budget,
        "reloaded"
    );
}

/// Asks for a reload whenever the file's content changes, or it becomes something a
/// reload refuses (a FIFO, a file over the size limit: the reload logs why). A file
/// briefly missing while an editor saves it is not a change.
async fn watch(path: PathBuf, reloads: mpsc::Sender<Reload>) {
    let mut seen = look(&path).await;
    let mut ticker = tokio::time::interval(WATCH_EVERY);
    loop {
        ticker.tick().await;
        let now = look(&path).await;
        if now.is_some() && now != seen {
            seen = now;
            tracing::info!(path = %path.display(), "the config file changed; reloading");
            if reloads.send(Reload { reply: None }).await.is_err() {
                return;
            }
        }
    }
}

/// What the watcher compares: the file's text, or why a reload could not read it;
/// `None` while it does not exist. Read as a reload reads it (a regular file, within
/// the size limit), off the runtime.
async fn look(path: &Path) -> Option<Result<String, String>> {
    let read = {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || config::read_regular(&path)).await
    };
    match read {
        Ok(Ok(text)) => Some(Ok(text)),
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::NotFound => None,
        Ok(Err(error)) => Some(Err(error.to_string())),
        Err(join) => Some(Err(join.to_string())),
    }
}

/// Stops the pipeline in order and waits for it to drain, unless a second SIGINT or
/// SIGTERM abandons it. SIGHUP is a reload request (`systemctl reload`), not an
/// operator's impatience: it is logged and ignored, never taken as the second signal.
async fn stop_in_order(running: &mut Running, signals: &mut Signals) -> Outcome {
    running.stop();
    let view = running.view();
    let second_stop = async {
        loop {
            let signal = signals.recv().await;
            if signal != "SIGHUP" {
                return signal;
            }
            tracing::info!(%signal, "a reload is not possible while stopping; ignored (a second SIGTERM or SIGINT abandons what is in flight)");
        }
    };
    tokio::select! {
        _ = running.drained() => {}
        signal = second_stop => {
            let batches = view.queued_batches();
            let samples = view.abandon();
            tracing::error!(
                "stopped by a second {signal}: abandoned {samples} sample(s) in {batches} queued batch(es) and component buffers ({} bytes charged), and {} unfinished component(s)",
                view.budget.in_use(),
                running.unfinished(),
            );
            return Outcome::Abandoned;
        }
    }
    let dropped: u64 = view
        .components
        .iter()
        .map(|c| c.stats.dropped_total())
        .sum();
    tracing::info!(
        components = view.components.len(),
        dropped,
        "pipeline stopped"
    );
    if view.failed() {
        Outcome::Failed
    } else {
        Outcome::Done
    }
}

/// What the operator's tasks share with the run.
struct Operator {
    stop: CancellationToken,
    reloads: mpsc::Sender<Reload>,
    counts: Arc<ReloadCounts>,
    service: Arc<ServiceManager>,
}

/// Starts what an operator watches the pipeline with, until `operator.stop`: the API
/// (if enabled; a port in use is logged, not fatal: the pipeline matters more), the
/// health watch behind `/health`, the progress line and the service manager's
/// watchdog. Returns their tasks.
async fn serve_operator(
    api: &ApiConfig,
    running: &Running,
    options: &RunOptions,
    operator: Operator,
) -> TaskTracker {
    let tasks = TaskTracker::new();
    let stop = operator.stop;
    let health = Arc::new(HealthWatch::new(running.views(), api.health.clone()));
    if api.enabled {
        match tokio::net::TcpListener::bind(api.address).await {
            Ok(listener) => {
                tracing::info!(address = %api.address, "serving /metrics, /health, /status, /tap/COMPONENT and POST /reload");
                let state = Arc::new(ApiState {
                    metrics: metrics::registry_counting(running.views(), operator.counts),
                    health: health.clone(),
                    taps: running.taps(),
                    views: running.views(),
                    reloads: operator.reloads,
                    taps_open: Arc::default(),
                });
                tasks.spawn(api::serve(listener, state, stop.clone()));
            }
            Err(error) => {
                tracing::error!(address = %api.address, %error, "cannot serve the API (/metrics, /health); the pipeline runs without it. Set `api.address` to a free port")
            }
        }
    }
    tasks.spawn(
        stop.clone()
            .run_until_cancelled_owned(async move { health.watch().await }),
    );
    tasks.spawn(
        stop.clone()
            .run_until_cancelled_owned(progress::report(options.progress, running.views())),
    );
    let service = operator.service;
    tasks.spawn(
        stop.clone()
            .run_until_cancelled_owned(async move { service.watchdog().await }),
    );
    tasks
}
