//! Transform stages: between sources and sinks. Each takes a batch and hands on a
//! batch derived from it (sharing its memory charge, see [`Batch::derive`]).

pub mod filter;

use crate::config::TransformConfig;
use crate::topology::batch::Batch;
use crate::topology::{ComponentResult, TransformContext};

/// Runs one transform until its inputs close and its queue is drained.
pub async fn run(config: TransformConfig, mut ctx: TransformContext) -> ComponentResult {
    while let Some(batch) = ctx.input.recv().await {
        ctx.stats.received(batch.len());
        let samples = match &config {
            TransformConfig::Filter(filter) => filter.apply(batch.samples()),
        };
        let derived: Batch = batch.derive(samples);
        drop(batch);
        ctx.out.send(derived).await;
    }
    tracing::debug!(transform = %ctx.id, "inputs closed and queue drained");
    Ok(())
}
