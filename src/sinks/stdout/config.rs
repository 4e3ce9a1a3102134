//! What the user writes under `type: stdout`.

use serde::Deserialize;

use crate::toolkit::yaml::decode::{from_node, DecodeError};
use crate::toolkit::yaml::node::Node;

/// What the user writes under `type: stdout`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct StdoutConfig {
    #[serde(default)]
    pub encoding: StdoutEncoding,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StdoutEncoding {
    /// One JSON object per line, the same fields as the Kafka and Parquet outputs.
    #[default]
    Json,
    /// One short line per sample for a person watching a terminal.
    Text,
}

/// Decodes a `stdout` sink.
pub(super) fn decode(body: &Node) -> Result<StdoutConfig, DecodeError> {
    from_node(body)
}
