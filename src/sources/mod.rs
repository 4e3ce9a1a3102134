//! Source stages: where samples enter the pipeline.

pub mod generate;
