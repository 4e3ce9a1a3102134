//! The parquet sink's loop: buffer per partition, encode on the blocking pool, rotate.

use std::collections::HashMap;
use std::path::PathBuf;

use arrow_schema::SchemaRef;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::config::{ParquetCompression, ParquetConfig, RotateConfig};
use super::encoder::{file_schema, record_batch};
use super::writer::{self, DirectoryLock, OpenFile, ParquetError};
use crate::pipeline::component::{ComponentResult, SinkConfig, SinkContext, Started};
use crate::pipeline::stats::DropReason;
use crate::toolkit::sample::Sample;

/// One partition directory: samples waiting to be encoded and its open file.
#[derive(Default)]
struct Partition {
    pending: Vec<Sample>,
    pending_bytes: usize,
    file: Option<OpenFile>,
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

impl SinkConfig for ParquetConfig {
    fn start(self: Box<Self>, ctx: SinkContext) -> Started {
        Started::task(run(*self, ctx))
    }
}

async fn run(config: ParquetConfig, mut ctx: SinkContext) -> ComponentResult {
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
    let mut files = Files {
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
    };
    let mut partitions: HashMap<String, Partition> = HashMap::new();
    let period = config.batch.timeout.0.min(config.rotate.max_age.0);
    // The first check comes one period in, not at once: nothing is old at the start.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let outcome: Result<(), ParquetError> = async {
        loop {
            tokio::select! {
                batch = ctx.input.recv() => {
                    let Some(batch) = batch else { break };
                    for sample in batch.samples() {
                        let partition = partitions.entry(template.render(sample)).or_default();
                        partition.pending_bytes += sample.estimated_bytes();
                        partition.pending.push(sample.clone());
                    }
                    for (dir, partition) in partitions.iter_mut() {
                        if partition.pending.len() >= config.batch.max_rows
                            || partition.pending_bytes as u64 >= config.batch.max_bytes.0
                        {
                            flush(dir, partition, &mut files, &ctx, false).await?;
                        }
                    }
                }
                _ = tick.tick() => {
                    for (dir, partition) in partitions.iter_mut() {
                        let old = partition.file.as_ref().is_some_and(|f| f.opened.elapsed() >= config.rotate.max_age.0);
                        if !partition.pending.is_empty() || old {
                            flush(dir, partition, &mut files, &ctx, old).await?;
                        }
                    }
                    partitions.retain(|_, p| p.file.is_some() || !p.pending.is_empty());
                }
            }
        }
        for (dir, partition) in partitions.iter_mut() {
            flush(dir, partition, &mut files, &ctx, true).await?;
        }
        Ok(())
    }
    .await;
    if let Err(error) = outcome {
        let unwritten: usize = partitions
            .values()
            .map(|p| p.pending.len() + p.file.as_ref().map_or(0, |f| f.rows))
            .sum();
        ctx.stats.dropped(DropReason::WriteFailed, unwritten);
        tracing::error!(sink = %ctx.id, "the parquet sink stopped; the sample(s) it held are counted as dropped (write_failed)");
        return Err(error.into());
    }
    Ok(())
}

/// What a blocking write left: the file still open, or finished with its rows and bytes.
enum Written {
    Open(Box<OpenFile>),
    Finished(usize, usize),
}

/// Encodes `partition`'s pending samples into its file (opening one if needed), then
/// finishes the file if `finish` or a rotate limit says so. File work runs on the
/// blocking pool. On failure, what the partition held is counted as dropped.
async fn flush(
    dir: &str,
    partition: &mut Partition,
    files: &mut Files,
    ctx: &SinkContext,
    finish: bool,
) -> Result<(), ParquetError> {
    let samples = std::mem::take(&mut partition.pending);
    partition.pending_bytes = 0;
    let held = samples.len() + partition.file.as_ref().map_or(0, |f| f.rows);
    let stamps: Vec<_> = samples.iter().map(|s| s.timestamp).collect();
    let result = write(dir, samples, partition.file.take(), files, finish).await;
    if result.is_ok() {
        ctx.stats.aged(stamps.into_iter());
    }
    match result {
        Ok(Some(Written::Open(file))) => partition.file = Some(*file),
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
    Ok(())
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
