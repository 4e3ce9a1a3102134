//! `type: parquet`: samples into a Hive-partitioned tree of Parquet files that DuckDB,
//! Spark, Trino and pandas read as one table.
//!
//! Samples are buffered per partition directory ([`partition`]); a buffer is encoded
//! into that partition's open file ([`encoder`], [`writer`]) when it reaches
//! `batch.max_rows` or `batch.max_bytes`, or at `batch.timeout`. Files are finished
//! (footer, fsync, rename from a hidden temporary name) when they reach a `rotate`
//! limit and at shutdown. All file work runs on tokio's blocking pool, so a big row
//! group never stalls the runtime, and the sink waits for it: a slow disk slows the
//! pipeline. A write error stops the sink with an error that names the file; the
//! samples it held are counted and reported, never lost silently.
//!
//! Memory: at most `max_open_files` files are open (a new partition finishes the least
//! recently written file first), and the buffered samples and open writers are charged
//! to the memory budget ([`stats`] shows both). When the budget has no room for them,
//! the sink writes everything out and finishes its files early rather than wait, since
//! the batches filling the budget may be queued in front of it. Either way it logs
//! what to change, at most once a minute.
//!
//! With `buffer: {type: disk}`, each sample is appended to a disk buffer when taken and
//! acknowledged when its file is committed ([`commit`]): a `kill -9` loses none of
//! what the open files held, and the next start writes nothing twice.

mod commit;
mod config;
mod encoder;
mod partition;
mod sink;
mod stats;
mod writer;

pub use encoder::{file_schema, record_batch};

use crate::pipeline::component::{ComponentType, SinkConfig};

impl SinkConfig for config::ParquetConfig {
    fn start(
        self: Box<Self>,
        ctx: crate::pipeline::component::SinkContext,
    ) -> crate::pipeline::component::Started {
        sink::start(*self, ctx)
    }

    fn takes_disk_buffer(&self) -> bool {
        true
    }

    fn writes_into(&self) -> Option<&std::path::Path> {
        Some(&self.path)
    }
}

/// The registry's entry for `type: parquet`.
pub const TYPE: ComponentType<dyn SinkConfig> = ComponentType {
    name: "parquet",
    decode: |body, _| Ok(Box::new(config::decode(body)?)),
};
