//! The accept loop of one simulated miner: counts connections, enforces the connection
//! faults (cap, rate, drop after a while), and records the fleet-wide connect rate.

use std::future::Future;
use std::io;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::server::{Connected, TcpConnectInfo};

use super::counting::PerSecond;
use super::faults::MinerFaults;

/// "Too many open files" (Linux, macOS and the BSDs agree on the number).
const EMFILE: i32 = 24;

/// Connection counters of one miner.
#[derive(Debug, Default)]
pub struct ConnectionCounters {
    pub open: AtomicUsize,
    pub accepted: AtomicU64,
    pub(crate) rejected: AtomicU64,
}

/// Accepted connections of one miner, as tonic's server wants them. Cancelling `kill`
/// cuts every connection, as a power loss would.
pub(crate) fn incoming(
    listener: TcpListener,
    faults: MinerFaults,
    counters: Arc<ConnectionCounters>,
    rate: Arc<PerSecond>,
    kill: CancellationToken,
) -> impl Stream<Item = io::Result<SimConnection>> {
    let limiter: Option<DefaultDirectRateLimiter> = faults
        .connection_rate
        .and_then(NonZeroU32::new)
        .map(|n| RateLimiter::direct(Quota::per_second(n)));
    // `warned`: this miner already said it is out of file descriptors.
    futures_util::stream::unfold(
        (listener, limiter, false),
        move |(listener, limiter, mut warned)| {
            let counters = counters.clone();
            let rate = rate.clone();
            let faults = faults.clone();
            let kill = kill.clone();
            async move {
                loop {
                    let stream = match listener.accept().await {
                        Ok((stream, _)) => stream,
                        // Out of file descriptors: the connection waits in the backlog;
                        // say so, and try again shortly rather than spin.
                        Err(e) if e.raw_os_error() == Some(EMFILE) => {
                            if !std::mem::replace(&mut warned, true) {
                                tracing::warn!(error = %e, "cannot accept: the open-file limit is reached");
                            }
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                        Err(e) => return Some((Err(e), (listener, limiter, warned))),
                    };
                    rate.record();
                    let over_cap = faults
                        .connection_cap
                        .is_some_and(|cap| counters.open.load(Relaxed) >= cap as usize);
                    let over_rate = limiter.as_ref().is_some_and(|l| l.check().is_err());
                    if over_cap || over_rate {
                        counters.rejected.fetch_add(1, Relaxed);
                        drop(stream);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    counters.accepted.fetch_add(1, Relaxed);
                    counters.open.fetch_add(1, Relaxed);
                    let killed = kill.cancelled_owned();
                    let cut: Cut = match faults.drop_after {
                        None => Box::pin(killed),
                        Some(max) => {
                            let after = max.mul_f64(fastrand::f64()).max(Duration::from_millis(50));
                            Box::pin(async move {
                                tokio::select! {
                                    _ = killed => {}
                                    _ = tokio::time::sleep(after) => {}
                                }
                            })
                        }
                    };
                    let connection = SimConnection {
                        stream,
                        cut,
                        counters: counters.clone(),
                    };
                    return Some((Ok(connection), (listener, limiter, warned)));
                }
            }
        },
    )
}

/// Resolves when the connection must end: the miner was killed, or `drop` fired.
type Cut = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A TCP connection that may be cut and is counted while open.
pub(crate) struct SimConnection {
    stream: TcpStream,
    cut: Cut,
    counters: Arc<ConnectionCounters>,
}

impl SimConnection {
    fn check_cut(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.cut.as_mut().poll(cx).is_ready() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "simulated connection drop",
            ));
        }
        Ok(())
    }
}

impl Drop for SimConnection {
    fn drop(&mut self) {
        self.counters.open.fetch_sub(1, Relaxed);
    }
}

impl Connected for SimConnection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for SimConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check_cut(cx)?;
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check_cut(cx)?;
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
