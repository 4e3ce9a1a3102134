//! Exactly-once files from a disk buffer: a file and the acknowledgement of the
//! buffer records it holds happen together, even across a `kill -9`.
//!
//! A finished file is made visible in four steps: (1) its footer written and synced
//! under its temporary name, and the buffer synced; (2) a commit marker (`committing` in the buffer's
//! directory: the file's two names and its records) written, synced and renamed into
//! place, which is the commit point; (3) the file renamed into view; (4) its records
//! acknowledged and the acknowledgements saved; then the marker is removed. A run
//! killed before (2) leaves a temporary, removed at the next start, and the records
//! are written again. A run killed after (2) leaves the marker, and the next start
//! finishes the job: it renames the file if that had not happened, and acknowledges
//! its records before anything is read from the buffer. Either way each record ends
//! up in exactly one file.
//!
//! Everything here blocks.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::writer::{parse_ranges, ranges, sync_dir, ClosedFile, ParquetError};

const MARKER: &str = "committing";

#[derive(Serialize, Deserialize)]
struct Marker {
    temporary: PathBuf,
    finished: PathBuf,
    records: String,
}

/// Step (2): records that `file` holds `records` (ascending), durably.
pub(super) fn mark(buffer: &Path, file: &ClosedFile, records: &[u64]) -> Result<(), ParquetError> {
    let marker = Marker {
        temporary: file.temporary.clone(),
        finished: file.finished.clone(),
        records: ranges(records),
    };
    let path = buffer.join(MARKER);
    let temporary = buffer.join(format!("{MARKER}.tmp"));
    let written = File::create(&temporary).and_then(|mut f| {
        f.write_all(&serde_json::to_vec(&marker).map_err(std::io::Error::other)?)?;
        f.sync_all()
    });
    written.map_err(|e| ParquetError::io(&temporary, e))?;
    std::fs::rename(&temporary, &path).map_err(|e| ParquetError::io(&path, e))?;
    sync_dir(buffer)
}

/// After step (4): the commit is whole, the marker goes.
pub(super) fn unmark(buffer: &Path) -> Result<(), ParquetError> {
    let path = buffer.join(MARKER);
    std::fs::remove_file(&path).map_err(|e| ParquetError::io(&path, e))
}

/// What a killed run had committed and not finished: the file it names is renamed
/// into view if it was not yet, and its records are returned, to be acknowledged
/// (none when the marker or its file cannot be trusted); `None` without a marker.
/// Call before temporaries are removed and before the buffer is read; the marker
/// itself goes with [`unmark`] once the acknowledgements are saved.
pub(super) fn recover(buffer: &Path) -> Result<Option<Vec<u64>>, ParquetError> {
    let path = buffer.join(MARKER);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ParquetError::io(&path, e)),
    };
    let marker = serde_json::from_slice::<Marker>(&text)
        .ok()
        .and_then(|m| Some((parse_ranges(&m.records)?, m)));
    let Some((records, marker)) = marker else {
        // Written whole or not at all (renamed into place), so this is damage: the
        // records are written again, and the file, if any, holds them twice.
        tracing::warn!(path = %path.display(), "the parquet commit marker cannot be read; the samples of the file being finished when rigtap stopped may be written twice");
        return Ok(Some(Vec::new()));
    };
    if marker.temporary.exists() {
        let file = ClosedFile {
            temporary: marker.temporary,
            finished: marker.finished.clone(),
        };
        file.publish()?;
        tracing::info!(path = %marker.finished.display(), samples = records.len(), "finished a parquet file the last run had committed when it stopped");
    } else if !marker.finished.exists() {
        // Removed by someone else: its records are written again rather than lost.
        tracing::warn!(path = %marker.finished.display(), "a parquet file the last run committed is gone; its samples are written again");
        return Ok(Some(Vec::new()));
    }
    Ok(Some(records))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A closed file under `dir`, and the buffer directory beside it.
    fn closed(dir: &Path) -> (ClosedFile, PathBuf) {
        let buffer = dir.join("buffer");
        std::fs::create_dir_all(&buffer).unwrap();
        let file = ClosedFile {
            temporary: dir.join(".part-1.parquet.tmp"),
            finished: dir.join("part-1.parquet"),
        };
        std::fs::write(&file.temporary, b"a whole file").unwrap();
        (file, buffer)
    }

    #[test]
    fn a_run_killed_after_the_commit_point_has_its_file_finished_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let (file, buffer) = closed(dir.path());
        mark(&buffer, &file, &[3, 4, 5, 9]).unwrap();
        // Killed here: the file is still under its temporary name.
        assert_eq!(recover(&buffer).unwrap(), Some(vec![3, 4, 5, 9]));
        assert!(file.finished.exists() && !file.temporary.exists());
        // Killed again before the marker went: the same again, nothing renamed twice.
        assert_eq!(recover(&buffer).unwrap(), Some(vec![3, 4, 5, 9]));
        unmark(&buffer).unwrap();
        assert!(recover(&buffer).unwrap().is_none());
    }

    #[test]
    fn a_run_killed_after_the_rename_has_its_records_acknowledged_only() {
        let dir = tempfile::tempdir().unwrap();
        let (file, buffer) = closed(dir.path());
        let finished = file.finished.clone();
        mark(&buffer, &file, &[7]).unwrap();
        file.publish().unwrap();
        assert_eq!(recover(&buffer).unwrap(), Some(vec![7]));
        assert_eq!(std::fs::read(&finished).unwrap(), b"a whole file");
    }

    #[test]
    fn a_file_gone_or_a_damaged_marker_acknowledges_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (file, buffer) = closed(dir.path());
        mark(&buffer, &file, &[1, 2]).unwrap();
        std::fs::remove_file(&file.temporary).unwrap();
        assert_eq!(recover(&buffer).unwrap(), Some(Vec::new()));
        std::fs::write(buffer.join(MARKER), b"{not json").unwrap();
        assert_eq!(recover(&buffer).unwrap(), Some(Vec::new()));
    }
}
