//! `type: normalise`: one sample shape with trustworthy values.
//!
//! The source already writes canonical units (it converts where the miner API's types
//! name the unit, see sources/bos/poll.rs). This stage makes the values safe to
//! aggregate: timestamps are UTC milliseconds; a measurement outside its physical
//! bounds (NaN, negative, a unit mix-up) is removed and counted by field; efficiency
//! is derived as W / (TH/s) where a miner did not report it; and cumulative share
//! counters get per-sample deltas, with miner restarts detected.
//!
//! ```yaml
//! transforms:
//!   clean:
//!     type: normalise
//!     inputs: [fleet]
//!     bounds: {temp_chip_c: [0, 110]}   # optional overrides of the defaults
//! ```

mod bounds;
mod config;
mod counters;
mod stage;

use crate::pipeline::component::{ComponentType, TransformConfig};

/// The registry's entry for `type: normalise`.
pub(crate) const TYPE: ComponentType<dyn TransformConfig> = ComponentType {
    name: "normalise",
    decode: |body, _| Ok(Box::new(config::decode(body)?)),
};
