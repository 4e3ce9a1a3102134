//! Every component type rigtap knows, by the `type:` name users write. Adding a
//! component is its own folder and one line here.

use crate::pipeline::component::{ComponentType, SinkConfig, SourceConfig, TransformConfig};
use crate::{sinks, sources, transforms};

pub(crate) const SOURCES: &[ComponentType<dyn SourceConfig>] = &[
    sources::generate::TYPE,
    sources::bos::TYPE,
    sources::cgminer::TYPE,
];

pub(crate) const TRANSFORMS: &[ComponentType<dyn TransformConfig>] = &[
    transforms::normalise::TYPE,
    transforms::enrich::TYPE,
    transforms::filter::TYPE,
];

pub(crate) const SINKS: &[ComponentType<dyn SinkConfig>] = &[
    sinks::stdout::TYPE,
    sinks::parquet::TYPE,
    sinks::kafka::TYPE,
];

/// The names of `types`, for "did you mean" and the list of valid ones.
pub(crate) fn names<C: ?Sized>(types: &[ComponentType<C>]) -> Vec<&'static str> {
    types.iter().map(|t| t.name).collect()
}
