//! The Kafka sink with a disk buffer (`buffer: {type: disk, path, max_size}`).
//!
//! Each sample taken from the queue is encoded and appended to the buffer
//! ([`SegmentLog`]) before anything else; the producer is fed from the buffer, within
//! the in-flight bound, and a record is removed only once the broker acknowledged it
//! (or refused it for good, counted as dropped). Acknowledgements are saved every
//! `sync_every`, with the appended records synced to disk. A full buffer holds the
//! pipeline back (`when_full: block`) or drops new samples, counted
//! (`drop_newest`, reason `buffer_full`).
//!
//! At the start, what a previous run left unacknowledged is delivered first, so each
//! miner's samples stay in order. At shutdown the sink delivers what it can until
//! `shutdown_timeout`; the rest stays in the buffer, not dropped, for the next start.
//! Kafka is at-least-once across a crash: a record delivered and not yet saved as
//! acknowledged is delivered again; consumers deduplicate on the message key with the
//! sample's timestamp, kind and board (see the README).

use std::sync::atomic::Ordering::Relaxed;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;

use super::sink::{sleep_until, Handed, InFlight, Parts, Sender, Stamp};
use crate::pipeline::batch::SharedBatch;
use crate::pipeline::component::{ComponentResult, SinkContext};
use crate::pipeline::disk_buffer::{self, publish, BufferFailed};
use crate::pipeline::queue::{DiskBuffer, WhenFull};
use crate::pipeline::stats::DropReason;
use crate::toolkit::segment_log::SegmentLog;

/// A record: the sample's stamp, then the message's topic, key, sample id and payload.
fn encode(stamp: &Stamp, message: &super::Message, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&stamp.1.timestamp_millis().to_le_bytes());
    for field in [
        stamp.0.as_bytes(),
        message.topic.as_bytes(),
        message.key.as_bytes(),
        message.id.as_bytes(),
    ] {
        out.extend_from_slice(&(field.len() as u32).to_le_bytes());
        out.extend_from_slice(field);
    }
    out.extend_from_slice(&message.payload);
}

/// A record back into its stamp and message; `None` for bytes this version did not
/// write.
fn decode(record: &[u8], message: &mut super::Message) -> Option<Stamp> {
    let millis = i64::from_le_bytes(record.get(..8)?.try_into().ok()?);
    let mut rest = &record[8..];
    let mut field = || -> Option<String> {
        let length = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let text = std::str::from_utf8(rest.get(4..4 + length)?)
            .ok()?
            .to_string();
        rest = &rest[4 + length..];
        Some(text)
    };
    let (miner, topic, key, id) = (field()?, field()?, field()?, field()?);
    message.topic = topic;
    message.key = key;
    message.id = id;
    message.payload.clear();
    message.payload.extend_from_slice(rest);
    Some((
        miner.into(),
        DateTime::<Utc>::from_timestamp_millis(millis)?,
    ))
}

/// The batch being appended, and how far: a full buffer holds the rest back.
struct Appending {
    batch: SharedBatch,
    next: usize,
}

pub(super) async fn run(
    disk: DiskBuffer,
    (mut sender, mut flight, mut deadline): Parts,
    mut ctx: SinkContext,
) -> ComponentResult {
    let mut log = disk_buffer::open(&disk, &ctx, Vec::new()).await?;

    let mut record = Vec::new();
    let mut sync = tokio::time::interval(disk.sync_every.0);
    let mut appending: Option<Appending> = None;
    // A record read from the buffer that waits for room in the memory budget.
    let mut next: Option<(u64, Vec<u8>)> = None;
    let mut input_closed = false;
    let outcome: Result<(), BufferFailed> = async {
        loop {
            ack_settled(&mut flight, &mut log)?;
            // Feed the producer from the buffer while there is room in flight and in
            // the memory budget; never wait here, so appends go on meanwhile.
            while flight.has_room() {
                let (seq, bytes) = match next.take() {
                    Some(record) => record,
                    None => match log.read_next()? {
                        Some(record) => record,
                        None => break,
                    },
                };
                let Some(stamp) = decode(&bytes, &mut sender.message) else {
                    disk_buffer::unreadable(&mut log, seq, &"not a Kafka message record", &ctx)?;
                    continue;
                };
                if !flight.reserve(sender.message.size()) {
                    next = Some((seq, bytes));
                    break;
                }
                match sender
                    .send_one(stamp, Some(seq), &mut flight, &ctx, &mut deadline)
                    .await
                {
                    Ok(Handed::InFlight) => {}
                    Ok(Handed::Refused) => log.ack(seq)?,
                    Err(_time_is_up) => return Ok(()),
                }
                ack_settled(&mut flight, &mut log)?;
            }
            disk_buffer::count_lost(&mut log, &ctx);
            // Append what waits, as far as there is room.
            if let Some(mut held) = appending.take() {
                let appended = append(&mut log, &mut sender, &mut held, &ctx, disk.when_full, &mut record)
                    .and_then(|()| Ok(log.flush()?));
                let whole = held.next == held.batch.len();
                // In the file (or the sink fails on it): its producer may go on.
                if whole || appended.is_err() {
                    ctx.input.handed_off();
                }
                appended?;
                appending = (!whole).then_some(held);
            }
            publish(&log, &ctx);
            if input_closed && appending.is_none() && log.records() == 0 {
                return Ok(());
            }
            tokio::select! {
                biased;
                Some(report) = flight.reports.next(), if flight.messages() > 0 => flight.settle(report, &ctx),
                _ = ctx.stopping.cancelled(), if deadline.at.is_none() => deadline.start(),
                _ = sleep_until(deadline.at) => return Ok(()),
                batch = ctx.input.recv(), if appending.is_none() && !input_closed => match batch {
                    Some(batch) => appending = Some(Appending { batch, next: 0 }),
                    // The pipeline stops, or a reload retires this sink: deliver what
                    // can be within the deadline, leave the rest on disk.
                    None => {
                        input_closed = true;
                        deadline.start();
                    }
                },
                _ = sync.tick() => {
                    disk_buffer::sync(&mut log)?;
                }
                _ = flight.watchdog.tick() => flight.warn_if_stalled(&ctx),
            }
        }
    }
    .await;

    // What was delivered is saved as such; what still comes in is appended (no
    // waiting for room now: what does not fit is counted, `buffer_full`); the rest
    // stays for the next start.
    let closing = async {
        ack_settled(&mut flight, &mut log)?;
        let mut held = appending.take();
        loop {
            if let Some(mut batch) = held.take() {
                let no_wait = WhenFull::DropNewest;
                let appended = append(
                    &mut log,
                    &mut sender,
                    &mut batch,
                    &ctx,
                    no_wait,
                    &mut record,
                )
                .and_then(|()| Ok(log.flush()?));
                ctx.input.handed_off();
                appended?;
            }
            match ctx.input.recv().await {
                Some(batch) => held = Some(Appending { batch, next: 0 }),
                None => break,
            }
        }
        disk_buffer::sync(&mut log)?;
        Ok::<(), BufferFailed>(())
    }
    .await;
    ctx.stats.in_flight.store(0, Relaxed);
    publish(&log, &ctx);
    // Said even when the sink fails: they are in no other count of its ledger.
    if log.records() > 0 {
        tracing::info!(sink = %ctx.id, samples = log.records(), path = %disk.path.display(), "samples not yet delivered stay in the disk buffer; the next start delivers them");
    }
    outcome?;
    closing?;
    sender.close().await;
    Ok(())
}

/// Removes from the buffer the records whose delivery reports came in.
fn ack_settled(flight: &mut InFlight, log: &mut SegmentLog) -> Result<(), BufferFailed> {
    for seq in flight.settled.drain(..) {
        log.ack(seq)?;
    }
    Ok(())
}

/// Appends `held`'s samples from where it got to, while there is room; a full buffer
/// either keeps the rest for later (`block`) or drops it, counted.
fn append(
    log: &mut SegmentLog,
    sender: &mut Sender,
    held: &mut Appending,
    ctx: &SinkContext,
    when_full: WhenFull,
    record: &mut Vec<u8>,
) -> Result<(), BufferFailed> {
    let samples = held.batch.samples();
    while let Some(sample) = samples.get(held.next) {
        sender.encoder.encode(sample, &mut sender.message);
        let stamp = (sample.miner_id.clone(), sample.timestamp);
        encode(&stamp, &sender.message, record);
        if !log.has_room_for(record.len())? {
            match when_full {
                WhenFull::Block => return Ok(()),
                WhenFull::DropNewest => {
                    ctx.stats
                        .dropped(DropReason::BufferFull, samples.len() - held.next);
                    held.next = samples.len();
                    return Ok(());
                }
            }
        }
        log.append(record)?;
        ctx.stats.disk.samples.fetch_add(1, Relaxed);
        held.next += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_holds_the_message_and_its_stamp() {
        let message = super::super::Message {
            topic: "fleet".into(),
            key: "m-1".into(),
            payload: vec![1, 2, 3, 0, 255],
            id: "m-1/1700000000123/miner/-".into(),
        };
        let stamp: Stamp = (
            "m-1".into(),
            DateTime::from_timestamp_millis(1_700_000_000_123).unwrap(),
        );
        let mut record = Vec::new();
        encode(&stamp, &message, &mut record);
        let mut back = super::super::Message::default();
        assert_eq!(decode(&record, &mut back), Some(stamp));
        assert_eq!(back, message);
        assert_eq!(
            decode(&record[..10], &mut back),
            None,
            "cut short: not read"
        );
    }
}
