//! The parquet sink's loop: buffer per partition, encode on the blocking pool, rotate;
//! at most `max_open_files` files open, and what it holds charged to the memory budget.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_schema::SchemaRef;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::config::{ParquetCompression, ParquetConfig, RotateConfig};
use super::encoder::{file_schema, record_batch};
use super::partition::PartitionTemplate;
use super::stats::{Early, ParquetStats};
use super::writer::{self, DirectoryLock, OpenFile, ParquetError};
use crate::pipeline::batch::{Batch, Reservation};
use crate::pipeline::component::{ComponentResult, SinkConfig, SinkContext, Started};
use crate::pipeline::stats::DropReason;
use crate::toolkit::sample::Sample;

/// One partition directory: samples waiting to be encoded and its open file.
#[derive(Default)]
struct Partition {
    pending: Vec<Sample>,
    pending_bytes: usize,
    file: Option<OpenFile>,
    /// When its file was last written, as a place in [`Sink::recent`].
    written: u64,
}

/// What every blocking write needs.
struct Files {
    root: PathBuf,
    schema: SchemaRef,
    properties: WriterProperties,
    rotate: RotateConfig,
    /// Unique file names within this run: start time, process id, sequence.
    prefix: String,
    next: usize,
}

/// A line about files finished early is written at most this often.
const NOTICE_EVERY: Duration = Duration::from_secs(60);

impl SinkConfig for ParquetConfig {
    fn start(self: Box<Self>, ctx: SinkContext) -> Started {
        let stats = Arc::new(ParquetStats::default());
        Started::task(run(*self, ctx, stats.clone())).publishing(stats)
    }
}

async fn run(
    config: ParquetConfig,
    mut ctx: SinkContext,
    stats: Arc<ParquetStats>,
) -> ComponentResult {
    let template = config.template()?;
    let root = config.path.clone();
    // Held until the sink returns: no other rigtap writes (or cleans) this tree meanwhile.
    let (_lock, leftovers) = tokio::task::spawn_blocking({
        let root = root.clone();
        move || {
            std::fs::create_dir_all(&root).map_err(|e| ParquetError::io(&root, e))?;
            let lock = DirectoryLock::acquire(&root)?;
            Ok::<_, ParquetError>((lock, writer::remove_leftovers(&root)?))
        }
    })
    .await??;
    if leftovers > 0 {
        tracing::warn!(sink = %ctx.id, path = %root.display(), leftovers, "removed unfinished files left by an earlier run that was killed; the samples in them were never delivered");
    }
    let compression = match config.compression {
        ParquetCompression::Zstd => Compression::ZSTD(ZstdLevel::default()),
        ParquetCompression::Snappy => Compression::SNAPPY,
    };
    let mut sink = Sink {
        files: Files {
            root,
            schema: file_schema(&config.labels, template.columns()),
            properties: WriterProperties::builder()
                .set_compression(compression)
                .set_max_row_group_row_count(Some(config.row_group_rows))
                .build(),
            rotate: config.rotate.clone(),
            prefix: format!(
                "part-{}-{}",
                chrono::Utc::now().format("%Y%m%dT%H%M%S"),
                std::process::id()
            ),
            next: 0,
        },
        partitions: HashMap::new(),
        recent: BTreeMap::new(),
        writes: 0,
        pending_bytes: 0,
        writer_bytes: 0,
        reservation: Reservation::new(&ctx.budget),
        stats,
        noticed: None,
        template,
        config,
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

    let outcome: Result<(), ParquetError> = async {
        loop {
            tokio::select! {
                batch = ctx.input.recv() => {
                    let Some(batch) = batch else { break };
                    sink.take(&batch, &ctx).await?;
                }
                _ = tick.tick() => sink.on_tick(&ctx).await?,
            }
        }
        sink.finish_all(&ctx, None).await
    }
    .await;
    sink.stats.held_bytes.store(0, Relaxed);
    if let Err(error) = outcome {
        let unwritten: usize = sink
            .partitions
            .values()
            .map(|p| p.pending.len() + p.file.as_ref().map_or(0, |f| f.rows))
            .sum();
        ctx.stats.dropped(DropReason::WriteFailed, unwritten);
        tracing::error!(sink = %ctx.id, "the parquet sink stopped; the sample(s) it held are counted as dropped (write_failed)");
        return Err(error.into());
    }
    Ok(())
}

/// The sink's state between batches.
struct Sink {
    files: Files,
    partitions: HashMap<String, Partition>,
    /// Partitions with an open file, least recently written first.
    recent: BTreeMap<u64, String>,
    writes: u64,
    /// Estimated bytes of the samples waiting in every partition.
    pending_bytes: usize,
    /// Estimated bytes every open writer holds.
    writer_bytes: usize,
    /// `pending_bytes + writer_bytes`, charged to the memory budget.
    reservation: Reservation,
    stats: Arc<ParquetStats>,
    /// When a line about files finished early was last written.
    noticed: Option<Instant>,
    template: PartitionTemplate,
    config: ParquetConfig,
}

impl Sink {
    /// Takes a batch's samples into their partitions' buffers, charging them to the
    /// budget first. With no room, everything held is written out and its files
    /// finished; with still no room (other components' batches fill the budget), the
    /// batch goes straight into files finished at once, so the sink holds nothing that
    /// is not charged.
    async fn take(&mut self, batch: &Batch, ctx: &SinkContext) -> Result<(), ParquetError> {
        let incoming: usize = batch.samples().iter().map(Sample::estimated_bytes).sum();
        let mut through = false;
        if !self.reservation.try_resize(self.held() + incoming) {
            self.finish_all(ctx, Some(Early::MemoryBudget)).await?;
            through = !self.reservation.try_resize(incoming);
        }
        let mut touched = HashSet::new();
        for sample in batch.samples() {
            let dir = self.template.render(sample);
            let partition = self.partitions.entry(dir.clone()).or_default();
            touched.insert(dir);
            let bytes = sample.estimated_bytes();
            partition.pending_bytes += bytes;
            self.pending_bytes += bytes;
            partition.pending.push(sample.clone());
        }
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
        for (dir, old) in due {
            self.flush(&dir, ctx, old).await?;
        }
        self.partitions
            .retain(|_, p| p.file.is_some() || !p.pending.is_empty());
        Ok(())
    }

    /// Writes every partition out and finishes its file: at the end, or to give
    /// memory back (`why`).
    async fn finish_all(
        &mut self,
        ctx: &SinkContext,
        why: Option<Early>,
    ) -> Result<(), ParquetError> {
        let dirs: Vec<String> = self.partitions.keys().cloned().collect();
        let open = self.recent.len();
        for dir in dirs {
            self.flush(&dir, ctx, true).await?;
        }
        self.partitions.clear();
        if let Some(why) = why.filter(|_| open > 0) {
            self.finished_early(why, open, ctx);
        }
        Ok(())
    }

    fn held(&self) -> usize {
        self.pending_bytes + self.writer_bytes
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
        let Some(partition) = self.partitions.get_mut(dir) else {
            return Ok(());
        };
        let samples = std::mem::take(&mut partition.pending);
        self.pending_bytes -= std::mem::take(&mut partition.pending_bytes);
        let held = samples.len() + partition.file.as_ref().map_or(0, |f| f.rows);
        let stamps: Vec<_> = samples.iter().map(|s| s.timestamp).collect();
        let file = partition.file.take();
        if let Some(file) = &file {
            self.writer_bytes -= file.memory();
            self.recent.remove(&partition.written);
        }
        let result = write(dir, samples, file, &mut self.files, finish).await;
        if result.is_ok() {
            ctx.stats.aged(stamps.into_iter());
        }
        match result {
            Ok(Some(Written::Open(file))) => {
                self.writer_bytes += file.memory();
                self.writes += 1;
                partition.written = self.writes;
                self.recent.insert(self.writes, dir.to_string());
                partition.file = Some(*file);
            }
            Ok(Some(Written::Finished(rows, bytes))) => {
                ctx.stats.sent(rows);
                ctx.stats.sent_bytes(bytes);
            }
            Ok(None) => {}
            Err(e) => {
                ctx.stats.dropped(DropReason::WriteFailed, held);
                return Err(e);
            }
        }
        self.stats
            .open_files
            .store(self.recent.len() as i64, Relaxed);
        // Shrinking always succeeds; growth (a bigger row group in memory) is taken if
        // there is room, else the next batch finds the budget short and gives back.
        self.reservation.try_resize(self.held());
        self.stats
            .held_bytes
            .store(self.reservation.bytes() as i64, Relaxed);
        Ok(())
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
        }
    }
}

/// What a blocking write left: the file still open, or finished with its rows and bytes.
enum Written {
    Open(Box<OpenFile>),
    Finished(usize, usize),
}

async fn write(
    dir: &str,
    samples: Vec<Sample>,
    file: Option<OpenFile>,
    files: &mut Files,
    finish: bool,
) -> Result<Option<Written>, ParquetError> {
    let mut file = match file {
        Some(file) => file,
        None if samples.is_empty() => return Ok(None),
        None => {
            files.next += 1;
            let name = format!("{}-{:05}", files.prefix, files.next);
            let path = files.root.join(dir);
            let (schema, properties) = (files.schema.clone(), files.properties.clone());
            tokio::task::spawn_blocking(move || OpenFile::create(&path, &name, schema, properties))
                .await??
        }
    };
    let schema = files.schema.clone();
    let rotate = files.rotate.clone();
    let written = tokio::task::spawn_blocking(move || {
        if !samples.is_empty() {
            file.write(&record_batch(&samples, &schema)?)?;
        }
        let full = file.rows >= rotate.max_rows || file.bytes() as u64 >= rotate.max_bytes.0;
        if !(finish || full) {
            return Ok(Written::Open(Box::new(file)));
        }
        let (rows, bytes) = (file.rows, file.bytes());
        let path = file.finish()?;
        tracing::debug!(path = %path.display(), rows, "parquet file finished");
        Ok(Written::Finished(rows, bytes))
    });
    written.await?.map(Some)
}
