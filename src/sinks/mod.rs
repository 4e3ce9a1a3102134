//! Sink stages: where samples leave the pipeline.

pub mod stdout;
