//! `type: cgminer`: miners on stock firmware (Antminer, Whatsminer, Avalon) over the
//! CGMiner-style JSON API on TCP 4028, into the same samples as `bos`.
//!
//! [`wire`] asks one command over one connection and tidies the answer; [`dialect`]
//! reads the three firmware families' answers; [`source`] runs one task per miner with
//! the `bos` source's connect governor, backoff, breaker, status samples and queue.

pub mod config;
pub(crate) mod dialect;
mod source;
pub(crate) mod wire;

use crate::pipeline::component::{ComponentType, SourceConfig};

/// The registry's entry for `type: cgminer`.
pub const TYPE: ComponentType<dyn SourceConfig> = ComponentType {
    name: "cgminer",
    decode: |body, context| Ok(Box::new(config::decode(body, context)?)),
};
