//! Source stages: where samples enter the pipeline.

pub mod bos;
pub(crate) mod generate;
