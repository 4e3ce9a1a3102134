//! One miner's HTTP/2 connection, as the service tonic's generated clients call.
//!
//! tonic's own `Channel` puts two queues in front of the HTTP/2 connection: tower's
//! `Buffer` and hyper's dispatch channel, each an mpsc channel whose 32-slot blocks
//! hold whole requests, plus a reconnect layer. A heap profile of 2,000 miners showed
//! the two queues at 18 KiB a miner each, 350 MiB for a fleet of 10,000, and the
//! reconnect layer only duplicates what a miner task does on its own terms (backoff,
//! breaker, governors). So rigtap speaks to the h2 connection directly: a call opens
//! its HTTP/2 stream at once (HTTP/2 multiplexes; there is nothing to queue), and a
//! connection that fails fails its calls, which ends the session. [`drive`] runs the
//! connection and its keepalive pings.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use h2::client::{Connection, SendRequest};
use h2::{Ping, Reason, RecvStream, SendStream};
use http::uri::{Authority, Scheme};
use http_body::{Body as _, Frame};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::either::Either;
use tonic::body::Body;
use tonic::Status;

use super::answer_memory::{AnswerMemory, Charging, Framing};
use super::config::KeepaliveConfig;
use crate::fleet::stats::Method;
use crate::toolkit::counted::Counted;
use crate::toolkit::error_chain::chain;

/// A miner's connection: TCP, or TLS over it. The TLS state (about 1.1 KB) is boxed,
/// so that a plaintext connection does not carry room for it.
pub(super) type MinerIo = Either<TcpStream, Box<tokio_rustls::client::TlsStream<TcpStream>>>;

/// A handle on one open connection; clones share it. The connection closes when its
/// last handle is dropped and its calls have ended.
#[derive(Clone)]
pub(crate) struct MinerChannel {
    send: SendRequest<Bytes>,
    origin: Arc<(Scheme, Authority)>,
    /// Calls under way (sent, and their answer not read to its end).
    active: Arc<AtomicUsize>,
    /// Set when the miner left a keepalive ping unanswered and the connection was
    /// closed for it: its calls then fail for that reason.
    silent: Arc<AtomicBool>,
    answers: AnswerMemory,
    /// A bit per method ([`method_bit`]): its answer was dropped (its call's deadline
    /// passed) while waiting for room in the memory budget. A miner's calls run one
    /// of each method at a time, so a call clears its bit as it starts.
    starved: Arc<AtomicU64>,
}

/// `method`'s bit in [`MinerChannel`]'s `starved`.
fn method_bit(method: Method) -> u64 {
    1 << (method as u32)
}

impl MinerChannel {
    /// A channel over `send`, and the task that drives its connection (to spawn).
    pub(crate) fn new<T>(
        (send, connection): (SendRequest<Bytes>, Connection<T, Bytes>),
        scheme: Scheme,
        authority: Authority,
        keepalive: &KeepaliveConfig,
        answers: AnswerMemory,
    ) -> (Self, impl Future<Output = ()> + Send + 'static)
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let active = Arc::new(AtomicUsize::new(0));
        let silent = Arc::new(AtomicBool::new(false));
        let driven = drive(
            connection,
            keepalive.clone(),
            (active.clone(), silent.clone()),
            authority.clone(),
        );
        let channel = MinerChannel {
            send,
            origin: Arc::new((scheme, authority)),
            active,
            silent,
            answers,
            starved: Arc::default(),
        };
        (channel, driven)
    }

    /// A call of `method` begins: no answer of it starved yet.
    pub(crate) fn clear_starved(&self, method: Method) {
        self.starved.fetch_and(!method_bit(method), Relaxed);
    }

    /// Whether the answer of the last call of `method` was dropped while waiting for
    /// room in the memory budget: a call whose deadline passed meanwhile ran out of
    /// memory, not of the miner's time.
    pub(crate) fn starved(&self, method: Method) -> bool {
        self.starved.load(Relaxed) & method_bit(method) != 0
    }

    /// Whether the connection was closed because the miner answered no keepalive ping.
    pub(crate) fn went_silent(&self) -> bool {
        self.silent.load(Relaxed)
    }
}

type Answer = Result<http::Response<Answered>, Status>;

impl tower_service::Service<http::Request<Body>> for MinerChannel {
    type Response = http::Response<Answered>;
    type Error = Status;
    type Future = Pin<Box<dyn Future<Output = Answer> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        self.send.poll_ready(cx).map_err(lost)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The handle made ready goes to this call; the next call readies a fresh one.
        let fresh = self.send.clone();
        let mut send = std::mem::replace(&mut self.send, fresh);
        let (mut head, body) = request.into_parts();
        // `/braiins.bos.v1.MinerService/GetHashboards`: the method, for `starved`.
        let bit = head
            .uri
            .path()
            .rsplit('/')
            .next()
            .and_then(Method::named)
            .map_or(0, method_bit);
        // The generated clients give a path; HTTP/2 wants `:scheme` and `:authority`.
        let mut uri = std::mem::take(&mut head.uri).into_parts();
        uri.scheme = Some(self.origin.0.clone());
        uri.authority = Some(self.origin.1.clone());
        head.uri = match http::Uri::from_parts(uri) {
            Ok(uri) => uri,
            Err(e) => return Box::pin(std::future::ready(Err(Status::internal(e.to_string())))),
        };
        let ends = body.is_end_stream();
        let (response, stream) = match send.send_request(http::Request::from_parts(head, ()), ends)
        {
            Ok(sent) => sent,
            Err(e) => return Box::pin(std::future::ready(Err(lost(e)))),
        };
        // A call is under way until its answer is dropped.
        let active = Counted::new(&self.active);
        let answers = self.answers.clone();
        let starved = (self.starved.clone(), bit);
        Box::pin(async move {
            // The request is one small message: it is sent while the answer is awaited.
            let (_, response) = tokio::join!(send_body(body, stream, ends), response);
            let response = response.map_err(lost)?;
            Ok(response.map(|recv| Answered {
                recv,
                data_done: false,
                framing: Framing::default(),
                answers,
                charge: None,
                waiting: None,
                starved,
                _active: active,
            }))
        })
    }
}

/// Sends a request's body on its stream, within HTTP/2 flow control. A failure here
/// also fails the stream, which the answer reports.
async fn send_body(body: Body, mut stream: SendStream<Bytes>, ended: bool) -> Result<(), Status> {
    if ended {
        return Ok(());
    }
    let mut body = std::pin::pin!(body);
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let frame = match frame.into_data() {
            Ok(mut data) => {
                while !data.is_empty() {
                    stream.reserve_capacity(data.len());
                    let granted = poll_fn(|cx| stream.poll_capacity(cx))
                        .await
                        .ok_or_else(|| Status::unavailable("the stream closed"))?
                        .map_err(lost)?;
                    let chunk = data.split_to(granted.min(data.len()));
                    stream.send_data(chunk, false).map_err(lost)?;
                }
                continue;
            }
            Err(frame) => frame,
        };
        if let Ok(trailers) = frame.into_trailers() {
            return stream.send_trailers(trailers).map_err(lost);
        }
    }
    stream.send_data(Bytes::new(), true).map_err(lost)
}

/// An answer's body: its data frames (each one's flow-control credit given back as it
/// is read), then its trailers, where gRPC puts the call's status. A message larger
/// than one frame is charged to the memory budget before its data goes on, and the
/// charge (for the largest message) is held until the answer ends
/// ([`super::answer_memory`]).
pub(crate) struct Answered {
    recv: RecvStream,
    data_done: bool,
    framing: Framing,
    answers: AnswerMemory,
    charge: Option<OwnedSemaphorePermit>,
    /// A frame held back until its message's charge fits in the budget.
    waiting: Option<(Bytes, Charging)>,
    /// The channel's starved methods, and this call's bit, set if it is dropped
    /// while `waiting`.
    starved: (Arc<AtomicU64>, u64),
    _active: Counted,
}

impl Drop for Answered {
    fn drop(&mut self) {
        if self.waiting.is_some() {
            let (methods, bit) = &self.starved;
            methods.fetch_or(*bit, Relaxed);
        }
    }
}

impl Answered {
    /// Hands `data` on, giving back its flow-control credit.
    fn pass(&mut self, data: Bytes) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        // Fails only if the stream is gone, which the next poll reports.
        let _ = self.recv.flow_control().release_capacity(data.len());
        Poll::Ready(Some(Ok(Frame::data(data))))
    }
}

impl http_body::Body for Answered {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some((_, charging)) = &mut self.waiting {
            self.charge = Some(ready!(charging.as_mut().poll(cx)));
            let (data, _) = self.waiting.take().expect("waiting");
            return self.pass(data);
        }
        if !self.data_done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let held = self.charge.as_ref().map_or(0, |c| c.num_permits());
                    let size = self.framing.follow(&data);
                    // Charged once per answer, at its largest message: tonic keeps the
                    // buffer as large as that for as long as the answer lasts.
                    if let Some(size) = size.filter(|s| *s > held && self.answers.reads(*s)) {
                        self.charge = None;
                        match self.answers.charge(size) {
                            Ok(permit) => self.charge = Some(permit),
                            Err(charging) => {
                                self.waiting = Some((data, charging));
                                return self.as_mut().poll_frame(cx);
                            }
                        }
                    }
                    return self.pass(data);
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(lost(e)))),
                None => self.data_done = true,
            }
        }
        Poll::Ready(match ready!(self.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Some(Ok(Frame::trailers(trailers))),
            Ok(None) => None,
            Err(e) => Some(Err(lost(e))),
        })
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }
}

/// Runs the connection until it closes (every handle dropped and its calls over) or
/// fails, pinging the miner every `keepalive.interval` while calls are under way (or
/// always, with `while_idle`). A ping unanswered within `keepalive.timeout` closes
/// the connection, which fails its calls: a silent miner is found out.
///
/// A plain function returning an `async move` block, not an `async fn`: an `async fn`
/// keeps its arguments twice in its future (as given, and moved into its body), and
/// this future is one per miner, with the connection (about 1.3 KB) in it.
#[allow(clippy::manual_async_fn)] // on purpose, above
fn drive<T>(
    mut connection: Connection<T, Bytes>,
    keepalive: KeepaliveConfig,
    (active, silent): (Arc<AtomicUsize>, Arc<AtomicBool>),
    miner: Authority,
) -> impl Future<Output = ()>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    async move {
        let Some(mut ping_pong) = connection.ping_pong() else {
            // Taken only here; h2 hands it out once.
            return;
        };
        let (interval, timeout) = (keepalive.interval.0, keepalive.timeout.0);
        let pinging = async {
            loop {
                tokio::time::sleep(interval).await;
                if !keepalive.while_idle && active.load(Relaxed) == 0 {
                    continue;
                }
                match tokio::time::timeout(timeout, ping_pong.ping(Ping::opaque())).await {
                    Ok(Ok(_pong)) => {}
                    // The connection failed; the connection itself reports how.
                    Ok(Err(_)) => return std::future::pending().await,
                    Err(_) => return timeout,
                }
            }
        };
        tokio::select! {
            ended = &mut connection => {
                if let Err(e) = ended {
                    tracing::debug!(%miner, error = %chain(&e), "connection to the miner ended");
                }
            }
            waited = pinging => {
                silent.store(true, Relaxed);
                tracing::debug!(%miner, ?waited, "the miner answered no keepalive ping: closing its connection");
            }
        }
    }
}

/// A call's failure on the connection, as gRPC's HTTP/2 mapping has it: a connection
/// that failed (closed, reset, I/O or TLS error, GOAWAY) or a stream refused makes the
/// miner unavailable; a cancelled stream is cancelled. The cause stays the status's
/// source, where the TLS problem behind it is found.
fn lost(error: h2::Error) -> Status {
    let text = format!("the connection failed: {}", chain(&error));
    let mut status = match error.reason() {
        _ if error.is_io() || error.is_go_away() => Status::unavailable(text),
        Some(Reason::REFUSED_STREAM) => Status::unavailable(text),
        Some(Reason::CANCEL) => Status::cancelled(text),
        Some(Reason::ENHANCE_YOUR_CALM) => Status::resource_exhausted(text),
        Some(_) => Status::internal(text),
        None => Status::unavailable(text),
    };
    status.set_source(Arc::new(error));
    status
}

/// A channel over an in-memory pipe nobody answers (not even the HTTP/2 handshake),
/// for tests of what holds channels and of keepalive.
#[cfg(test)]
pub(crate) async fn unanswered() -> MinerChannel {
    silent(KeepaliveConfig {
        interval: crate::toolkit::units::HumanDuration(std::time::Duration::from_secs(3600)),
        timeout: crate::toolkit::units::HumanDuration(std::time::Duration::from_secs(20)),
        while_idle: false,
    })
    .await
}

#[cfg(test)]
async fn silent(keepalive: KeepaliveConfig) -> MinerChannel {
    let (ours, theirs) = tokio::io::duplex(64 << 10);
    let handshake = h2::client::handshake(ours)
        .await
        .expect("the handshake only writes the preface");
    let answers = AnswerMemory::new(
        crate::pipeline::batch::MemoryBudget::new(1 << 20),
        4 << 20,
        Arc::default(),
    );
    let (channel, driven) = MinerChannel::new(
        handshake,
        Scheme::HTTP,
        Authority::from_static("127.0.0.1:9"),
        &keepalive,
        answers,
    );
    tokio::spawn(async move {
        let _theirs = theirs;
        driven.await;
    });
    channel
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tower_service::Service;

    use super::*;
    use crate::toolkit::units::HumanDuration;

    fn keepalive(while_idle: bool) -> KeepaliveConfig {
        KeepaliveConfig {
            interval: HumanDuration(Duration::from_secs(10)),
            timeout: HumanDuration(Duration::from_secs(5)),
            while_idle,
        }
    }

    async fn open_after(mut channel: MinerChannel, wait: Duration) -> bool {
        tokio::time::sleep(wait).await;
        // Not ready (at the peer's stream limit) is still open; closed is an error.
        poll_fn(|cx| match channel.poll_ready(cx) {
            Poll::Ready(ready) => Poll::Ready(ready.is_ok()),
            Poll::Pending => Poll::Ready(true),
        })
        .await
    }

    #[test]
    fn a_connections_driver_holds_the_connection_once() {
        use crate::toolkit::future_size::future_size;
        let connection = std::mem::size_of::<Connection<MinerIo, Bytes>>();
        let driver = future_size!(
            drive::<MinerIo>,
            Connection<MinerIo, Bytes>,
            KeepaliveConfig,
            (Arc<AtomicUsize>, Arc<AtomicBool>),
            Authority
        );
        // Inline, the TLS state took 1.1 KB of every connection; and an `async fn`
        // held the connection twice.
        assert!(connection < 2048, "a connection: {connection} bytes");
        assert!(
            driver < connection + 1024,
            "{driver} bytes to drive {connection}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_miner_is_found_out_by_keepalive() {
        // Pinged after 10 s, unanswered for 5 s: closed.
        let channel = silent(keepalive(true)).await;
        assert!(open_after(channel.clone(), Duration::from_secs(9)).await);
        assert!(!open_after(channel, Duration::from_secs(7)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_not_pinged_unless_asked() {
        let channel = silent(keepalive(false)).await;
        assert!(open_after(channel, Duration::from_secs(60)).await);
    }

    #[tokio::test]
    async fn an_answer_dropped_while_it_waits_for_the_budget_is_counted() {
        // A budget all in use: the answer's 64 KiB message cannot be charged.
        let budget = crate::pipeline::batch::MemoryBudget::new(1 << 20);
        let _full = budget.try_charge(1 << 20).expect("an empty budget");
        let answers = AnswerMemory::new(budget, 4 << 20, Arc::default());
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let miner = tokio::spawn(async move {
            let mut connection = h2::server::handshake(theirs).await.unwrap();
            let (_, mut respond) = connection.accept().await.unwrap().unwrap();
            let answer = http::Response::builder()
                .header("content-type", "application/grpc")
                .body(())
                .unwrap();
            let mut data = respond.send_response(answer, false).unwrap();
            // A message's prefix declaring 64 KiB, and the first of them.
            let mut message = vec![0u8];
            message.extend_from_slice(&(64u32 << 10).to_be_bytes());
            message.resize(1024, 7);
            data.send_data(Bytes::from(message), false).unwrap();
            // Serve the connection (without ending the answer) until the client goes.
            let _data = data;
            while connection.accept().await.is_some() {}
        });
        let handshake = h2::client::handshake(ours).await.unwrap();
        let (mut channel, driven) = MinerChannel::new(
            handshake,
            Scheme::HTTP,
            Authority::from_static("127.0.0.1:9"),
            &keepalive(false),
            answers,
        );
        let driver = tokio::spawn(driven);
        poll_fn(|cx| channel.poll_ready(cx)).await.unwrap();
        let request = http::Request::builder()
            .uri("/braiins.bos.v1.MinerService/GetHashboards")
            .body(Body::empty())
            .unwrap();
        let mut answer = channel.call(request).await.unwrap().into_body();
        let waited = tokio::time::timeout(Duration::from_millis(200), answer.frame()).await;
        assert!(waited.is_err(), "the message waits for room in the budget");
        assert!(!channel.starved(Method::GetHashboards), "still waiting");
        drop(answer);
        assert!(channel.starved(Method::GetHashboards));
        assert!(
            !channel.starved(Method::GetCoolingState),
            "the method's own"
        );
        channel.clear_starved(Method::GetHashboards);
        assert!(!channel.starved(Method::GetHashboards));
        drop(channel);
        driver.await.unwrap();
        miner.await.unwrap();
    }
}
