//! Transform stages: between sources and sinks. Each takes a batch and hands on a
//! batch derived from it (sharing its memory charge, see [`Batch::derive`]).

pub mod enrich;
pub mod filter;
pub mod normalise;

use crate::config::TransformConfig;
use crate::sample::Sample;
use crate::topology::batch::Batch;
use crate::topology::{ComponentResult, TransformContext};
use enrich::Enricher;
use normalise::Normaliser;

/// A transform while it runs, with whatever state it keeps between batches.
enum Stage {
    Filter(filter::FilterConfig),
    Normalise(Box<Normaliser>),
    Enrich(Box<Enricher>),
}

impl Stage {
    fn apply(&mut self, samples: &[Sample]) -> Vec<Sample> {
        match self {
            Stage::Filter(filter) => filter.apply(samples),
            Stage::Normalise(normaliser) => normaliser.apply(samples),
            Stage::Enrich(enricher) => enricher.apply(samples),
        }
    }
}

/// Runs one transform until its inputs close and its queue is drained.
pub async fn run(config: TransformConfig, mut ctx: TransformContext) -> ComponentResult {
    let mut stage = match config {
        TransformConfig::Filter(filter) => Stage::Filter(filter),
        TransformConfig::Normalise(config) => Stage::Normalise(Box::new(Normaliser::new(&config)?)),
        TransformConfig::Enrich(config) => Stage::Enrich(Box::new(Enricher::new(&config)?)),
    };
    while let Some(batch) = ctx.input.recv().await {
        ctx.stats.received(batch.len());
        let derived: Batch = batch.derive(stage.apply(batch.samples()));
        drop(batch);
        ctx.out.send(derived).await;
    }
    if let Stage::Normalise(n) = &stage {
        tracing::info!(
            transform = %ctx.id,
            implausible = ?n.implausible,
            counter_resets = n.counter_resets,
            efficiency_derived = n.efficiency_derived,
            "normalise finished: implausible values removed, by field"
        );
    }
    tracing::debug!(transform = %ctx.id, "inputs closed and queue drained");
    Ok(())
}
