//! One Parquet file being written: under a hidden temporary name (`.part-….parquet.tmp`)
//! until it is complete, then synced and renamed, so a reader never sees a partial file.
//! Everything here blocks; the sink calls it from `spawn_blocking`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

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
    pub rows: usize,
    pub opened: Instant,
    /// With a disk buffer: the buffer records its rows came from.
    pub records: Vec<u64>,
}

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
        let writer = ArrowWriter::try_new(file, schema, Some(properties))
            .map_err(|e| ParquetError::parquet(&temporary, e))?;
        Ok(OpenFile {
            temporary,
            finished,
            writer,
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

    /// What the open writer holds in memory: the capacity of its column encoders'
    /// buffers and its current row group. With the sink's schema and zstd that is
    /// about 1.4 MB for a file holding 1 to 1,000 rows, of which 0.66 to 0.85 MB was
    /// resident when 1,000 files were held open (measured once, Nov 2026): an upper
    /// bound, as a budget charge should be.
    pub(super) fn memory(&self) -> usize {
        self.writer.memory_size()
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
    use super::*;

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
