//! Dialling one miner: TCP, then TLS when configured, then the HTTP/2 handshake, all
//! within the connect timeout and after the fleet-wide connect governor admits it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_util::either::Either;

use super::answer_memory::AnswerMemory;
use super::channel::{MinerChannel, MinerIo};
use super::config::BosConfig;
use super::tls::MinerTls;
use crate::fleet::fair_rate::FairRateLimiter;
use crate::fleet::stats::PoolStats;
use crate::fleet::targets::Target;
use crate::toolkit::error_chain::chain;
use crate::toolkit::sample::StatusCode;

/// HTTP/2 flow-control windows. A miner's answers are small (a few KiB, hashboards the
/// largest), so 64 KiB per stream (HTTP/2's own default) never throttles a poll. The
/// status stream is read as it comes (see `miner.rs`), so no window fills while a sink
/// is blocked. The connection window is twice a stream's, so a poll still gets through
/// beside the stream. These are credits, not allocations.
const STREAM_WINDOW: u32 = 64 << 10;
const CONNECTION_WINDOW: u32 = 128 << 10;
/// The HPACK table a miner may fill with the headers it sends us (HTTP/2's default is
/// 4 KiB). A miner's answers repeat a handful of headers, but a `date` header that
/// changes every second adds an entry per answer until the table is full: 4 KiB a
/// miner, 40 MiB at 10,000, reached a few minutes into a run. 1 KiB keeps the repeated
/// headers compressed.
const HEADER_TABLE: u32 = 1 << 10;

/// Makes channels to miners; shared by every miner task of a source.
pub(crate) struct Dialer {
    tls: Option<MinerTls>,
    connect_timeout: Duration,
    keepalive: super::config::KeepaliveConfig,
    limiter: Arc<FairRateLimiter>,
    stats: Arc<PoolStats>,
    answers: AnswerMemory,
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

/// The alerts of a miner that wants a client certificate, or refuses the one sent.
const CLIENT_CERTIFICATE_ALERTS: [rustls::AlertDescription; 4] = [
    rustls::AlertDescription::CertificateRequired,
    rustls::AlertDescription::BadCertificate,
    rustls::AlertDescription::UnknownCA,
    rustls::AlertDescription::HandshakeFailure,
];

impl DialError {
    /// The stable code of the status this failure leads to.
    pub(crate) fn status_code(&self) -> StatusCode {
        match self {
            DialError::Timeout(_) => StatusCode::Timeout,
            DialError::Transport(_) => StatusCode::Unreachable,
            DialError::Tls { .. } => StatusCode::TlsFailed,
        }
    }
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
        use rustls::{CertificateError, Error};
        let mut cause = Some(error);
        while let Some(e) = cause {
            // h2's errors name no source: the I/O error is inside, and of a TLS alert
            // received after the handshake (a miner refusing the client certificate
            // once it has checked it) h2 keeps only the words.
            let io = e
                .downcast_ref::<std::io::Error>()
                .or_else(|| e.downcast_ref::<h2::Error>().and_then(h2::Error::get_io));
            if io.is_some_and(|io| {
                let text = io.to_string();
                CLIENT_CERTIFICATE_ALERTS
                    .iter()
                    .any(|alert| text.contains(&format!("received fatal alert: {alert:?}")))
            }) {
                return Some(TlsProblem::ClientCertificate);
            }
            let tls = e.downcast_ref::<Error>().or_else(|| {
                io.and_then(|io| io.get_ref())
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
                    Error::AlertReceived(alert) if CLIENT_CERTIFICATE_ALERTS.contains(alert) => {
                        TlsProblem::ClientCertificate
                    }
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
        tls: Option<MinerTls>,
        limiter: Arc<FairRateLimiter>,
        stats: Arc<PoolStats>,
        answers: AnswerMemory,
    ) -> Self {
        Dialer {
            tls,
            connect_timeout: config.connect_timeout.0,
            keepalive: config.keepalive.clone(),
            limiter,
            stats,
            answers,
        }
    }

    /// Waits for the connect governor, then connects (TCP, TLS, HTTP/2) within the
    /// connect timeout; the wait for the governor is not part of the timeout.
    pub(crate) async fn dial(&self, target: &Target) -> Result<MinerChannel, DialError> {
        self.limiter.until_ready().await;
        self.stats.connect_attempts.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let result = match tokio::time::timeout(self.connect_timeout, self.connect(target)).await {
            Err(_) => Err(DialError::Timeout(self.connect_timeout)),
            Ok(result) => result,
        };
        if result.is_ok() {
            self.stats.connect_duration.record(started.elapsed());
        }
        result
    }

    async fn connect(&self, target: &Target) -> Result<MinerChannel, DialError> {
        let transport = |e: &dyn std::error::Error| DialError::Transport(chain(e));
        let authority: Authority = target.address.parse().map_err(|e| transport(&e))?;
        let tcp = TcpStream::connect(&target.address)
            .await
            .map_err(|e| transport(&e))?;
        tcp.set_nodelay(true).map_err(|e| transport(&e))?;
        let (io, scheme): (MinerIo, _) =
            match &self.tls {
                None => (Either::Left(tcp), Scheme::HTTP),
                Some(tls) => {
                    let name = tls
                        .server_name(authority.host())
                        .map_err(|e| transport(&e))?;
                    let connector = TlsConnector::from(tls.config.clone());
                    let stream = connector.connect(name, tcp).await.map_err(|e| {
                        match TlsProblem::of(&e) {
                            Some(problem) => DialError::Tls {
                                problem,
                                text: chain(&e),
                            },
                            None => transport(&e),
                        }
                    })?;
                    (Either::Right(Box::new(stream)), Scheme::HTTPS)
                }
            };
        let handshake = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .header_table_size(HEADER_TABLE)
            .enable_push(false)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(|e| transport(&e))?;
        let (channel, driven) = MinerChannel::new(
            handshake,
            scheme,
            authority,
            &self.keepalive,
            self.answers.clone(),
        );
        tokio::spawn(driven);
        Ok(channel)
    }
}
