//! The Kafka sink's loop: encode, hand to librdkafka within the in-flight bound, count
//! each delivery report, and bound the wait at shutdown.

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::stream::{FuturesUnordered, StreamExt};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::time::Instant;

use super::config::{InFlightLimits, KafkaConfig};
use super::encoder::{Encoder, Message, SCHEMA_VERSION};
use super::producer::{self, ClientStats, Events};
use crate::pipeline::batch::Reservation;
use crate::pipeline::component::{ComponentResult, SinkContext};
use crate::pipeline::stats::DropReason;
use crate::toolkit::log_budget::LogBudget;
use crate::toolkit::sample::Sample;

/// How long without any delivery, while messages wait, before the sink says so.
const STALLED_AFTER: Duration = Duration::from_secs(10);

/// What a message in flight holds beyond its topic, key and payload, charged to the
/// memory budget with them: librdkafka's message and header copies and the delivery
/// future here. An estimate on the high side.
const MESSAGE_OVERHEAD: usize = 512;

#[derive(Debug, thiserror::Error)]
pub(super) enum KafkaSinkError {
    #[error("cannot create the Kafka producer: {0}")]
    Create(#[source] KafkaError),
    #[error("{undelivered} sample(s) were still undelivered when shutdown_timeout ({timeout:?}) passed; they may or may not have reached the broker. Check the broker, or raise `shutdown_timeout`")]
    Undelivered { undelivered: u64, timeout: Duration },
}

/// A delivery's outcome, the bytes the message held, its sample's miner, when it was
/// handed to the producer, and its record in the disk buffer (if there is one).
type Report = (Result<(), KafkaError>, usize, Stamp, Instant, Option<u64>);

/// A sample's miner and timestamp, for the log of a refusal and the age at delivery.
pub(super) type Stamp = (Arc<str>, DateTime<Utc>);
type Delivery = Pin<Box<dyn Future<Output = Report> + Send>>;

/// The delivery futures the sink awaits, and what they hold.
pub(super) struct InFlight {
    pub(super) reports: FuturesUnordered<Delivery>,
    bytes: usize,
    limits: InFlightLimits,
    /// What is in flight, charged to the memory budget (see [`InFlight::reserve`]).
    reservation: Reservation,
    last_delivery: Instant,
    /// When to check for a broker that has stopped acknowledging.
    pub(super) watchdog: tokio::time::Interval,
    /// Lines about refused samples.
    refused: LogBudget,
    /// The disk buffer's records settled since the buffer last took them.
    pub(super) settled: Vec<u64>,
}

impl InFlight {
    pub(super) fn messages(&self) -> usize {
        self.reports.len()
    }

    pub(super) fn has_room(&self) -> bool {
        self.messages() < self.limits.messages && (self.bytes as u64) < self.limits.bytes.0
    }

    /// What the messages in flight are charged.
    fn charge(&self) -> usize {
        self.bytes + self.messages() * MESSAGE_OVERHEAD
    }

    /// Charges one more message of `size` bytes to the memory budget; `false` when
    /// the budget has no room for it, so the caller waits for a delivery to free some.
    /// With nothing in flight there is no delivery to wait for, and the message goes
    /// uncharged rather than never: the batch it came in is still charged meanwhile.
    pub(super) fn reserve(&mut self, size: usize) -> bool {
        let wanted = self.charge() + size + MESSAGE_OVERHEAD;
        self.reservation.try_resize(wanted) || self.messages() == 0
    }

    /// Says so when messages wait and nothing has been acknowledged for a while.
    pub(super) fn warn_if_stalled(&self, ctx: &SinkContext) {
        if self.messages() > 0 && self.last_delivery.elapsed() >= STALLED_AFTER {
            tracing::warn!(sink = %ctx.id, waiting = self.messages(), bytes = self.bytes, since_last_delivery = ?self.last_delivery.elapsed(), "no delivery from the broker; samples wait and the pipeline is held back once `max_in_flight` is reached. Check the brokers");
        }
    }

    /// Accounts for one delivery report. A disk buffer's record it settles (delivered,
    /// or refused for good and counted as dropped) goes to `settled`.
    pub(super) fn settle(
        &mut self,
        (report, size, sample, sent, record): Report,
        ctx: &SinkContext,
    ) {
        let (miner, timestamp) = sample;
        self.settled.extend(record);
        self.bytes -= size;
        self.reservation.try_resize(self.charge());
        ctx.stats.in_flight.fetch_sub(1, Relaxed);
        ctx.stats.delivery.record(sent.elapsed());
        let Err(error) = report else {
            self.last_delivery = Instant::now();
            ctx.stats.delivered(std::iter::once(timestamp));
            ctx.stats.sent_bytes(size);
            return;
        };
        ctx.stats.dropped(DropReason::DeliveryFailed, 1);
        if self.refused.allow() {
            tracing::error!(sink = %ctx.id, miner = %miner, %error, suppressed_so_far = self.refused.suppressed(), "the broker refused a sample for good; it is counted as dropped (delivery_failed). Check the topic exists and may be written, and `message.max.bytes`");
        }
    }
}

/// What turns samples into messages and hands them to librdkafka.
pub(super) struct Sender {
    producer: FutureProducer<Events>,
    pub(super) encoder: Encoder,
    headers: OwnedHeaders,
    /// Reused for every sample.
    pub(super) message: Message,
}

/// What became of a message handed to the producer.
pub(super) enum Handed {
    /// It is in flight: its delivery report will settle it.
    InFlight,
    /// The producer refused it for good (counted as dropped).
    Refused,
}

/// The shutdown deadline passed before everything could be handed over or delivered.
pub(super) struct TimeIsUp;

/// When the sink stops waiting at shutdown: `shutdown_timeout` after the pipeline
/// starts to stop (or the input closes).
pub(super) struct Deadline {
    pub(super) at: Option<Instant>,
    pub(super) timeout: Duration,
}

impl Deadline {
    pub(super) fn start(&mut self) {
        self.at.get_or_insert_with(|| Instant::now() + self.timeout);
    }
}

/// The producer, its bounds and its deadline, ready to deliver.
pub(super) type Parts = (Sender, InFlight, Deadline);

/// Creates the producer and what bounds it.
pub(super) fn prepare(
    config: &KafkaConfig,
    ctx: &SinkContext,
    client: Arc<ClientStats>,
) -> Result<Parts, Box<dyn std::error::Error + Send + Sync>> {
    let encoder = Encoder::new(&config.topic, &config.key, config.encoding)?;
    let producer = producer::create(config, &ctx.id, client).map_err(KafkaSinkError::Create)?;
    let agent_id = config.agent_id.clone().unwrap_or_else(host_name);
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "content-type",
            value: Some(encoder.content_type()),
        })
        .insert(Header {
            key: "schema-version",
            value: Some(SCHEMA_VERSION),
        })
        .insert(Header {
            key: "agent-id",
            value: Some(agent_id.as_str()),
        });
    let sender = Sender {
        producer,
        encoder,
        headers,
        message: Message::default(),
    };
    let flight = InFlight {
        reports: FuturesUnordered::new(),
        bytes: 0,
        limits: config.max_in_flight.clone(),
        reservation: Reservation::new(&ctx.budget),
        last_delivery: Instant::now(),
        watchdog: tokio::time::interval(STALLED_AFTER),
        refused: LogBudget::new(NonZeroU32::MIN, NonZeroU32::new(10).expect("10 > 0")),
        settled: Vec::new(),
    };
    let deadline = Deadline {
        at: None,
        timeout: config.shutdown_timeout.0,
    };
    Ok((sender, flight, deadline))
}

/// Delivers from the queue (the memory buffer alone) until the input closes.
pub(super) async fn run(
    (mut sender, mut flight, mut deadline): Parts,
    mut ctx: SinkContext,
) -> ComponentResult {
    let in_time = loop {
        tokio::select! {
            biased;
            Some(report) = flight.reports.next(), if flight.messages() > 0 => flight.settle(report, &ctx),
            _ = ctx.stopping.cancelled(), if deadline.at.is_none() => deadline.start(),
            _ = sleep_until(deadline.at) => break false,
            batch = ctx.input.recv(), if flight.has_room() => {
                let Some(batch) = batch else { break true };
                if sender.send_batch(batch.samples(), &mut flight, &ctx, &mut deadline).await.is_err() {
                    break false;
                }
            }
            _ = flight.watchdog.tick() => flight.warn_if_stalled(&ctx),
        }
    };

    // The input has closed (or time is up): deliver what is in flight, within the deadline.
    deadline.start();
    if in_time {
        while flight.messages() > 0 {
            if wait_for_report(&mut flight, &ctx, &mut deadline)
                .await
                .is_err()
            {
                break;
            }
        }
    }
    ctx.stats
        .dropped(DropReason::ShutdownTimeout, flight.messages());
    ctx.stats.in_flight.store(0, Relaxed);
    // Whatever upstream still sends can no longer be delivered in time.
    while let Some(batch) = ctx.input.recv().await {
        ctx.stats.dropped(DropReason::ShutdownTimeout, batch.len());
    }
    sender.close().await;
    let undelivered = ctx.stats.dropped_for(DropReason::ShutdownTimeout);
    if undelivered > 0 {
        return Err(KafkaSinkError::Undelivered {
            undelivered,
            timeout: deadline.timeout,
        }
        .into());
    }
    Ok(())
}

impl Sender {
    /// Drops the producer: it purges what it still holds (a disk buffer keeps its
    /// copy) and waits up to 500 ms for librdkafka to let go, blocking work, so off
    /// the runtime's threads.
    pub(super) async fn close(self) {
        let _ = tokio::task::spawn_blocking(move || drop(self)).await;
    }

    /// Hands every sample to the producer, waiting for deliveries whenever the
    /// in-flight bound is reached. If the shutdown deadline passes first, what was not
    /// handed over is counted as dropped.
    async fn send_batch(
        &mut self,
        samples: &[Sample],
        flight: &mut InFlight,
        ctx: &SinkContext,
        deadline: &mut Deadline,
    ) -> Result<(), TimeIsUp> {
        for (i, sample) in samples.iter().enumerate() {
            self.encoder.encode(sample, &mut self.message);
            let stamp = (sample.miner_id.clone(), sample.timestamp);
            let handed = self.send_one(stamp, None, flight, ctx, deadline).await;
            if let Err(time_is_up) = handed {
                ctx.stats
                    .dropped(DropReason::ShutdownTimeout, samples.len() - i);
                return Err(time_is_up);
            }
        }
        Ok(())
    }

    /// Hands the encoded message (of a sample stamped `stamp`, kept in the disk buffer
    /// as `record`) over once there is room.
    pub(super) async fn send_one(
        &self,
        stamp: Stamp,
        record: Option<u64>,
        flight: &mut InFlight,
        ctx: &SinkContext,
        deadline: &mut Deadline,
    ) -> Result<Handed, TimeIsUp> {
        loop {
            if !flight.has_room() || !flight.reserve(self.message.size()) {
                wait_for_report(flight, ctx, deadline).await?;
                continue;
            }
            match send(
                &self.producer,
                &self.message,
                &self.headers,
                stamp.clone(),
                record,
            ) {
                Ok(report) => {
                    flight.bytes += self.message.size();
                    flight.reports.push(report);
                    ctx.stats.in_flight.fetch_add(1, Relaxed);
                    return Ok(Handed::InFlight);
                }
                // librdkafka's own queue is full (its limits were lowered in
                // `librdkafka:`): wait for a delivery, then send again.
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    if flight.messages() == 0 {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    } else {
                        wait_for_report(flight, ctx, deadline).await?;
                    }
                }
                Err(error) => {
                    ctx.stats.dropped(DropReason::DeliveryFailed, 1);
                    if flight.refused.allow() {
                        let (topic, miner) = (&self.message.topic, &stamp.0);
                        tracing::error!(sink = %ctx.id, %miner, %topic, %error, "the producer refused a sample; it is counted as dropped (delivery_failed)");
                    }
                    return Ok(Handed::Refused);
                }
            }
        }
    }
}

/// Hands one message to the producer; the future resolves with its delivery report.
fn send(
    producer: &FutureProducer<Events>,
    message: &Message,
    headers: &OwnedHeaders,
    miner: Stamp,
    buffered: Option<u64>,
) -> Result<Delivery, KafkaError> {
    let headers = headers.clone().insert(Header {
        key: "sample-id",
        value: Some(message.id.as_str()),
    });
    let record = FutureRecord::to(&message.topic)
        .key(&message.key)
        .payload(&message.payload)
        .headers(headers);
    let delivery = producer.send_result(record).map_err(|(error, _)| error)?;
    let (size, sent) = (message.size(), Instant::now());
    Ok(Box::pin(async move {
        let outcome = match delivery.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((error, _message))) => Err(error),
            // The producer went away with the message (only when the sink is dropped).
            Err(_canceled) => Err(KafkaError::Canceled),
        };
        (outcome, size, miner, sent, buffered)
    }))
}

/// Waits for one delivery report and settles it; `TimeIsUp` if the shutdown deadline
/// came first. Starts the deadline if the pipeline starts to stop meanwhile.
pub(super) async fn wait_for_report(
    flight: &mut InFlight,
    ctx: &SinkContext,
    deadline: &mut Deadline,
) -> Result<(), TimeIsUp> {
    loop {
        tokio::select! {
            biased;
            Some(report) = flight.reports.next() => {
                flight.settle(report, ctx);
                return Ok(());
            }
            _ = ctx.stopping.cancelled(), if deadline.at.is_none() => deadline.start(),
            _ = sleep_until(deadline.at) => return Err(TimeIsUp),
            _ = flight.watchdog.tick() => flight.warn_if_stalled(ctx),
        }
    }
}

/// Sleeps until `deadline`, or forever when there is none.
pub(super) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The `agent-id` header when the config names none.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "rigtap".to_string())
}
