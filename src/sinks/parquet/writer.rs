//! One Parquet file being written: under a hidden temporary name (`.part-….parquet.tmp`)
//! until it is complete, then synced and renamed, so a reader never sees a partial file.
//! Everything here blocks; the sink calls it from `spawn_blocking`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

#[derive(Debug, thiserror::Error)]
pub(super) enum ParquetError {
    #[error("{} is in use by another rigtap (process {holder}); give each parquet sink a path of its own", path.display())]
    Locked { path: PathBuf, holder: String },
    #[error("{}: {source}; check that the directory exists, is writable, and has free space", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Parquet {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },
    #[error("encoding samples: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("the file writer thread failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Buffer(#[from] crate::pipeline::disk_buffer::BufferFailed),
}

impl ParquetError {
    pub(super) fn io(path: &Path, source: std::io::Error) -> Self {
        ParquetError::Io {
            path: path.to_owned(),
            source,
        }
    }

    fn parquet(path: &Path, source: parquet::errors::ParquetError) -> Self {
        ParquetError::Parquet {
            path: path.to_owned(),
            source,
        }
    }
}

pub(super) struct OpenFile {
    temporary: PathBuf,
    finished: PathBuf,
    writer: ArrowWriter<File>,
    columns: usize,
    zstd: bool,
    /// A row group's pages are compressed once they hold this many rows or bytes.
    page_rows: usize,
    page_bytes: usize,
    pub rows: usize,
    pub opened: Instant,
    /// With a disk buffer: the buffer records its rows came from.
    pub records: Vec<u64>,
}

/// How the sink's files are encoded. Dictionaries are kept for the text columns, where
/// a few values repeat (kind, state, labels), and left out of the numbers. A number
/// column's dictionary encoder starts with a 4,096-entry hash table: with them, an
/// open file held 1.7 MiB before its first row; without, about 0.1 MiB. That is what
/// lets a sink partitioned by miner keep many files open. Telemetry numbers rarely
/// repeat enough for a dictionary to pay, and zstd takes the repeats they have.
pub(super) fn properties(
    schema: &SchemaRef,
    compression: Compression,
    row_group_rows: usize,
) -> WriterProperties {
    let text = schema
        .fields()
        .iter()
        .filter(|f| matches!(f.data_type(), DataType::Dictionary(..)));
    text.fold(
        WriterProperties::builder()
            .set_compression(compression)
            .set_max_row_group_row_count(Some(row_group_rows))
            .set_dictionary_enabled(false),
        |builder, field| {
            builder.set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), true)
        },
    )
    .build()
}

/// What an open writer holds beyond [`ArrowWriter::memory_size`], measured with
/// parquet 60 and glibc's malloc (the test `an_open_files_charge_covers_its_heap`
/// keeps these honest):
/// - for each column, its writer's own structures: 2.6 to 5 KiB;
/// - what the encoders hold past the bytes they count: up to a quarter more;
/// - while a row group is in progress with zstd, for each column, a decompression
///   context parquet makes but a writer never uses (99 KiB), and, from the column's
///   first compressed page on, a compression context (148 KiB). They go with the row
///   group. A file of one row held 3.0 MiB with zstd and 0.15 MiB with snappy.
const FIXED_PER_COLUMN: usize = 6 * 1024;
const ZSTD_DECOMPRESSOR: usize = 100 * 1024;
const ZSTD_COMPRESSOR: usize = 160 * 1024;

/// A file complete and synced under its temporary name, not yet in view.
pub(super) struct ClosedFile {
    pub temporary: PathBuf,
    pub finished: PathBuf,
}

/// The file metadata key under which a file names the disk buffer records it holds
/// (`first-last,seq,...`, ascending), when its sink has a disk buffer.
pub(super) const RECORDS_KEY: &str = "rigtap.buffer_records";

/// Ends of the names the sink writes; temporaries also start with a dot.
const TEMPORARY_SUFFIX: &str = ".parquet.tmp";

impl OpenFile {
    /// Creates `dir` if needed and a new temporary file in it called after `name`.
    pub(super) fn create(
        dir: &Path,
        name: &str,
        schema: SchemaRef,
        properties: WriterProperties,
    ) -> Result<Self, ParquetError> {
        std::fs::create_dir_all(dir).map_err(|e| ParquetError::io(dir, e))?;
        let temporary = dir.join(format!(".{name}{TEMPORARY_SUFFIX}"));
        let finished = dir.join(format!("{name}.parquet"));
        let file = File::create(&temporary).map_err(|e| ParquetError::io(&temporary, e))?;
        let columns = schema.fields().len();
        let zstd = matches!(
            properties.compression(&ColumnPath::from(schema.field(0).name().as_str())),
            Compression::ZSTD(_)
        );
        let (page_rows, page_bytes) = (
            properties.data_page_row_count_limit(),
            properties.data_page_size_limit(),
        );
        let writer = ArrowWriter::try_new(file, schema, Some(properties))
            .map_err(|e| ParquetError::parquet(&temporary, e))?;
        Ok(OpenFile {
            temporary,
            finished,
            writer,
            columns,
            zstd,
            page_rows,
            page_bytes,
            rows: 0,
            opened: Instant::now(),
            records: Vec::new(),
        })
    }

    pub(super) fn write(&mut self, batch: &RecordBatch) -> Result<(), ParquetError> {
        self.writer
            .write(batch)
            .map_err(|e| ParquetError::parquet(&self.temporary, e))?;
        self.rows += batch.num_rows();
        Ok(())
    }

    /// What the open writer holds in memory, as charged to the budget: its current
    /// row group and encoders' buffers, each column's own structures and, with zstd,
    /// its contexts. An upper bound, as a charge should be.
    pub(super) fn memory(&self) -> usize {
        let encoded = self.writer.memory_size();
        let mut per_column = FIXED_PER_COLUMN;
        if self.zstd && self.writer.in_progress_rows() > 0 {
            per_column += ZSTD_DECOMPRESSOR;
            if self.writer.in_progress_rows() >= self.page_rows || encoded >= self.page_bytes {
                per_column += ZSTD_COMPRESSOR;
            }
        }
        encoded + encoded / 4 + per_column * self.columns
    }

    /// Bytes written so far plus what is buffered for the current row group.
    pub(super) fn bytes(&self) -> usize {
        self.writer.bytes_written() + self.writer.in_progress_size()
    }

    /// Writes the footer (with the buffer records it holds, if any) and syncs; the
    /// file is still under its temporary name.
    pub(super) fn close(mut self) -> Result<ClosedFile, ParquetError> {
        if !self.records.is_empty() {
            self.records.sort_unstable();
            let records = ranges(&self.records);
            self.writer
                .append_key_value_metadata(KeyValue::new(RECORDS_KEY.to_string(), records));
        }
        let file = self
            .writer
            .into_inner()
            .map_err(|e| ParquetError::parquet(&self.temporary, e))?;
        file.sync_all()
            .map_err(|e| ParquetError::io(&self.temporary, e))?;
        Ok(ClosedFile {
            temporary: self.temporary,
            finished: self.finished,
        })
    }
}

impl ClosedFile {
    /// Renames the file into view, durably; returns its path.
    pub(super) fn publish(self) -> Result<PathBuf, ParquetError> {
        std::fs::rename(&self.temporary, &self.finished)
            .map_err(|e| ParquetError::io(&self.finished, e))?;
        // The rename is durable only once the directory entry is on disk too.
        if let Some(dir) = self.finished.parent() {
            sync_dir(dir)?;
        }
        Ok(self.finished)
    }
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), ParquetError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ParquetError::io(dir, e))
}

/// Ascending numbers as runs: `[1, 2, 3, 7, 9, 10]` is `1-3,7,9-10`.
pub(super) fn ranges(sorted: &[u64]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let first = sorted[i];
        while i + 1 < sorted.len() && sorted[i + 1] == sorted[i] + 1 {
            i += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        match sorted[i] == first {
            true => out.push_str(&first.to_string()),
            false => out.push_str(&format!("{first}-{}", sorted[i])),
        }
        i += 1;
    }
    out
}

/// The numbers [`ranges`] wrote; `None` for anything else.
pub(super) fn parse_ranges(text: &str) -> Option<Vec<u64>> {
    let mut numbers = Vec::new();
    for run in text.split(',').filter(|r| !r.is_empty()) {
        let (first, last): (u64, u64) = match run.split_once('-') {
            Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
            None => (run.parse().ok()?, run.parse().ok()?),
        };
        if last < first || last - first > 1 << 32 {
            return None;
        }
        numbers.extend(first..=last);
    }
    Some(numbers)
}

/// The lock a sink holds on its directory while it writes there: `.rigtap.lock`, with
/// the holder's process id in it. Two rigtaps writing one tree would remove each
/// other's temporaries at start; the second is refused instead, and names the first.
/// The kernel releases the lock when the holder dies, however it dies.
pub(super) struct DirectoryLock {
    _file: File,
}

/// The lock's file name, hidden from readers like the temporaries.
const LOCK_FILE: &str = ".rigtap.lock";

impl DirectoryLock {
    pub(super) fn acquire(root: &Path) -> Result<Self, ParquetError> {
        use std::io::{Read, Seek, Write};
        let path = root.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| ParquetError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(ParquetError::Locked {
                    path: root.to_owned(),
                    holder: holder.trim().to_string(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(ParquetError::io(&path, e)),
        }
        let pid = std::process::id().to_string();
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(pid.as_bytes()))
            .map_err(|e| ParquetError::io(&path, e))?;
        Ok(DirectoryLock { _file: file })
    }
}

/// Removes temporaries a previous run left behind (killed, or the machine lost power):
/// they never had a footer, so no reader could use them. Returns how many there were.
/// Called only under the [`DirectoryLock`], so no live writer's file is removed.
pub(super) fn remove_leftovers(root: &Path) -> Result<usize, ParquetError> {
    let mut removed = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| ParquetError::io(&dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ParquetError::io(&dir, e))?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if path.is_dir() {
                dirs.push(path);
            } else if name.starts_with('.') && name.ends_with(TEMPORARY_SUFFIX) {
                std::fs::remove_file(&path).map_err(|e| ParquetError::io(&path, e))?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::sinks::parquet::encoder::{file_schema, record_batch};
    use crate::toolkit::sample::{Sample, SampleKind};

    fn samples(n: usize) -> Vec<Sample> {
        let labels = Arc::new([("site".to_string(), "north".to_string())].into());
        (0..n)
            .map(|i| {
                let mut s = Sample::new(SampleKind::Miner, "m-1".into(), Arc::clone(&labels));
                s.hashrate_ths = Some(200.0 + i as f64 / 7.0);
                s.power_w = Some(3400.0);
                s.shares_accepted = Some(i as u64);
                s
            })
            .collect()
    }

    #[test]
    fn dictionaries_are_for_the_text_columns() {
        let schema = file_schema(&["site".to_string()], std::iter::empty());
        let properties = properties(&schema, Compression::SNAPPY, 100);
        for (column, dictionary) in [("site", true), ("kind", true), ("hashrate_ths", false)] {
            let path = ColumnPath::from(column);
            assert_eq!(properties.dictionary_enabled(&path), dictionary, "{column}");
        }
    }

    /// Set in the child process that runs [`an_open_files_charge_covers_its_heap`] alone.
    const ALONE: &str = "RIGTAP_TEST_ALONE";

    /// The budget's charge for open files covers what malloc gives their writers
    /// (zstd's contexts included), and not by much more: files of one row, and files
    /// of 90,000 rows in progress, with zstd and with snappy. malloc's count is the
    /// whole process's, so the test runs again in a child process, alone.
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn an_open_files_charge_covers_its_heap() {
        if std::env::var_os(ALONE).is_none() {
            let name = concat!(module_path!(), "::an_open_files_charge_covers_its_heap");
            let name = name.split_once("::").map_or(name, |(_, path)| path);
            let status = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", name, "--test-threads=1", "--nocapture"])
                .env(ALONE, "1")
                .status()
                .unwrap();
            assert!(status.success(), "the test alone failed: {status}");
            return;
        }
        // SAFETY: mallinfo2 only reads glibc's allocator statistics.
        let allocated = || {
            let info = unsafe { libc::mallinfo2() };
            info.uordblks + info.hblkhd
        };
        let dir = tempfile::tempdir().unwrap();
        let schema = file_schema(&["site".to_string()], ["kind"].into_iter());
        let codecs = [Compression::ZSTD(Default::default()), Compression::SNAPPY];
        for (codec, (writes, rows)) in codecs.iter().flat_map(|c| [(c, (1, 1)), (c, (90, 1000))]) {
            let properties = properties(&schema, *codec, 100_000);
            let batch = record_batch(&samples(rows), &schema).unwrap();
            let before = allocated();
            let files: Vec<OpenFile> = (0..2)
                .map(|i| {
                    let name = format!("f-{codec}-{writes}-{i}");
                    let mut file =
                        OpenFile::create(dir.path(), &name, schema.clone(), properties.clone())
                            .unwrap();
                    (0..writes).for_each(|_| file.write(&batch).unwrap());
                    file
                })
                .collect();
            let held = allocated() - before;
            let charged: usize = files.iter().map(OpenFile::memory).sum();
            assert!(
                held <= charged && charged <= held * 3 / 2,
                "{codec}, {} rows: the writers hold {held} bytes, charged {charged}",
                files[0].rows
            );
        }
    }

    #[test]
    fn record_numbers_are_written_as_runs_and_read_back() {
        let numbers = [1, 2, 3, 7, 9, 10, 12];
        assert_eq!(ranges(&numbers), "1-3,7,9-10,12");
        assert_eq!(parse_ranges("1-3,7,9-10,12").unwrap(), numbers);
        assert_eq!(ranges(&[]), "");
        assert_eq!(parse_ranges(""), Some(vec![]));
        for bad in ["3-1", "x", "1-", "0-99999999999"] {
            assert_eq!(parse_ranges(bad), None, "{bad}");
        }
    }
}
