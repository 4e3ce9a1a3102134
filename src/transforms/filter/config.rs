//! What the user writes under `type: filter`.

use serde::{de, Deserialize, Deserializer};

use super::condition::{Condition, ParseError};
use crate::toolkit::yaml::decode::{from_node, DecodeError};
use crate::toolkit::yaml::node::Node;

/// What the user writes under `type: filter`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FilterConfig {
    /// Samples for which this holds pass; the others are removed (not counted as drops:
    /// removing them is what the user asked for).
    #[serde(deserialize_with = "parse_condition")]
    pub condition: Condition,
}

fn parse_condition<'de, D: Deserializer<'de>>(d: D) -> Result<Condition, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|e: ParseError| de::Error::custom(e))
}

/// Decodes a `filter` transform; its condition is parsed and checked here.
pub(super) fn decode(body: &Node) -> Result<FilterConfig, DecodeError> {
    from_node(body)
}
