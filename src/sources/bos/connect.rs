//! Dialling one miner: an HTTP/2 channel through a connector that every connection
//! attempt (first or reconnect) must pass, so the fleet-wide connect governor holds
//! even when tonic reconnects by itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint, Uri};

use super::config::BosConfig;
use super::fair_rate::FairRateLimiter;
use super::stats::PoolStats;
use super::targets::Target;

/// HTTP/2 flow-control windows. A miner's answers are small (a few KiB, hashboards the
/// largest), so 64 KiB per stream (HTTP/2's own default) never throttles a poll, and it
/// bounds what one unread status stream can hold to 64 KiB. The connection window is
/// twice that, so a poll still gets through while the stream is held back. These are
/// credits, not allocations: 10,000 idle connections cost only their small buffers.
const STREAM_WINDOW: u32 = 64 << 10;
const CONNECTION_WINDOW: u32 = 128 << 10;
/// Requests queued inside one channel: a miner has at most one poll round (five calls)
/// and one stream in flight.
const CHANNEL_BUFFER: usize = 16;

/// Makes channels to miners; shared by every miner task of a source.
pub(crate) struct Dialer {
    tls: Option<ClientTlsConfig>,
    connect_timeout: Duration,
    keepalive: super::config::KeepaliveConfig,
    limiter: Arc<FairRateLimiter>,
    stats: Arc<PoolStats>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum DialError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Transport(String),
    /// The TLS handshake failed, and why, in words that say what to change.
    #[error("{text}")]
    Tls { problem: TlsProblem, text: String },
}

/// Why a TLS handshake with a miner failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TlsProblem {
    /// The miner answered, but not in TLS: it serves its API in plaintext.
    Plaintext,
    UnknownIssuer,
    Expired,
    WrongName,
    /// The miner asked for a client certificate, or refused the one sent.
    ClientCertificate,
    Other,
}

impl TlsProblem {
    /// What to check, for the status message and the log.
    pub(crate) fn hint(self) -> &'static str {
        match self {
            TlsProblem::Plaintext => "the miner answers in plaintext, not TLS: remove `tls` from this source (Braiins OS serves its gRPC API without TLS), or check that the port is the TLS one",
            TlsProblem::UnknownIssuer => "the miner's certificate is not signed by the CA of `tls.ca_file` (or, without it, by a CA this host trusts): point `tls.ca_file` at the CA that signed it",
            TlsProblem::Expired => "the miner's certificate has expired, or is not valid yet: renew it, or check this host's clock",
            TlsProblem::WrongName => "the miner's certificate does not carry the name dialled: set `tls.server_name` to the name it carries",
            TlsProblem::ClientCertificate => "the miner closed the TLS connection: it likely wants a client certificate it trusts (mTLS); set `tls.cert_file` and `tls.key_file` to one signed by the CA the miner trusts",
            TlsProblem::Other => "check `tls.ca_file` and `tls.server_name`: the miner's certificate must be signed by that CA and carry that name",
        }
    }

    /// The TLS problem among `error`'s causes, if the handshake is what failed.
    pub(crate) fn of(error: &(dyn std::error::Error + 'static)) -> Option<TlsProblem> {
        use rustls::{AlertDescription, CertificateError, Error};
        let mut cause = Some(error);
        while let Some(e) = cause {
            let tls = e.downcast_ref::<Error>().or_else(|| {
                e.downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref())
                    .and_then(|inner| inner.downcast_ref::<Error>())
            });
            if let Some(tls) = tls {
                return Some(match tls {
                    Error::InvalidMessage(_) | Error::InappropriateMessage { .. } => {
                        TlsProblem::Plaintext
                    }
                    Error::InvalidCertificate(c) => match c {
                        // A CA of the same name that did not sign it: a signature that fails.
                        CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                            TlsProblem::UnknownIssuer
                        }
                        CertificateError::Expired
                        | CertificateError::ExpiredContext { .. }
                        | CertificateError::NotValidYet
                        | CertificateError::NotValidYetContext { .. } => TlsProblem::Expired,
                        CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. } => TlsProblem::WrongName,
                        _ => TlsProblem::Other,
                    },
                    Error::AlertReceived(
                        AlertDescription::CertificateRequired
                        | AlertDescription::BadCertificate
                        | AlertDescription::UnknownCA
                        | AlertDescription::HandshakeFailure,
                    ) => TlsProblem::ClientCertificate,
                    _ => TlsProblem::Other,
                });
            }
            cause = e.source();
        }
        None
    }
}

impl Dialer {
    pub(crate) fn new(
        config: &BosConfig,
        tls: Option<ClientTlsConfig>,
        limiter: Arc<FairRateLimiter>,
        stats: Arc<PoolStats>,
    ) -> Self {
        Dialer {
            tls,
            connect_timeout: config.connect_timeout.0,
            keepalive: config.keepalive.clone(),
            limiter,
            stats,
        }
    }

    /// Waits for the connect governor, then connects (TCP, TLS, HTTP/2) within the
    /// connect timeout; the wait for the governor is not part of the timeout.
    pub(crate) async fn dial(&self, target: &Target) -> Result<Channel, DialError> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{}", target.address))
            .map_err(|e| DialError::Transport(chain(&e)))?
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .http2_adaptive_window(false)
            .http2_keep_alive_interval(self.keepalive.interval.0)
            .keep_alive_timeout(self.keepalive.timeout.0)
            .keep_alive_while_idle(self.keepalive.while_idle)
            .buffer_size(CHANNEL_BUFFER);
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|e| DialError::Transport(chain(&e)))?;
        }
        self.limiter.until_ready().await;
        let connector = GovernedConnector {
            address: target.address.clone(),
            limiter: self.limiter.clone(),
            stats: self.stats.clone(),
            admitted: Arc::new(AtomicBool::new(true)),
        };
        match tokio::time::timeout(
            self.connect_timeout,
            endpoint.connect_with_connector(connector),
        )
        .await
        {
            Err(_) => Err(DialError::Timeout(self.connect_timeout)),
            Ok(Err(e)) => Err(match TlsProblem::of(&e) {
                Some(problem) => DialError::Tls {
                    problem,
                    text: chain(&e),
                },
                None => DialError::Transport(chain(&e)),
            }),
            Ok(Ok(channel)) => Ok(channel),
        }
    }
}

/// Opens the TCP connections of one channel. The first attempt was already admitted
/// by [`Dialer::dial`]; any later one (tonic reconnecting by itself) waits for the
/// governor here.
#[derive(Clone)]
struct GovernedConnector {
    address: String,
    limiter: Arc<FairRateLimiter>,
    stats: Arc<PoolStats>,
    admitted: Arc<AtomicBool>,
}

impl tower_service::Service<Uri> for GovernedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            if !this.admitted.swap(false, Ordering::Relaxed) {
                this.limiter.until_ready().await;
            }
            this.stats.connect_attempts.fetch_add(1, Ordering::Relaxed);
            let stream = TcpStream::connect(&this.address).await?;
            stream.set_nodelay(true)?;
            Ok(TokioIo::new(stream))
        })
    }
}

/// An error and its causes on one line: tonic's transport errors keep the useful part
/// ("connection refused", "invalid peer certificate: UnknownIssuer") in their sources.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let shown = cause.to_string();
        if !text.contains(&shown) {
            text.push_str(": ");
            text.push_str(&shown);
        }
        source = cause.source();
    }
    text
}
