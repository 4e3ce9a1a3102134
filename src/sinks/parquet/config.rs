//! What the user writes under `type: parquet`, and its checks.

use std::path::PathBuf;
use std::time::Duration;

use serde::{de, Deserialize, Deserializer};

use super::partition::PartitionTemplate;
use crate::toolkit::paths;
use crate::toolkit::sample::FIXED_COLUMNS;
use crate::toolkit::units::{ByteSize, HumanDuration, MAX_DURATION, MAX_SIZE};
use crate::toolkit::yaml::decode::{from_node, within, DecodeError};
use crate::toolkit::yaml::node::Node;

/// What the user writes under `type: parquet`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ParquetConfig {
    /// The root of the partitioned tree.
    pub path: PathBuf,
    /// Label columns, declared so every file has the same schema from the first row.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Directories under `path`, e.g. `site={site}/date={date}/`.
    #[serde(default = "default_partition")]
    pub partition: String,
    #[serde(default)]
    pub compression: ParquetCompression,
    /// Rows per row group: larger compresses better, smaller needs less memory to read.
    #[serde(default = "default_row_group_rows", deserialize_with = "at_least_one")]
    pub row_group_rows: usize,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub rotate: RotateConfig,
    /// Partition files open at once; a new partition finishes the least recently
    /// written file beyond this. Each open file is charged what its writer holds: with
    /// zstd about 3 MiB, 16 MiB once its columns have compressed a page of 20,000 rows;
    /// with snappy about 0.2 MiB; plus one and a half times its row group's encoded data.
    #[serde(default = "default_max_open_files")]
    pub(crate) max_open_files: usize,
}

/// 64 open files: enough for a site's partitions by hour or kind (a few files open at
/// a time). A sink partitioned more finely is bound by the budget first with zstd.
fn default_max_open_files() -> usize {
    64
}

fn default_partition() -> String {
    "kind={kind}/date={date}/hour={hour}/".into()
}

/// 100,000 rows of about 20 columns: a few MiB a row group, what DuckDB and Spark read well.
fn default_row_group_rows() -> usize {
    100_000
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ParquetCompression {
    #[default]
    Zstd,
    Snappy,
}

/// When buffered samples are encoded into the open file.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct BatchConfig {
    pub max_rows: usize,
    pub(crate) max_bytes: ByteSize,
    pub timeout: HumanDuration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_rows: 10_000,
            max_bytes: ByteSize(16 << 20),
            timeout: HumanDuration(Duration::from_secs(10)),
        }
    }
}

/// When a file is finished and a new one started.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RotateConfig {
    pub max_rows: usize,
    pub(crate) max_bytes: ByteSize,
    /// Also how late a sample may become visible to readers.
    pub max_age: HumanDuration,
}

impl Default for RotateConfig {
    fn default() -> Self {
        RotateConfig {
            max_rows: 1_000_000,
            max_bytes: ByteSize(256 << 20),
            max_age: HumanDuration(Duration::from_secs(300)),
        }
    }
}

fn at_least_one<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    match usize::deserialize(d)? {
        0 => Err(de::Error::custom("must be at least 1")),
        n => Ok(n),
    }
}

impl ParquetConfig {
    /// The partition template, checked against the declared labels.
    pub(super) fn template(&self) -> Result<PartitionTemplate, String> {
        PartitionTemplate::parse(&self.partition, &self.labels)
    }
}

/// Decodes a `parquet` sink and checks its partition template and labels.
pub(super) fn decode(body: &Node) -> Result<ParquetConfig, DecodeError> {
    let config: ParquetConfig = from_node(body)?;
    let at = |key: &str, message: String| DecodeError::at_key(body, key, message);
    if let Some(label) = config
        .labels
        .iter()
        .find(|l| FIXED_COLUMNS.contains(&l.as_str()))
    {
        return Err(at("labels", format!("label `{label}` has the name of a sample column; rename it in the inventory or `enrich`")));
    }
    config
        .template()
        .map_err(|message| at("partition", message))?;
    paths::writable_dir(&config.path).map_err(|message| at("path", message))?;
    let (rows, size) = (MAX_ROWS, ByteSize(MAX_BYTES));
    within(body, &["row_group_rows"], config.row_group_rows, 1, rows)?;
    within(
        body,
        &["max_open_files"],
        config.max_open_files,
        1,
        MAX_OPEN_FILES,
    )?;
    within(body, &["batch", "max_rows"], config.batch.max_rows, 1, rows)?;
    within(
        body,
        &["batch", "max_bytes"],
        config.batch.max_bytes,
        ByteSize(1 << 10),
        size,
    )?;
    within(
        body,
        &["rotate", "max_rows"],
        config.rotate.max_rows,
        1,
        u64::MAX as usize,
    )?;
    within(
        body,
        &["rotate", "max_bytes"],
        config.rotate.max_bytes,
        ByteSize(1 << 10),
        ByteSize(MAX_SIZE),
    )?;
    // A timer period: zero would spin (tokio refuses it), and rotation by age is how
    // late a sample may become visible.
    let (shortest, longest) = (
        HumanDuration(Duration::from_millis(1)),
        HumanDuration(MAX_DURATION),
    );
    within(
        body,
        &["batch", "timeout"],
        config.batch.timeout,
        shortest,
        longest,
    )?;
    within(
        body,
        &["rotate", "max_age"],
        config.rotate.max_age,
        shortest,
        longest,
    )?;
    Ok(config)
}

/// The most rows buffered or in a row group before they are encoded: the sink holds
/// them in memory per open partition.
const MAX_ROWS: usize = 10_000_000;
/// The most partition files open at once: each holds a file descriptor and its writer.
const MAX_OPEN_FILES: usize = 10_000;
/// The most bytes buffered per partition before they are encoded.
const MAX_BYTES: u64 = 1 << 30;
