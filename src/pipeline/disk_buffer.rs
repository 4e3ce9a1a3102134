//! A sink's disk buffer (`buffer: {type: disk}`) opened and watched: the
//! [`SegmentLog`] at `buffer.path`, what a previous run left in it counted and logged,
//! and its gauges kept current. What a record holds, and when it is acknowledged,
//! is the sink's to say.

use std::sync::atomic::Ordering::Relaxed;

use super::component::SinkContext;
use super::queue::DiskBuffer;
use super::stats::DropReason;
use crate::toolkit::segment_log::{LogError, SegmentLog};

#[derive(Debug, thiserror::Error)]
#[error("the disk buffer failed: {0}; check `buffer.path` (its disk, its permissions)")]
pub(crate) struct BufferFailed(#[from] pub(crate) LogError);

/// A segment is a 64th of the buffer, from 1 MiB to 64 MiB (and at most a quarter,
/// so acknowledged segments can always be removed): small enough that acknowledged
/// ones go soon, few enough to open quickly.
fn segment_size(max_size: u64) -> u64 {
    (max_size / 64).clamp(1 << 20, 64 << 20).min(max_size / 4)
}

/// Opens the sink's buffer (on the blocking pool: it reads every segment through),
/// acknowledges the records a previous run `delivered` without saving so, counts what
/// is left as taken in, and reports damage found.
pub(crate) async fn open(
    disk: &DiskBuffer,
    ctx: &SinkContext,
    delivered: Vec<u64>,
) -> Result<SegmentLog, BufferFailed> {
    let (path, max_size) = (disk.path.clone(), disk.max_size.0);
    let (log, recovery) = tokio::task::spawn_blocking(move || {
        let (mut log, mut recovery) = SegmentLog::open(&path, max_size, segment_size(max_size))?;
        if !delivered.is_empty() {
            let before = log.records();
            for seq in delivered {
                log.ack(seq)?;
            }
            log.save_acks()?;
            recovery.pending -= before - log.records();
        }
        Ok::<_, LogError>((log, recovery))
    })
    .await
    .map_err(|e| LogError::Io {
        path: disk.path.clone(),
        source: std::io::Error::other(e.to_string()),
    })??;
    let stats = &ctx.stats.disk;
    stats.enabled.store(true, Relaxed);
    stats.max_bytes.store(max_size, Relaxed);
    stats
        .warn_at_permille
        .store((disk.warn_at * 1000.0) as u64, Relaxed);
    stats.corrupt.fetch_add(recovery.corrupt, Relaxed);
    stats
        .truncated_bytes
        .fetch_add(recovery.truncated_bytes, Relaxed);
    // A sink restarted by a reload finds what its predecessor left, already counted.
    let left_by_predecessor = stats.samples.load(Relaxed);
    ctx.stats
        .recovered(recovery.pending.saturating_sub(left_by_predecessor));
    if recovery.corrupt > 0 || recovery.truncated_bytes > 0 {
        tracing::warn!(sink = %ctx.id, path = %disk.path.display(), corrupt_records = recovery.corrupt, truncated_bytes = recovery.truncated_bytes, "the disk buffer had damage (a crash, or the disk): the damaged records are skipped, the rest delivered");
    }
    if recovery.pending > 0 {
        tracing::info!(sink = %ctx.id, samples = recovery.pending, took = ?recovery.took, "delivering what the disk buffer held from the last run");
    }
    publish(&log, ctx);
    Ok(log)
}

/// Sets the buffer's gauges.
pub(crate) fn publish(log: &SegmentLog, ctx: &SinkContext) {
    let disk = &ctx.stats.disk;
    disk.samples.store(log.records(), Relaxed);
    disk.bytes.store(log.bytes(), Relaxed);
    disk.oldest_age_ms.store(
        log.oldest_age().map_or(0, |a| a.as_millis() as u64),
        Relaxed,
    );
}

/// A whole record (its checksum is good) this version cannot read (`why`): counted as
/// dropped (`write_failed`) and acknowledged, so it is not read again.
pub(crate) fn unreadable(
    log: &mut SegmentLog,
    seq: u64,
    why: &dyn std::fmt::Display,
    ctx: &SinkContext,
) -> Result<(), BufferFailed> {
    tracing::warn!(sink = %ctx.id, record = seq, %why, "a disk buffer record is not one this version wrote; it is counted as dropped (write_failed)");
    ctx.stats.dropped(DropReason::WriteFailed, 1);
    log.ack(seq)?;
    Ok(())
}

/// Counts the records the reader found damaged on disk since they were written: they
/// cannot be delivered (dropped, `write_failed`).
pub(crate) fn count_lost(log: &mut SegmentLog, ctx: &SinkContext) {
    let lost = log.take_lost();
    if lost > 0 {
        tracing::warn!(sink = %ctx.id, samples = lost, "records of the disk buffer were damaged on disk after they were written; they are counted as dropped (write_failed)");
        ctx.stats.dropped(DropReason::WriteFailed, lost as usize);
    }
}

/// Syncs what was appended and saves the acknowledgements (blocking work, done in
/// place: the sink waits for its disk either way).
pub(crate) fn sync(log: &mut SegmentLog) -> Result<(), BufferFailed> {
    tokio::task::block_in_place(|| log.sync().and_then(|()| log.save_acks()))?;
    Ok(())
}
