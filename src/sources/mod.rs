//! Source stages: where samples enter the pipeline.

pub mod bos;
pub mod cgminer;
pub(crate) mod generate;
