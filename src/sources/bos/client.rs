//! Calls to one miner: login and re-login, the governors, a deadline on every call,
//! and compression, in one place, so the session loop only says which call it wants.

use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::DefaultDirectRateLimiter;
use tokio::time::Instant;
use tonic::codec::CompressionEncoding;
use tonic::metadata::AsciiMetadataValue;
use tonic::{Code, Request, Response, Status, Streaming};

use super::channel::MinerChannel;
use super::connect::TlsProblem;
use super::retry::RetryConfig;
use crate::fleet::backoff::Backoff;
use crate::fleet::fair_rate::{self, FairRateLimiter};
use crate::fleet::stats::{BackoffKind, Method, PoolStats};
use crate::toolkit::error_chain::clipped;
use crate::toolkit::proto::bos::api_version_service_client::ApiVersionServiceClient;
use crate::toolkit::proto::bos::v1 as api;
use crate::toolkit::proto::bos::{ApiVersion, ApiVersionRequest};
use crate::toolkit::sample::StatusCode;
use crate::toolkit::secret::Secret;
use api::authentication_service_client::AuthenticationServiceClient;
use api::cooling_service_client::CoolingServiceClient;
use api::miner_service_client::MinerServiceClient;
use api::pool_service_client::PoolServiceClient;

pub(crate) struct Credentials {
    pub username: String,
    pub password: Secret,
}

/// One miner's login token, shared by its concurrent calls. `generation` counts
/// logins, so calls that all saw the same expired token cause one re-login, not many.
#[derive(Default)]
pub(crate) struct Auth {
    token: Mutex<(u64, Option<AsciiMetadataValue>)>,
    relogin: tokio::sync::Mutex<()>,
}

impl Auth {
    fn current(&self) -> (u64, Option<AsciiMetadataValue>) {
        self.token.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, token: AsciiMetadataValue) {
        let mut current = self.token.lock().unwrap_or_else(|e| e.into_inner());
        *current = (current.0 + 1, Some(token));
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    #[error("{method}: {}: {}", .status.code(), clipped(.status.message()))]
    Status { method: Method, status: Status },
    #[error("login as `{username}` was refused: {message}")]
    BadCredentials { username: String, message: String },
}

impl CallError {
    /// A failure of the miner or the way to it (busy, restarting, unreachable, too
    /// slow), not of one call: what ends a session when every call fails this way, and
    /// what the breaker's failure rate counts.
    pub(crate) fn transient(&self) -> bool {
        match self {
            CallError::Status { status, .. } => matches!(
                status.code(),
                Code::Unavailable
                    | Code::DeadlineExceeded
                    | Code::ResourceExhausted
                    | Code::Aborted
                    | Code::Cancelled
                    | Code::Unknown
            ),
            CallError::BadCredentials { .. } => false,
        }
    }

    /// The stable code of the status this failure leads to.
    pub(crate) fn status_code(&self) -> StatusCode {
        if self.tls_problem().is_some() {
            return StatusCode::TlsFailed;
        }
        match self.code() {
            Code::Unauthenticated | Code::PermissionDenied => StatusCode::AuthFailed,
            Code::DeadlineExceeded => StatusCode::Timeout,
            Code::ResourceExhausted => StatusCode::RateLimited,
            Code::Unimplemented => StatusCode::UnsupportedFirmware,
            Code::OutOfRange | Code::Internal | Code::DataLoss | Code::InvalidArgument => {
                StatusCode::BadAnswer
            }
            Code::Unavailable | Code::Cancelled | Code::Unknown | Code::Aborted => {
                StatusCode::Unreachable
            }
            _ => StatusCode::MinerError,
        }
    }

    /// The TLS problem behind a call that failed in transport, when the transport
    /// kept it.
    pub(crate) fn tls_problem(&self) -> Option<TlsProblem> {
        match self {
            CallError::Status { status, .. } => {
                std::error::Error::source(status).and_then(TlsProblem::of)
            }
            CallError::BadCredentials { .. } => None,
        }
    }

    pub(crate) fn code(&self) -> Code {
        match self {
            CallError::Status { status, .. } => status.code(),
            CallError::BadCredentials { .. } => Code::Unauthenticated,
        }
    }
}

/// What every call of a source shares.
pub(crate) struct CallSettings {
    pub credentials: Credentials,
    pub gzip: bool,
    /// The deadline of a call, its retries included.
    pub timeout: Duration,
    pub(crate) retry: RetryConfig,
    pub(crate) max_message_size: usize,
    pub(crate) fleet_rpcs: Arc<FairRateLimiter>,
    pub stats: Arc<PoolStats>,
}

/// Calls to one miner over one channel.
pub(crate) struct MinerClient {
    pub channel: MinerChannel,
    pub(crate) auth: Arc<Auth>,
    pub(crate) miner_rpcs: Arc<DefaultDirectRateLimiter>,
    pub settings: Arc<CallSettings>,
    /// The channel served calls before this client's (pool reuse), or is new.
    pub(crate) reused: bool,
}

/// The typed clients over one channel, with the source's compression and limit.
#[derive(Clone)]
struct Services {
    channel: MinerChannel,
    gzip: bool,
    max_message_size: usize,
}

macro_rules! client {
    ($services:expr, $client:ident) => {{
        let client = $client::new($services.channel.clone())
            .max_decoding_message_size($services.max_message_size);
        if $services.gzip {
            client
                .send_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Gzip)
        } else {
            client
        }
    }};
}

fn authed<T>(message: T, token: Option<AsciiMetadataValue>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        request.metadata_mut().insert("authorization", token);
    }
    request
}

impl MinerClient {
    fn services(&self) -> Services {
        Services {
            channel: self.channel.clone(),
            gzip: self.settings.gzip,
            max_message_size: self.settings.max_message_size,
        }
    }

    /// Waits for both governors (the fleet's, then the miner's).
    async fn admit(&self, method: Method) {
        let fleet = &self.settings.fleet_rpcs;
        match method.brings_online() {
            true => fleet.until_ready_first().await,
            false => fleet.until_ready().await,
        }
        fair_rate::until_ready(&self.miner_rpcs).await;
    }

    /// Makes a call, and retries it as the retry policy says, all within the call's
    /// deadline: it starts when the first attempt is admitted by the governors (the
    /// wait for them before is not the miner's fault), and later attempts wait their
    /// backoff and the governors within it.
    async fn attempt<T, F, Fut>(&self, method: Method, call: F) -> Result<Response<T>, Status>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let settings = &self.settings;
        let retry = &settings.retry;
        self.admit(method).await;
        let deadline = Instant::now() + settings.timeout;
        let mut backoff: Option<Backoff> = None;
        let mut attempts = 1;
        // The failure a retry was made for: what the call reports if the retry only
        // ran out of the time that was left.
        let mut retried_for: Option<Status> = None;
        loop {
            let started = Instant::now();
            self.channel.clear_starved(method);
            // A statement of its own: the call (and its answer) is dropped at its end,
            // before `starved` is read.
            let answered = tokio::time::timeout_at(deadline, call()).await;
            let result = answered.unwrap_or_else(|_| {
                let why = if self.channel.starved(method) {
                    "; its answer was large and waited for room in memory_budget \
                     (rigtap_source_large_answers_waited_total): raise the budget, or \
                     lower max_message_size"
                } else {
                    ""
                };
                Err(Status::deadline_exceeded(format!(
                    "no answer within {:?} ({attempts} attempt(s)){why}",
                    settings.timeout
                )))
            });
            let code = result.as_ref().map_or_else(Status::code, |_| Code::Ok);
            settings
                .stats
                .rpc(method, code, started.elapsed(), self.reused);
            let status = match (result, retried_for.take()) {
                (Err(status), earlier) if status.code() == Code::DeadlineExceeded => {
                    return Err(earlier.unwrap_or(status))
                }
                (Err(status), _) if attempts < retry.attempts && retry.retries(status.code()) => {
                    status
                }
                (result, _) => return result,
            };
            let wait = backoff
                .get_or_insert_with(|| Backoff::new(retry.backoff.clone(), fastrand::u64(..)))
                .next_delay();
            // The retry must get its turn and be sent with time to answer: at least
            // as long as this attempt took, before the deadline.
            let needed = wait + started.elapsed();
            if deadline.saturating_duration_since(Instant::now()) <= needed {
                return Err(status);
            }
            tokio::time::sleep(wait).await;
            if tokio::time::timeout_at(deadline, self.admit(method))
                .await
                .is_err()
                || deadline.saturating_duration_since(Instant::now()) < started.elapsed()
            {
                return Err(status);
            }
            settings.stats.backoff(BackoffKind::Retry, wait);
            settings.stats.retried(method);
            retried_for = Some(status);
            attempts += 1;
        }
    }

    /// One authenticated call; an UNAUTHENTICATED answer (an expired session) gets
    /// one re-login and one retry.
    async fn unary<T, F, Fut>(&self, method: Method, call: F) -> Result<T, CallError>
    where
        F: Fn(Services, Option<AsciiMetadataValue>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let mut relogged = false;
        loop {
            let (generation, token) = self.auth.current();
            // Boxed: a tonic call's future is several KiB, and a miner task that held
            // its five calls inline would keep that much for its whole life, idle or
            // not (about 57 KiB a miner, measured). On the heap it exists only in flight.
            let attempt = self.attempt(method, || call(self.services(), token.clone()));
            match Box::pin(attempt).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) if status.code() == Code::Unauthenticated && !relogged => {
                    relogged = true;
                    self.relogin(generation).await?;
                }
                Err(status) => return Err(CallError::Status { method, status }),
            }
        }
    }

    /// Logs in; the token is read from the `authorization` header first (every API
    /// version sends it), then from the body (API 1.1 and later).
    pub(crate) async fn login(&self) -> Result<(), CallError> {
        let credentials = &self.settings.credentials;
        self.settings.stats.logins.fetch_add(1, Relaxed);
        let request = api::LoginRequest {
            username: credentials.username.clone(),
            password: credentials.password.expose().to_string(),
        };
        let login = || {
            let (services, request) = (self.services(), request.clone());
            async move {
                client!(services, AuthenticationServiceClient)
                    .login(request)
                    .await
            }
        };
        let result = Box::pin(self.attempt(Method::Login, login)).await;
        let response = match result {
            Ok(response) => response,
            Err(status) if status.code() == Code::Unauthenticated => {
                return Err(CallError::BadCredentials {
                    username: credentials.username.clone(),
                    message: clipped(status.message()).into_owned(),
                })
            }
            Err(status) => {
                return Err(CallError::Status {
                    method: Method::Login,
                    status,
                })
            }
        };
        let header = response.metadata().get("authorization").cloned();
        let body = response.into_inner().token;
        let token = header
            .filter(|t| !t.is_empty())
            .or_else(|| body.parse().ok())
            .ok_or_else(|| CallError::Status {
                method: Method::Login,
                status: Status::internal("the miner answered the login without a token"),
            })?;
        self.auth.set(token);
        Ok(())
    }

    /// Logs in again unless another call already did since `generation`.
    async fn relogin(&self, generation: u64) -> Result<(), CallError> {
        let _one_at_a_time = self.auth.relogin.lock().await;
        if self.auth.current().0 != generation {
            return Ok(());
        }
        self.login().await
    }

    pub(crate) async fn api_version(&self) -> Result<ApiVersion, CallError> {
        self.unary(Method::GetApiVersion, |s, _| async move {
            client!(s, ApiVersionServiceClient)
                .get_api_version(ApiVersionRequest {})
                .await
        })
        .await
    }

    pub(crate) async fn status_stream(
        &self,
    ) -> Result<Streaming<api::GetMinerStatusResponse>, CallError> {
        self.unary(Method::GetMinerStatus, |s, t| async move {
            client!(s, MinerServiceClient)
                .get_miner_status(authed(api::GetMinerStatusRequest {}, t))
                .await
        })
        .await
    }

    pub(crate) async fn details(&self) -> Result<api::GetMinerDetailsResponse, CallError> {
        self.unary(Method::GetMinerDetails, |s, t| async move {
            client!(s, MinerServiceClient)
                .get_miner_details(authed(api::GetMinerDetailsRequest {}, t))
                .await
        })
        .await
    }

    pub(crate) async fn stats(&self) -> Result<api::GetMinerStatsResponse, CallError> {
        self.unary(Method::GetMinerStats, |s, t| async move {
            client!(s, MinerServiceClient)
                .get_miner_stats(authed(api::GetMinerStatsRequest {}, t))
                .await
        })
        .await
    }

    pub(crate) async fn hashboards(&self) -> Result<api::GetHashboardsResponse, CallError> {
        self.unary(Method::GetHashboards, |s, t| async move {
            client!(s, MinerServiceClient)
                .get_hashboards(authed(api::GetHashboardsRequest {}, t))
                .await
        })
        .await
    }

    pub(crate) async fn cooling(&self) -> Result<api::GetCoolingStateResponse, CallError> {
        self.unary(Method::GetCoolingState, |s, t| async move {
            client!(s, CoolingServiceClient)
                .get_cooling_state(authed(api::GetCoolingStateRequest {}, t))
                .await
        })
        .await
    }

    pub(crate) async fn pools(&self) -> Result<api::GetPoolGroupsResponse, CallError> {
        self.unary(Method::GetPoolGroups, |s, t| async move {
            client!(s, PoolServiceClient)
                .get_pool_groups(authed(api::GetPoolGroupsRequest {}, t))
                .await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_miners_long_status_message_is_clipped() {
        // A hostile miner failed every call with an 8 MB message, copied whole into
        // every status and gap sample and log line.
        let error = CallError::Status {
            method: Method::GetHashboards,
            status: Status::internal("x".repeat(8 << 20)),
        };
        let text = error.to_string();
        assert!(text.len() < 600, "{} bytes", text.len());
        assert!(text.ends_with(" bytes more)"), "{text}");
    }
}
