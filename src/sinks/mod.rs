//! Sink stages: where samples leave the pipeline.

pub mod parquet;
pub mod stdout;
