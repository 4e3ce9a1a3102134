//! `type: generate`: synthetic miner samples at a set rate, for tests and demos.
//!
//! Each miner's `shares_accepted` counts that miner's samples (1, 2, 3, ...), so a
//! consumer can prove that nothing was lost or repeated: per miner, the values it
//! received must be exactly 1..=n.

mod config;
mod source;

use crate::pipeline::component::{ComponentType, SourceConfig};

/// The registry's entry for `type: generate`.
pub(crate) const TYPE: ComponentType<dyn SourceConfig> = ComponentType {
    name: "generate",
    decode: |body, _| Ok(Box::new(config::decode(body)?)),
};
