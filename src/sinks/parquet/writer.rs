//! One Parquet file being written: under a hidden temporary name (`.part-….parquet.tmp`)
//! until it is complete, then synced and renamed, so a reader never sees a partial file.
//! Everything here blocks; the sink calls it from `spawn_blocking`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
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
}

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

    /// Writes the footer, syncs, and renames the file into view; returns its path.
    pub(super) fn finish(self) -> Result<PathBuf, ParquetError> {
        let file = self
            .writer
            .into_inner()
            .map_err(|e| ParquetError::parquet(&self.temporary, e))?;
        file.sync_all()
            .map_err(|e| ParquetError::io(&self.temporary, e))?;
        std::fs::rename(&self.temporary, &self.finished)
            .map_err(|e| ParquetError::io(&self.finished, e))?;
        // The rename is durable only once the directory entry is on disk too.
        if let Some(dir) = self.finished.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| ParquetError::io(dir, e))?;
        }
        Ok(self.finished)
    }
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
