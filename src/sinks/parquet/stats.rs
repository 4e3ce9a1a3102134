//! The parquet sink's own series: open partition files, the memory it holds, and the
//! files it finished early to stay within its limits.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use crate::pipeline::component::Published;
use crate::pipeline::metrics::Exposition;

/// Why a file was finished before a `rotate` limit or the timeout asked for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Early {
    /// A new partition needed a file and `max_open_files` were open: the least
    /// recently written one was finished.
    MaxOpenFiles,
    /// The memory budget had no room for what the sink would hold.
    MemoryBudget,
    /// The disk buffer was full: finishing files acknowledges their records.
    DiskBuffer,
}

impl Early {
    const ALL: [Early; 3] = [Early::MaxOpenFiles, Early::MemoryBudget, Early::DiskBuffer];

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Early::MaxOpenFiles => "max_open_files",
            Early::MemoryBudget => "memory_budget",
            Early::DiskBuffer => "disk_buffer",
        }
    }
}

#[derive(Default)]
pub(super) struct ParquetStats {
    pub(super) open_files: AtomicI64,
    /// Samples waiting to be encoded and open writers, as charged to the budget.
    pub(super) held_bytes: AtomicI64,
    early: [AtomicU64; Early::ALL.len()],
}

impl ParquetStats {
    pub(super) fn finished_early(&self, why: Early, files: usize) {
        self.early[why as usize].fetch_add(files as u64, Relaxed);
    }
}

impl Published for ParquetStats {
    fn publish(&self, id: &str, out: &mut Exposition) {
        let labels = [("sink", id)];
        out.gauge(
            "rigtap_parquet_open_files",
            "Partition files open for writing.",
            &labels,
            self.open_files.load(Relaxed) as f64,
        );
        out.gauge(
            "rigtap_parquet_held_bytes",
            "Bytes the sink holds outside batches (samples waiting to be encoded, open writers), charged to the memory budget.",
            &labels,
            self.held_bytes.load(Relaxed) as f64,
        );
        for why in Early::ALL {
            out.counter(
                "rigtap_parquet_files_finished_early",
                "Files finished before a rotate limit, to stay within max_open_files, the memory budget or the disk buffer.",
                &[("sink", id), ("reason", why.as_str())],
                self.early[why as usize].load(Relaxed),
            );
        }
    }
}
