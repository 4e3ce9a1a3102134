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

/// How the sink's files are encoded. Dictionaries are kept for the dictionary-typed
/// columns (kind, state, code, labels: text where a few values repeat), and left out of
/// the numbers. A number column's dictionary encoder starts with a 4,096-entry hash
/// table: with them, an open file of one row held 1.7 MiB more. That is what lets a
/// sink partitioned by miner keep many files open. Telemetry numbers rarely repeat
/// enough for a dictionary to pay, and zstd takes the repeats they have.
pub(super) fn properties(
    schema: &SchemaRef,
    compression: Compression,
    row_group_rows: usize,
) -> WriterProperties {
    let mut builder = WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_row_count(Some(row_group_rows))
        .set_dictionary_enabled(false);
    for field in schema.fields() {
        if matches!(field.data_type(), DataType::Dictionary(..)) {
            let column = ColumnPath::from(field.name().as_str());
            builder = builder.set_column_dictionary_enabled(column, true);
        }
    }
    builder.build()
}

/// What an open writer holds beyond [`ArrowWriter::memory_size`], measured with
/// parquet 60 and glibc's malloc (the test `an_open_files_charge_covers_its_heap`
/// keeps these honest):
/// - for each column, its writer's own structures: 2.6 to 5 KiB;
/// - what the encoders' buffers hold past the bytes they count: 10 to 50% more,
///   as measured (they grow by doubling, so a moment's spare can be more);
/// - while a row group is in progress with zstd, for each column, a decompression
///   context parquet makes but a writer never uses (99 KiB), and, from the column's
///   first compressed page on, a compression context sized for the largest page it
///   compressed: 148 KiB for small pages, 420 KiB once a page reaches zstd's block of
///   128 KiB (20,000 numbers do). Charged at the larger size. They go with the row
///   group. With every column set, a file of one row held 3.0 MiB with zstd and
///   0.15 MiB with snappy; at 30,000 rows, 21 MiB and 5.8 MiB.
const FIXED_PER_COLUMN: usize = 6 * 1024;
const ZSTD_DECOMPRESSOR: usize = 100 * 1024;
const ZSTD_COMPRESSOR: usize = 448 * 1024;

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
    /// row group and encoders' buffers, each column's own structures, with zstd its
    /// contexts, and the buffer records it names. Not counted: the moment of closing,
    /// when every column compresses its last page at once.
    pub(super) fn memory(&self) -> usize {
        let encoded = self.writer.memory_size();
        let mut zstd = 0;
        if self.zstd && self.writer.in_progress_rows() > 0 {
            zstd = ZSTD_DECOMPRESSOR * self.columns + ZSTD_COMPRESSOR * self.compressing();
        }
        size_of::<Self>()
            + encoded
            + encoded / 2
            + FIXED_PER_COLUMN * self.columns
            + zstd
            + self.records.capacity() * size_of::<u64>()
    }

    /// Columns whose pages were compressed in the row group in progress. A column
    /// compresses a page at page_rows rows, or sooner at page_bytes bytes: before
    /// page_rows, at most one column for each page_bytes encoded.
    fn compressing(&self) -> usize {
        match self.writer.in_progress_rows() >= self.page_rows {
            true => self.columns,
            false => (self.writer.memory_size() / self.page_bytes.max(1)).min(self.columns),
        }
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

/// The most a file of `columns` holds while it closes, beyond its encoded rows: each
/// column's own structures and, with zstd, both of its contexts.
pub(super) fn closing_peak(columns: usize, zstd: bool) -> usize {
    let contexts = match zstd {
        true => ZSTD_DECOMPRESSOR + ZSTD_COMPRESSOR,
        false => 0,
    };
    size_of::<OpenFile>() + columns * (FIXED_PER_COLUMN + contexts)
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
    use super::*;
    use crate::sinks::parquet::encoder::file_schema;

    #[test]
    fn dictionaries_are_for_the_text_columns() {
        let schema = file_schema(&["site".to_string()], std::iter::empty());
        let properties = properties(&schema, Compression::SNAPPY, 100);
        for (column, dictionary) in [("site", true), ("kind", true), ("hashrate_ths", false)] {
            let path = ColumnPath::from(column);
            assert_eq!(properties.dictionary_enabled(&path), dictionary, "{column}");
        }
    }

    /// The charge against glibc's own count of what it gave out.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    mod charge {
        use std::sync::Arc;

        use chrono::Utc;

        use super::*;
        use crate::sinks::parquet::encoder::record_batch;
        use crate::toolkit::sample::{Labels, MinerState, Sample, SampleKind, StatusCode};

        /// Set in the child process that runs the test alone.
        const ALONE: &str = "RIGTAP_TEST_ALONE";

        /// Samples with every column set, and the numbers varying as a fleet's do.
        fn samples(n: usize) -> Vec<Sample> {
            let labels: Labels = Arc::new([("site".to_string(), "north".to_string())].into());
            (0..n)
                .map(|i| {
                    let x = i as f64;
                    let mut s = Sample::new(SampleKind::Miner, "m-1".into(), labels.clone());
                    s.board = Some(i as u32 % 3);
                    s.state = Some(MinerState::Online);
                    s.code = Some(StatusCode::Ok);
                    s.message = Some(format!("poll {i} answered"));
                    s.miner_status = Some("normal".into());
                    for (field, value) in [
                        (&mut s.hashrate_ths, 200.0 + x / 7.0),
                        (&mut s.hashrate_nominal_ths, 234.0),
                        (&mut s.power_w, 3400.0 + x % 97.0),
                        (&mut s.efficiency_jth, 14.0 + x / 1e5),
                        (&mut s.temp_chip_c, 70.0 + x % 13.0 / 3.0),
                        (&mut s.temp_board_c, 60.0 + x % 11.0 / 3.0),
                        (&mut s.temp_water_in_c, 30.0 + x % 7.0 / 3.0),
                        (&mut s.temp_water_out_c, 40.0 + x % 5.0 / 3.0),
                        (&mut s.fan_rpm, 5000.0 + x % 101.0),
                        (&mut s.frequency_mhz, 525.0 + x % 3.0),
                        (&mut s.voltage_v, 13.2 + x % 9.0 / 100.0),
                    ] {
                        *field = Some(value);
                    }
                    s.chips = Some(126);
                    for field in [
                        &mut s.shares_accepted,
                        &mut s.shares_rejected,
                        &mut s.shares_stale,
                        &mut s.uptime_s,
                        &mut s.shares_accepted_delta,
                        &mut s.shares_rejected_delta,
                        &mut s.shares_stale_delta,
                    ] {
                        *field = Some(i as u64 * 7);
                    }
                    s.gap_end = Some(Utc::now());
                    s.missed = Some(i as u32);
                    s
                })
                .collect()
        }

        /// The budget's charge for open files covers what malloc gives their writers
        /// (zstd's contexts included), and not by much more: files of one row, and
        /// files of 10,000 to 90,000 rows in progress, with zstd and with snappy, under the
        /// allocator settings rigtap runs with. malloc's count is the whole process's,
        /// so the test runs again in a child process, alone.
        #[test]
        fn an_open_files_charge_covers_its_heap() {
            if std::env::var_os(ALONE).is_none() {
                let name = concat!(module_path!(), "::an_open_files_charge_covers_its_heap");
                let name = name.split_once("::").map_or(name, |(_, path)| path);
                let child = std::process::Command::new(std::env::current_exe().unwrap())
                    .args(["--exact", name, "--test-threads=1", "--nocapture"])
                    .env(ALONE, "1")
                    .output()
                    .unwrap();
                let (out, err) = (
                    String::from_utf8_lossy(&child.stdout),
                    String::from_utf8_lossy(&child.stderr),
                );
                assert!(
                    child.status.success() && out.contains("1 passed"),
                    "the test alone did not pass ({}):\n{out}\n{err}",
                    child.status
                );
                return;
            }
            crate::toolkit::malloc::tune();
            // SAFETY: mallinfo2 only reads glibc's allocator statistics.
            let allocated = || {
                let info = unsafe { libc::mallinfo2() };
                info.uordblks + info.hblkhd
            };
            let dir = tempfile::tempdir().unwrap();
            let schema = file_schema(&["site".to_string()], ["kind"].into_iter());
            let codecs = [Compression::ZSTD(Default::default()), Compression::SNAPPY];
            for codec in codecs {
                for (writes, rows) in [(1, 1), (10, 1000), (30, 1000), (60, 1000), (90, 1000)] {
                    let properties = properties(&schema, codec, 100_000);
                    let batch = record_batch(&samples(rows), &schema).unwrap();
                    let before = allocated();
                    let files: Vec<OpenFile> = (0..2)
                        .map(|i| {
                            let name = format!("f-{codec}-{writes}-{i}");
                            let (schema, properties) = (schema.clone(), properties.clone());
                            let mut file =
                                OpenFile::create(dir.path(), &name, schema, properties).unwrap();
                            (0..writes).for_each(|_| file.write(&batch).unwrap());
                            file
                        })
                        .collect();
                    let held = allocated().saturating_sub(before);
                    let charged: usize = files.iter().map(OpenFile::memory).sum();
                    eprintln!(
                        "{codec}, {} rows: held {held}, charged {charged}",
                        files[0].rows
                    );
                    assert!(
                        held <= charged && charged <= held * 3 / 2,
                        "{codec}, {} rows: the writers hold {held} bytes, charged {charged}",
                        files[0].rows
                    );
                }
            }
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
