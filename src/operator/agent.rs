//! `rigtap run`: the embedded fleet (if any), the pipeline, and what the operator
//! watches it with (the API, the health watch, the progress line), started together
//! and stopped in order.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::api::{self, ApiState};
use super::api_config::ApiConfig;
use super::config::AgentConfig;
use super::health::HealthWatch;
use super::metrics;
use super::progress::{self, ProgressMode};
use super::signals::{self, Signals};
use crate::sim::Fleet;
use crate::topology::running::{Ended, Running};

/// How long the API's open connections get to finish once the pipeline has stopped.
const OPERATOR_GRACE: Duration = Duration::from_secs(5);

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

/// Runs `config` until a signal, the end of `duration`, a component's request to stop,
/// or the end of every source; then stops in order. A second signal abandons the rest.
pub async fn run(
    config: AgentConfig,
    signals: &mut Signals,
    duration: Option<Duration>,
    progress: ProgressMode,
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
    let running = Running::start(config.pipeline);
    let operator = CancellationToken::new();
    let operator_tasks = serve_operator(&config.api, &running, progress, &operator).await;

    let outcome = stop_in_order(&running, signals, duration).await;
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

async fn stop_in_order(
    running: &Running,
    signals: &mut Signals,
    duration: Option<Duration>,
) -> Outcome {
    tokio::select! {
        signal = signals.recv() => {
            if signal == "SIGHUP" {
                tracing::warn!(%signal, "SIGHUP does not reload this version of rigtap; it stops in order, like SIGTERM, and nothing is lost");
            }
            tracing::info!(%signal, "stopping: sources stop, queues drain, sinks flush (send it again to abandon)");
        }
        _ = signals::deadline(duration) => tracing::info!("stopping: --duration reached"),
        ended = running.ended() => if ended == Ended::StopRequested {
            tracing::info!("stopping: a component asked to stop");
        },
    }
    running.stop();
    let view = running.view();
    tokio::select! {
        _ = running.drained() => {}
        signal = signals.recv() => {
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

/// Starts what an operator watches the pipeline with, until `stop`: the API (if
/// enabled; a port in use is logged, not fatal: the pipeline matters more), the health
/// watch behind `/health`, and the progress line. Returns their tasks, closed.
async fn serve_operator(
    api: &ApiConfig,
    running: &Running,
    progress: ProgressMode,
    stop: &CancellationToken,
) -> TaskTracker {
    let tasks = TaskTracker::new();
    let view = running.view();
    let health = Arc::new(HealthWatch::new(view.clone(), api.health.clone()));
    if api.enabled {
        match tokio::net::TcpListener::bind(api.address).await {
            Ok(listener) => {
                tracing::info!(address = %api.address, "serving /metrics, /health and /tap/COMPONENT");
                let state = Arc::new(ApiState {
                    metrics: metrics::registry(view.clone()),
                    health: health.clone(),
                    taps: running.taps(),
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
            .run_until_cancelled_owned(progress::report(progress, view)),
    );
    tasks.close();
    tasks
}
