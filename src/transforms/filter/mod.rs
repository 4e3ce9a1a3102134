//! `type: filter`: keeps the samples for which a condition holds.
//!
//! ```yaml
//! transforms:
//!   slow_miners:
//!     type: filter
//!     inputs: [fleet]
//!     condition: kind == "miner" and hashrate_ths < 50
//! ```
//!
//! The condition is parsed and type-checked when the config is loaded, so a typo is a
//! validate error with a position, never a filter that silently keeps nothing.

mod condition;

pub use condition::{Condition, ParseError};

use serde::{de, Deserialize, Deserializer};

use crate::sample::Sample;

/// What the user writes under `type: filter`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Samples for which this holds pass; the others are removed (not counted as drops:
    /// removing them is what the user asked for).
    #[serde(deserialize_with = "parse_condition")]
    pub condition: Condition,
}

fn parse_condition<'de, D: Deserializer<'de>>(d: D) -> Result<Condition, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|e: ParseError| de::Error::custom(e))
}

impl FilterConfig {
    /// The samples of `samples` that pass.
    pub fn apply(&self, samples: &[Sample]) -> Vec<Sample> {
        samples
            .iter()
            .filter(|s| self.condition.matches(s))
            .cloned()
            .collect()
    }
}
