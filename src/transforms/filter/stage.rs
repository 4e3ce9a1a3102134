//! The running `filter` stage: the condition, applied to each sample.

use super::config::FilterConfig;
use crate::pipeline::component::{Started, TransformConfig, TransformContext};
use crate::pipeline::transform::{self, Transform};
use crate::toolkit::sample::Sample;

impl Transform for FilterConfig {
    /// The samples of `samples` that pass.
    fn apply(&mut self, samples: &[Sample]) -> Vec<Sample> {
        samples
            .iter()
            .filter(|s| self.condition.matches(s))
            .cloned()
            .collect()
    }
}

impl TransformConfig for FilterConfig {
    fn start(self: Box<Self>, ctx: TransformContext) -> Started {
        Started::task(transform::run(*self, ctx))
    }
}
