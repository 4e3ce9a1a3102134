//! The operator's HTTP endpoints (HTTP/1.1, loopback by default):
//! - `GET /metrics`: OpenMetrics text ([`metrics::render`]);
//! - `GET /health`: 200 `{"status":"ok","reasons":[]}`, or 503 with the reasons;
//! - `GET /status`: the pipeline's counters as JSON, for `rigtap top`;
//! - `GET /tap/COMPONENT`: the samples a source or transform emits, as JSON lines,
//!   until the client goes away (the id percent-encoded: [`tap_path`]);
//! - `POST /reload`: reloads the config file; 200 with what changed, or 400 with the
//!   new file's errors (the pipeline runs on unchanged).

use std::convert::Infallible;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use prometheus_client::registry::Registry;

use tokio::sync::{mpsc, oneshot, Semaphore};

use super::health::HealthWatch;
use super::metrics;
use super::reload::Reload;
use super::status::Status;
use super::tap_path;
use crate::pipeline::tap::{TapReceiver, Taps};
use crate::toolkit::counted::Counted;
use crate::toolkit::log_budget::LogBudget;
use crate::topology::running::Views;

/// What the API answers from.
pub(crate) struct ApiState {
    pub metrics: Registry,
    pub health: Arc<HealthWatch>,
    pub(crate) taps: Arc<Taps>,
    pub(crate) views: Views,
    /// Where `POST /reload` asks the agent for a reload.
    pub(crate) reloads: mpsc::Sender<Reload>,
    /// Tap streams open, at most [`MAX_TAPS`].
    pub(crate) taps_open: Arc<AtomicUsize>,
}

/// Tap streams served at once: a tap holds its connection for as long as it watches,
/// and the connections left keep `/health` and `/metrics` answered.
const MAX_TAPS: usize = 64;

type Body = BoxBody<Bytes, Infallible>;

/// Connections served at once; more wait in the listener's backlog. Scrapes, health
/// checks, `rigtap top` and taps need a handful ([`MAX_TAPS`] of them at most taps); a
/// client opening thousands would otherwise take the file descriptors the miners'
/// connections need.
const MAX_CONNECTIONS: usize = 256;

/// How long a client may take to send a request's head. A client that trickles its
/// headers (or opens a connection and says nothing) is closed after it.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// After a failed accept (out of file descriptors, most likely), the pause before the
/// next: the failure comes back at once, and retrying at once spun a core and wrote
/// millions of log lines.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Serves until `stop` is cancelled, then lets each open connection finish its
/// response (a tap's stream ends at `stop` too) and returns once all have closed.
pub(crate) async fn serve(listener: TcpListener, state: Arc<ApiState>, stop: CancellationToken) {
    let connections = TaskTracker::new();
    let room = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let failures = LogBudget::new(NonZeroU32::MIN, NonZeroU32::MIN);
    loop {
        let slot = tokio::select! {
            _ = stop.cancelled() => break,
            slot = room.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    if failures.allow() {
                        tracing::warn!(%error, suppressed = failures.suppressed(), "api: accept failed; trying again in {ACCEPT_PAUSE:?}");
                    }
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(ACCEPT_PAUSE) => continue,
                    }
                }
            },
        };
        let (state, stop) = (state.clone(), stop.clone());
        connections.spawn(async move {
            let _slot = slot;
            let service = {
                let stop = stop.clone();
                hyper::service::service_fn(move |request| {
                    let (state, stop) = (state.clone(), stop.clone());
                    async move { Ok::<_, Infallible>(respond(&request, &state, &stop).await) }
                })
            };
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                _ = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = ended {
                tracing::debug!(%error, "api: connection ended");
            }
        });
    }
    connections.close();
    connections.wait().await;
}

async fn respond(
    request: &Request<Incoming>,
    state: &ApiState,
    stop: &CancellationToken,
) -> Response<Body> {
    let path = request.uri().path();
    if request.method() == hyper::Method::POST && path == "/reload" {
        return reload(state).await;
    }
    if request.method() != hyper::Method::GET {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "GET, or POST /reload\n".into(),
        );
    }
    match path {
        "/metrics" => {
            let mut response = text(StatusCode::OK, metrics::render(&state.metrics));
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(metrics::CONTENT_TYPE),
            );
            response
        }
        "/health" => {
            let health = state.health.health();
            let status = if health.is_healthy() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json(status, &health)
        }
        "/status" => json(StatusCode::OK, &Status::of(&state.views.borrow())),
        _ => match tap_path::component(path) {
            Some(Ok(_)) if state.taps_open.load(Relaxed) >= MAX_TAPS => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{MAX_TAPS} taps are open, the most served at once; close one\n"),
            ),
            Some(Ok(component)) => match state.taps.watch(&component) {
                Some(receiver) => tap(receiver, Counted::new(&state.taps_open), stop.clone()),
                None => text(
                    StatusCode::NOT_FOUND,
                    format!(
                        "no source or transform `{component}`; tap one of: {}\n",
                        state.taps.names().join(", ")
                    ),
                ),
            },
            Some(Err(error)) => text(StatusCode::BAD_REQUEST, format!("{error}\n")),
            None => text(
                StatusCode::NOT_FOUND,
                "try /metrics, /health, /status, /tap/COMPONENT, or POST /reload\n".into(),
            ),
        },
    }
}

/// Asks the agent for a reload and answers with what changed, or with the new
/// file's errors.
async fn reload(state: &ApiState) -> Response<Body> {
    let (reply, answer) = oneshot::channel();
    if state
        .reloads
        .send(Reload { reply: Some(reply) })
        .await
        .is_err()
    {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the pipeline is stopping\n".into(),
        );
    }
    match answer.await {
        Ok(Ok(changes)) => json(StatusCode::OK, &changes),
        Ok(Err(errors)) => text(StatusCode::BAD_REQUEST, errors + "\n"),
        Err(_) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the pipeline is stopping\n".into(),
        ),
    }
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_string(value).unwrap_or_default() + "\n";
    let mut response = text(status, body);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed());
    *response.status_mut() = status;
    response
}

/// A streamed body of JSON lines; a watcher that falls behind gets a line saying how
/// many samples it missed. Ends when the pipeline stops. It counts as an open tap
/// (`open`) until its body is dropped.
fn tap(receiver: TapReceiver, open: Counted, stop: CancellationToken) -> Response<Body> {
    let lines = futures_util::stream::unfold((receiver, open), |(receiver, open)| async move {
        let lines = receiver.recv().await?;
        Some((lines, (receiver, open)))
    })
    .take_until(async move { stop.cancelled().await })
    .map(|bytes| Ok::<_, Infallible>(Frame::data(bytes)));
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(lines)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/x-ndjson"),
    );
    response
}
