//! `type: enrich`: labels from the inventory and from config, on every sample, with a
//! declared label set so the schema (Parquet columns, Kafka fields) is known before the
//! first sample.
//!
//! ```yaml
//! transforms:
//!   labelled:
//!     type: enrich
//!     inputs: [clean]
//!     labels: [site, rack, model]      # what every sample carries; others are removed
//!     inventory: miners.csv            # id,address,<columns>: per-miner values
//!     static: {region: eu-north}       # the same value on every sample (declared too)
//! ```
//!
//! A value comes from `static`, else the inventory row of the sample's miner, else the
//! label the sample already had; a label with no value is absent (a null column).

mod config;
mod stage;

use crate::pipeline::component::{ComponentType, TransformConfig};

/// The registry's entry for `type: enrich`.
pub(crate) const TYPE: ComponentType<dyn TransformConfig> = ComponentType {
    name: "enrich",
    decode: |body, _| Ok(Box::new(config::decode(body)?)),
};
