//! `type: stdout`: samples as JSON lines (or a compact text form) for people and pipes.
//!
//! A closed pipe (`rigtap run ... | head`) is not an error: the sink asks the pipeline
//! to stop, and counts what it can no longer write as dropped (`output_closed`).

mod config;
mod encoder;
mod sink;

pub use config::StdoutEncoding;
pub use encoder::encode;

use crate::pipeline::component::{ComponentType, SinkConfig};

/// The registry's entry for `type: stdout`.
pub const TYPE: ComponentType<dyn SinkConfig> = ComponentType {
    name: "stdout",
    decode: |body, _| Ok(Box::new(config::decode(body)?)),
};
