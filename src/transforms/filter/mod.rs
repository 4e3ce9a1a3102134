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
mod config;
mod stage;

use crate::pipeline::component::{ComponentType, TransformConfig};

/// The registry's entry for `type: filter`.
pub(crate) const TYPE: ComponentType<dyn TransformConfig> = ComponentType {
    name: "filter",
    decode: |body, _| Ok(Box::new(config::decode(body)?)),
};
