//! The parquet sink's loop: buffer per partition, encode on the blocking pool, rotate;
//! at most `max_open_files` files open, and what it holds charged to the memory budget.
//! With a disk buffer, each sample is appended to it when taken, and acknowledged
//! when its file is committed ([`commit`](super::commit)).

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_schema::SchemaRef;
use futures_util::stream::{FuturesUnordered, StreamExt};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::commit;
use super::config::{ParquetCompression, ParquetConfig, RotateConfig};
use super::encoder::{file_schema, record_batch};
use super::partition::PartitionTemplate;
use super::stats::{Early, ParquetStats};
use super::writer::{self, ClosedFile, DirectoryLock, OpenFile, ParquetError};
use crate::pipeline::batch::Reservation;
use crate::pipeline::component::{ComponentResult, SinkContext, Started};
use crate::pipeline::disk_buffer::{self, BufferFailed};
use crate::pipeline::stats::DropReason;
use crate::toolkit::sample::Sample;
use crate::toolkit::segment_log::SegmentLog;

/// One partition directory: samples waiting to be encoded and its open file.
#[derive(Default)]
struct Partition {
    pending: Vec<Sample>,
    /// With a disk buffer: the record of each pending sample.
    records: Vec<u64>,
    /// Estimated bytes of `pending`: the samples' own, and its slots.
    pending_bytes: usize,
    /// Boxed (464 bytes): a sink partitioned by miner keeps thousands of partitions,
    /// few of them with a file open, and the map's slots stay small.
    file: Option<Box<OpenFile>>,
    /// When its file was last written, as a place in [`Sink::recent`].
    written: u64,
}

/// What every blocking write needs.
struct Files {
    root: PathBuf,
    schema: SchemaRef,
    properties: WriterProperties,
    rotate: RotateConfig,
    /// Unique file names: [`file_prefix`], then [`FILES`].
    prefix: String,
    /// What a file may hold while it closes, beyond its rows ([`writer::closing_peak`]).
    closing_peak: usize,
}

/// Files finished at once at most (at the end, and when files reach `max_age`
/// together): their syncs overlap, and a second core encodes. 20,000 files finished
/// one at a time took 35 s.
const FINISHING_AT_ONCE: usize = 4;

/// The start of this sink's file names: its start time, the process id, and 32 random
/// bits, so a run that restarts within the same second as the last, with the same
/// process id (pid 1 in a container), never takes a name the last one finished.
fn file_prefix() -> String {
    format!(
        "part-{}-{}-{:08x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S"),
        std::process::id(),
        fastrand::u32(..)
    )
}

/// Files this process has opened: the last part of each name, so a sink started
/// again by a reload within the same second never reuses a name.
static FILES: AtomicUsize = AtomicUsize::new(0);

/// The disk buffer in front of the files.
struct Buffer {
    log: SegmentLog,
    dir: PathBuf,
    /// Reused for each record: the sample's JSON.
    record: Vec<u8>,
}

/// Samples read back from the disk buffer at the start are taken this many at a time.
const REPLAY_CHUNK: usize = 1024;

/// A line about files finished early is written at most this often.
const NOTICE_EVERY: Duration = Duration::from_secs(60);

pub(super) fn start(config: ParquetConfig, ctx: SinkContext) -> Started {
    let stats = Arc::new(ParquetStats::default());
    Started::task(run(config, ctx, stats.clone())).publishing(stats)
}

async fn run(
    config: ParquetConfig,
    mut ctx: SinkContext,
    stats: Arc<ParquetStats>,
) -> ComponentResult {
    let template = config.template()?;
    let root = config.path.clone();
    let disk = ctx.disk.take();
    let sync_every = disk
        .as_ref()
        .map_or(Duration::from_secs(3600), |d| d.sync_every.0);
    // Held until the sink returns: no other rigtap writes (or cleans) this tree meanwhile.
    let (_lock, committed, leftovers) = tokio::task::spawn_blocking({
        let (root, buffer) = (root.clone(), disk.as_ref().map(|d| d.path.clone()));
        move || {
            std::fs::create_dir_all(&root).map_err(|e| ParquetError::io(&root, e))?;
            let lock = DirectoryLock::acquire(&root)?;
            // A file a killed run committed is finished before temporaries go.
            let committed = match &buffer {
                Some(buffer) => {
                    std::fs::create_dir_all(buffer).map_err(|e| ParquetError::io(buffer, e))?;
                    commit::recover(buffer)?
                }
                None => None,
            };
            Ok::<_, ParquetError>((lock, committed, writer::remove_leftovers(&root)?))
        }
    })
    .await??;
    if leftovers > 0 {
        match disk {
            Some(_) => {
                tracing::info!(sink = %ctx.id, path = %root.display(), leftovers, "removed unfinished files left by an earlier run that was killed; their samples are in the disk buffer and are written again")
            }
            None => {
                tracing::warn!(sink = %ctx.id, path = %root.display(), leftovers, "removed unfinished files left by an earlier run that was killed; the samples in them were never delivered")
            }
        }
    }
    let buffer = match disk {
        Some(disk) => {
            let marked = committed.is_some();
            let log = disk_buffer::open(&disk, &ctx, committed.unwrap_or_default()).await?;
            if marked {
                tokio::task::block_in_place(|| commit::unmark(&disk.path))?;
            }
            Some(Buffer {
                log,
                dir: disk.path,
                record: Vec::new(),
            })
        }
        None => None,
    };

    let compression = match config.compression {
        ParquetCompression::Zstd => Compression::ZSTD(ZstdLevel::default()),
        ParquetCompression::Snappy => Compression::SNAPPY,
    };
    let schema = file_schema(&config.labels, template.columns());
    let zstd = matches!(compression, Compression::ZSTD(_));
    let mut sink = Sink {
        files: Arc::new(Files {
            root,
            properties: writer::properties(&schema, compression, config.row_group_rows),
            closing_peak: writer::closing_peak(schema.fields().len(), zstd),
            schema,
            rotate: config.rotate.clone(),
            prefix: file_prefix(),
        }),
        partitions: HashMap::new(),
        recent: BTreeMap::new(),
        writes: 0,
        pending_bytes: 0,
        writer_bytes: 0,
        names: 0,
        reservation: Reservation::new(&ctx.budget),
        stats,
        noticed: None,
        template,
        config,
        buffer,
    };
    let period = sink
        .config
        .batch
        .timeout
        .0
        .min(sink.config.rotate.max_age.0);
    // The first check comes one period in, not at once: nothing is old at the start.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let mut sync = tokio::time::interval(sync_every);

    let outcome: Result<(), ParquetError> = async {
        sink.replay(&ctx).await?;
        loop {
            tokio::select! {
                batch = ctx.input.recv() => {
                    let Some(batch) = batch else { break };
                    sink.take(batch.samples(), None, &ctx).await?;
                }
                _ = tick.tick() => sink.on_tick(&ctx).await?,
                _ = sync.tick(), if sink.buffer.is_some() => sink.sync_buffer(&ctx)?,
            }
        }
        sink.finish_all(&ctx, None).await?;
        sink.sync_buffer(&ctx)
    }
    .await;
    sink.stats.held_bytes.store(0, Relaxed);
    if let Err(error) = outcome {
        match &mut sink.buffer {
            // What was not written stays in the buffer (counted there), for the next start.
            Some(buffer) => {
                disk_buffer::publish(&buffer.log, &ctx);
                tracing::error!(sink = %ctx.id, samples = buffer.log.records(), "the parquet sink stopped; the samples it had not written stay in its disk buffer, and the next start writes them");
            }
            None => {
                let unwritten: usize = sink
                    .partitions
                    .values()
                    .map(|p| p.pending.len() + p.file.as_ref().map_or(0, |f| f.rows))
                    .sum();
                ctx.stats.dropped(DropReason::WriteFailed, unwritten);
                tracing::error!(sink = %ctx.id, "the parquet sink stopped; the sample(s) it held are counted as dropped (write_failed)");
            }
        }
        return Err(error.into());
    }
    Ok(())
}

/// The sink's state between batches.
struct Sink {
    files: Arc<Files>,
    partitions: HashMap<String, Partition>,
    /// Partitions with an open file, least recently written first.
    recent: BTreeMap<u64, String>,
    writes: u64,
    /// Estimated bytes of the samples waiting in every partition, with their slots.
    pending_bytes: usize,
    /// Estimated bytes every open writer holds.
    writer_bytes: usize,
    /// Bytes of the partitions' directory names, as the map's keys hold them.
    names: usize,
    /// [`Sink::held`], charged to the memory budget.
    reservation: Reservation,
    stats: Arc<ParquetStats>,
    /// When a line about files finished early was last written.
    noticed: Option<Instant>,
    template: PartitionTemplate,
    config: ParquetConfig,
    buffer: Option<Buffer>,
}

impl Sink {
    /// Takes in what the disk buffer holds from the last run, before anything new.
    async fn replay(&mut self, ctx: &SinkContext) -> Result<(), ParquetError> {
        let (mut samples, mut records) = (Vec::new(), Vec::new());
        loop {
            let Some(buffer) = &mut self.buffer else {
                return Ok(());
            };
            let next = buffer.log.read_next().map_err(BufferFailed)?;
            if let Some((seq, bytes)) = &next {
                match serde_json::from_slice::<Sample>(bytes) {
                    Ok(sample) => {
                        samples.push(sample);
                        records.push(*seq);
                    }
                    Err(error) => disk_buffer::unreadable(&mut buffer.log, *seq, &error, ctx)?,
                }
            }
            disk_buffer::count_lost(&mut buffer.log, ctx);
            if samples.len() >= REPLAY_CHUNK || (next.is_none() && !samples.is_empty()) {
                self.take(&samples, Some(&records), ctx).await?;
                samples.clear();
                records.clear();
            }
            if next.is_none() {
                return Ok(());
            }
        }
    }

    /// Appends `samples` to the disk buffer; their records. A full buffer has every
    /// file finished (their records are then acknowledged, which frees it); what
    /// still does not fit is counted as dropped (`buffer_full`), and not taken.
    async fn append(
        &mut self,
        samples: &[Sample],
        ctx: &SinkContext,
    ) -> Result<Vec<u64>, ParquetError> {
        let mut records = Vec::with_capacity(samples.len());
        for (i, sample) in samples.iter().enumerate() {
            let buffer = self.buffer.as_mut().expect("appending needs a buffer");
            buffer.record.clear();
            // A Sample always serializes, and writing to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut buffer.record, sample);
            if !buffer
                .log
                .has_room_for(buffer.record.len())
                .map_err(BufferFailed)?
            {
                self.finish_all(ctx, Some(Early::DiskBuffer)).await?;
            }
            let buffer = self.buffer.as_mut().expect("appending needs a buffer");
            if !buffer
                .log
                .has_room_for(buffer.record.len())
                .map_err(BufferFailed)?
            {
                ctx.stats.dropped(DropReason::BufferFull, samples.len() - i);
                break;
            }
            records.push(buffer.log.append(&buffer.record).map_err(BufferFailed)?);
        }
        let buffer = self.buffer.as_mut().expect("appending needs a buffer");
        // In the file now: a killed process loses none of it.
        buffer.log.flush().map_err(BufferFailed)?;
        disk_buffer::publish(&buffer.log, ctx);
        Ok(records)
    }

    /// Syncs the disk buffer and saves its acknowledgements (every `sync_every`).
    fn sync_buffer(&mut self, ctx: &SinkContext) -> Result<(), ParquetError> {
        if let Some(buffer) = &mut self.buffer {
            disk_buffer::sync(&mut buffer.log)?;
            disk_buffer::publish(&buffer.log, ctx);
        }
        Ok(())
    }

    /// Makes a closed file visible and acknowledges its records, as one commit.
    fn commit(
        &mut self,
        file: ClosedFile,
        mut records: Vec<u64>,
        ctx: &SinkContext,
    ) -> Result<(), ParquetError> {
        let buffer = self.buffer.as_mut().expect("a commit needs a buffer");
        records.sort_unstable();
        tokio::task::block_in_place(|| {
            // The records go to the disk before a marker can name them.
            buffer.log.sync().map_err(BufferFailed)?;
            commit::mark(&buffer.dir, &file, &records)?;
            file.publish()?;
            for seq in &records {
                buffer.log.ack(*seq).map_err(BufferFailed)?;
            }
            buffer.log.save_acks().map_err(BufferFailed)?;
            // The saved acknowledgements' rename is durable before the marker goes.
            writer::sync_dir(&buffer.dir)?;
            commit::unmark(&buffer.dir)
        })?;
        disk_buffer::publish(&buffer.log, ctx);
        Ok(())
    }

    /// Takes a batch's samples into their partitions' buffers, charging them to the
    /// budget first. With no room, everything held is written out and its files
    /// finished; with still no room (other components' batches fill the budget), the
    /// batch goes straight into files finished at once, so the sink holds nothing that
    /// is not charged.
    ///
    /// With a disk buffer the samples are appended to it first, unless they came from
    /// it (`replayed`: their records).
    async fn take(
        &mut self,
        samples: &[Sample],
        replayed: Option<&[u64]>,
        ctx: &SinkContext,
    ) -> Result<(), ParquetError> {
        let records = match (replayed, self.buffer.is_some()) {
            (Some(records), _) => records.to_vec(),
            (None, true) => {
                let records = self.append(samples, ctx).await?;
                // In the file: the batch's producer may go on.
                ctx.input.handed_off();
                records
            }
            (None, false) => Vec::new(),
        };
        let samples = match self.buffer.is_some() {
            true => &samples[..records.len()],
            false => samples,
        };
        // An estimate of what the batch adds: each sample and a second slot, as a
        // buffer grows by doubling. What it adds exactly (a new partition's first slots
        // and name, the map's growth) is charged once the samples are placed, below.
        let incoming: usize = samples
            .iter()
            .map(|s| s.estimated_bytes() + size_of::<Sample>())
            .sum();
        let mut through = false;
        if !self.reservation.try_resize(self.held() + incoming) {
            self.finish_all(ctx, Some(Early::MemoryBudget)).await?;
            // The map's slots stay after the finish.
            through = !self.reservation.try_resize(self.held() + incoming);
        }
        let mut touched = HashSet::new();
        for (i, sample) in samples.iter().enumerate() {
            let dir = self.template.render(sample);
            let partition = match self.partitions.entry(dir.clone()) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => {
                    self.names += name_bytes(entry.key());
                    entry.insert(Partition::default())
                }
            };
            touched.insert(dir);
            // What the sample holds beyond its slot, and the slots the buffer grows by:
            // a buffer holds up to twice its samples' slots as it grows.
            let capacity = partition.pending.capacity();
            partition.pending.push(sample.clone());
            let slots = partition.pending.capacity() - capacity;
            let bytes =
                sample.estimated_bytes() - size_of::<Sample>() + slots * size_of::<Sample>();
            partition.pending_bytes += bytes;
            self.pending_bytes += bytes;
            partition.records.extend(records.get(i));
        }
        // Charged exactly now; if it does not fit, written out as if over the budget.
        through = through || !self.reservation.try_resize(self.held());
        let (max_rows, max_bytes) = (self.config.batch.max_rows, self.config.batch.max_bytes.0);
        let files = touched.len();
        for dir in touched {
            let partition = &self.partitions[&dir];
            let full =
                partition.pending.len() >= max_rows || partition.pending_bytes as u64 >= max_bytes;
            if through || full {
                self.flush(&dir, ctx, through).await?;
            }
        }
        if through {
            // Each partition the batch touched went into a file finished at once.
            self.finished_early(Early::MemoryBudget, files, ctx);
        }
        Ok(())
    }

    /// Encodes what waited past `batch.timeout` and finishes files past `max_age`.
    async fn on_tick(&mut self, ctx: &SinkContext) -> Result<(), ParquetError> {
        let max_age = self.config.rotate.max_age.0;
        let due: Vec<(String, bool)> = self
            .partitions
            .iter()
            .filter_map(|(dir, p)| {
                let old = p
                    .file
                    .as_ref()
                    .is_some_and(|f| f.opened.elapsed() >= max_age);
                (!p.pending.is_empty() || old).then(|| (dir.clone(), old))
            })
            .collect();
        let (old, young): (Vec<_>, Vec<_>) = due.into_iter().partition(|(_, old)| *old);
        self.finish(old.into_iter().map(|(dir, _)| dir).collect(), ctx)
            .await?;
        for (dir, _) in young {
            self.flush(&dir, ctx, false).await?;
        }
        self.partitions.retain(|dir, p| {
            let keep = p.file.is_some() || !p.pending.is_empty();
            if !keep {
                self.names -= name_bytes(dir);
            }
            keep
        });
        self.recharge();
        Ok(())
    }

    /// Writes every partition out and finishes its file: at the end, or to give
    /// memory back (`why`).
    async fn finish_all(
        &mut self,
        ctx: &SinkContext,
        why: Option<Early>,
    ) -> Result<(), ParquetError> {
        // Open files first: the partitions without one open a file each, and by then
        // no other is open.
        let mut dirs: Vec<(bool, String)> = (self.partitions.iter())
            .map(|(dir, p)| (p.file.is_none(), dir.clone()))
            .collect();
        dirs.sort_unstable();
        let open = self.recent.len();
        self.finish(dirs.into_iter().map(|(_, dir)| dir).collect(), ctx)
            .await?;
        self.partitions.clear();
        self.names = 0;
        if let Some(why) = why.filter(|_| open > 0) {
            self.finished_early(why, open, ctx);
        }
        Ok(())
    }

    /// What the sink holds: the pending samples, the open writers, and the
    /// partitions' own state: the map's slots (its spare ones too, since a map never
    /// gives them back) and the directories' names. The slots of 20,000 partitions
    /// take 3.2 MB (96 bytes each, in 32,768 buckets).
    fn held(&self) -> usize {
        let slots = self.partitions.capacity() * 8 / 7 * (size_of::<(String, Partition)>() + 1);
        self.pending_bytes + self.writer_bytes + slots + self.names
    }

    /// Encodes the partition's pending samples into its file (opening one if needed,
    /// and first finishing the least recently written file if `max_open_files` are
    /// open), then finishes the file if `finish` or a rotate limit says so. File work
    /// runs on the blocking pool. On failure, what the partition held is counted as
    /// dropped.
    async fn flush(
        &mut self,
        dir: &str,
        ctx: &SinkContext,
        finish: bool,
    ) -> Result<(), ParquetError> {
        let opens = self
            .partitions
            .get(dir)
            .is_some_and(|p| p.file.is_none() && !p.pending.is_empty());
        if opens && self.recent.len() >= self.config.max_open_files {
            if let Some((_, oldest)) = self.recent.pop_first() {
                Box::pin(self.flush(&oldest, ctx, true)).await?;
                self.finished_early(Early::MaxOpenFiles, 1, ctx);
            }
        }
        let Some(job) = self.take_out(dir) else {
            return Ok(());
        };
        let done = job
            .run(self.files.clone(), finish, self.buffer.is_some())
            .await;
        self.written(done, ctx)
    }

    /// Finishes the files of the partitions in `dirs` (writing out what they hold),
    /// up to [`FINISHING_AT_ONCE`] at once: each file's memory goes with its write,
    /// and each beyond the first in flight is charged what closing adds (waiting for
    /// one in flight to end when the budget has no room). A failure ends the
    /// launching, not the waiting: every write launched is seen to its end and its
    /// samples counted before the first error is returned.
    async fn finish(&mut self, dirs: Vec<String>, ctx: &SinkContext) -> Result<(), ParquetError> {
        let at_once = FINISHING_AT_ONCE.min(self.config.max_open_files).max(1);
        let buffered = self.buffer.is_some();
        let mut waiting = dirs.into_iter().peekable();
        let mut in_flight = FuturesUnordered::new();
        let mut failed = None;
        loop {
            while failed.is_none() && in_flight.len() < at_once && waiting.peek().is_some() {
                let mut closing = Reservation::new(&ctx.budget);
                if !in_flight.is_empty() && !closing.try_resize(self.files.closing_peak) {
                    break;
                }
                let dir = waiting.next().expect("peeked");
                let Some(mut job) = self.take_out(&dir) else {
                    continue;
                };
                job.charge.merge(closing);
                in_flight.push(job.run(self.files.clone(), true, buffered));
            }
            let Some(done) = in_flight.next().await else {
                break;
            };
            if let Err(error) = self.written(done, ctx) {
                failed.get_or_insert(error);
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Takes what a partition holds out of it for a write, its memory charge with it.
    fn take_out(&mut self, dir: &str) -> Option<Job> {
        let partition = self.partitions.get_mut(dir)?;
        let samples = std::mem::take(&mut partition.pending);
        let records = std::mem::take(&mut partition.records);
        let mut memory = std::mem::take(&mut partition.pending_bytes);
        self.pending_bytes -= memory;
        let file = partition.file.take();
        if let Some(file) = &file {
            memory += file.memory();
            self.writer_bytes -= file.memory();
            self.recent.remove(&partition.written);
        }
        Some(Job {
            dir: dir.to_string(),
            held: samples.len() + file.as_ref().map_or(0, |f| f.rows),
            stamps: samples.iter().map(|s| s.timestamp).collect(),
            samples,
            records,
            file,
            charge: self.reservation.split_off(memory),
        })
    }

    /// Takes a write's outcome: the partition's file back if it stays open, the
    /// samples counted sent (or dropped), the file committed with a disk buffer.
    fn written(&mut self, done: Done, ctx: &SinkContext) -> Result<(), ParquetError> {
        let Done {
            dir,
            held,
            stamps,
            charge,
            result,
        } = done;
        // Back with the sink's, which the recharge below sizes to what it holds now.
        self.reservation.merge(charge);
        if result.is_ok() {
            ctx.stats.aged(stamps.into_iter());
        }
        match result {
            Ok(Some(Written::Open(file))) => {
                let partition = match self.partitions.entry(dir.clone()) {
                    Entry::Occupied(entry) => entry.into_mut(),
                    Entry::Vacant(entry) => {
                        self.names += name_bytes(entry.key());
                        entry.insert(Partition::default())
                    }
                };
                self.writer_bytes += file.memory();
                self.writes += 1;
                partition.written = self.writes;
                self.recent.insert(self.writes, dir);
                partition.file = Some(file);
            }
            Ok(Some(Written::Finished(rows, bytes))) => {
                ctx.stats.sent(rows);
                ctx.stats.sent_bytes(bytes);
            }
            Ok(Some(Written::Closed(file, records, rows, bytes))) => {
                self.commit(file, records, ctx)?;
                ctx.stats.sent(rows);
                ctx.stats.sent_bytes(bytes);
            }
            Ok(None) => {}
            // With a disk buffer, what the partition held stays there (counted there).
            Err(e) if self.buffer.is_some() => return Err(e),
            Err(e) => {
                ctx.stats.dropped(DropReason::WriteFailed, held);
                return Err(e);
            }
        }
        self.stats
            .open_files
            .store(self.recent.len() as i64, Relaxed);
        self.recharge();
        Ok(())
    }

    /// Charges the budget what the sink holds now, and shows it. Shrinking always
    /// succeeds; growth (a bigger row group in memory) is taken if there is room, else
    /// the next batch finds the budget short and gives back.
    fn recharge(&mut self) {
        self.reservation.try_resize(self.held());
        self.stats
            .held_bytes
            .store(self.reservation.bytes() as i64, Relaxed);
    }

    fn finished_early(&mut self, why: Early, files: usize, ctx: &SinkContext) {
        self.stats.finished_early(why, files);
        self.notice(why, files, ctx);
    }

    /// Says, at most once a minute, that files are finished early and what to change.
    fn notice(&mut self, why: Early, files: usize, ctx: &SinkContext) {
        if self.noticed.is_some_and(|at| at.elapsed() < NOTICE_EVERY) {
            return;
        }
        self.noticed = Some(Instant::now());
        let max_open_files = self.config.max_open_files;
        match why {
            Early::MaxOpenFiles => tracing::warn!(
                sink = %ctx.id,
                max_open_files,
                partitions = self.partitions.len(),
                "more partitions are written at once than `max_open_files`: the least recently written files are finished early, so the tree gets more, smaller files. Raise `max_open_files` (each open file costs memory, charged to memory_budget), or partition more coarsely"
            ),
            Early::MemoryBudget => tracing::warn!(
                sink = %ctx.id,
                files,
                memory_budget = ctx.budget.total(),
                "the memory budget has no room for what this sink holds: it wrote out its buffers and finished its files early (more, smaller files). Raise `memory_budget`, lower `batch.max_bytes`, or lower `max_open_files`"
            ),
            Early::DiskBuffer => tracing::warn!(
                sink = %ctx.id,
                files,
                "the disk buffer is full of samples in open files (at its `max_size`, or its disk is full: a warning names the path then): the sink finished its files early, which frees it (more, smaller files). Raise `buffer.max_size` or free its disk, or lower `rotate.max_age` or `rotate.max_rows`"
            ),
        }
    }
}

/// What a partition's name costs as a key of the map: its bytes and malloc's header.
fn name_bytes(dir: &str) -> usize {
    dir.len().max(24) + 8
}

/// What a blocking write left: the file still open, finished with its rows and
/// bytes, or (with a disk buffer) closed with its records, rows and bytes, for the
/// sink to commit.
enum Written {
    Open(Box<OpenFile>),
    Finished(usize, usize),
    Closed(ClosedFile, Vec<u64>, usize, usize),
}

/// A partition's pending samples (with their records) and open file, taken out of it
/// for a write, with what they hold and their memory charge.
struct Job {
    dir: String,
    samples: Vec<Sample>,
    records: Vec<u64>,
    file: Option<Box<OpenFile>>,
    /// Samples the write holds: the pending ones and the file's rows.
    held: usize,
    stamps: Vec<chrono::DateTime<chrono::Utc>>,
    charge: Reservation,
}

/// A write's outcome, for [`Sink::written`], with the job's charge.
struct Done {
    dir: String,
    held: usize,
    stamps: Vec<chrono::DateTime<chrono::Utc>>,
    charge: Reservation,
    result: Result<Option<Written>, ParquetError>,
}

impl Job {
    /// Writes the samples into the file (opening one if needed), finishing it if
    /// `finish` or a rotate limit says so.
    async fn run(self, files: Arc<Files>, finish: bool, buffered: bool) -> Done {
        let Job {
            dir,
            samples,
            records,
            file,
            held,
            stamps,
            charge,
        } = self;
        let result = write(&dir, (samples, records), file, &files, finish, buffered).await;
        Done {
            dir,
            held,
            stamps,
            charge,
            result,
        }
    }
}

async fn write(
    dir: &str,
    (samples, records): (Vec<Sample>, Vec<u64>),
    file: Option<Box<OpenFile>>,
    files: &Files,
    finish: bool,
    buffered: bool,
) -> Result<Option<Written>, ParquetError> {
    let mut file = match file {
        Some(file) => file,
        None if samples.is_empty() => return Ok(None),
        None => {
            let name = format!("{}-{:05}", files.prefix, FILES.fetch_add(1, Relaxed) + 1);
            let path = files.root.join(dir);
            let (schema, properties) = (files.schema.clone(), files.properties.clone());
            let create = move || OpenFile::create(&path, &name, schema, properties).map(Box::new);
            tokio::task::spawn_blocking(create).await??
        }
    };
    let schema = files.schema.clone();
    let rotate = files.rotate.clone();
    let written = tokio::task::spawn_blocking(move || {
        if !samples.is_empty() {
            file.write(&record_batch(&samples, &schema)?)?;
            file.records.extend(records);
        }
        let full = file.rows >= rotate.max_rows || file.bytes() as u64 >= rotate.max_bytes.0;
        if !(finish || full) {
            return Ok(Written::Open(file));
        }
        let (rows, bytes) = (file.rows, file.bytes());
        let records = file.records.clone();
        let closed = file.close()?;
        if buffered {
            return Ok(Written::Closed(closed, records, rows, bytes));
        }
        let path = closed.publish()?;
        tracing::debug!(path = %path.display(), rows, "parquet file finished");
        Ok(Written::Finished(rows, bytes))
    });
    written.await?.map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sinks_started_in_the_same_second_by_the_same_process_take_other_names() {
        let prefixes: std::collections::HashSet<String> = (0..100).map(|_| file_prefix()).collect();
        assert_eq!(prefixes.len(), 100);
    }
}
