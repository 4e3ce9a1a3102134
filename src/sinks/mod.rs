//! Sink stages: where samples leave the pipeline.

pub mod kafka;
pub mod parquet;
pub mod stdout;
