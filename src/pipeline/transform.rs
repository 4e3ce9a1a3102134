//! The loop every transform runs: take a batch, hand on a batch derived from it
//! (sharing its memory charge, see [`Batch::derive`]), until the inputs close and the
//! queue is drained.

use super::batch::Batch;
use super::component::{ComponentResult, Started, TransformContext};
use crate::toolkit::sample::Sample;

/// A transform's work on one batch, with whatever state it keeps between batches.
pub(crate) trait Transform: Send {
    fn apply(&mut self, samples: &[Sample]) -> Vec<Sample>;

    /// Called once the inputs have closed and the queue is drained (a summary log).
    fn finished(&self, _id: &str) {}
}

/// Runs `stage` until its inputs close and its queue is drained.
pub(crate) async fn run(mut stage: impl Transform, mut ctx: TransformContext) -> ComponentResult {
    while let Some(batch) = ctx.input.recv().await {
        let derived: Batch = batch.derive(stage.apply(batch.samples()));
        ctx.stats
            .filtered(batch.len().saturating_sub(derived.len()));
        drop(batch);
        ctx.out.send(derived).await;
    }
    stage.finished(&ctx.id);
    tracing::debug!(transform = %ctx.id, "inputs closed and queue drained");
    Ok(())
}

/// Starts a transform whose stage is built when its task starts (reading a file, say);
/// a stage that cannot be built fails the component.
pub(crate) fn start<T, E>(
    build: impl FnOnce() -> Result<T, E> + Send + 'static,
    ctx: TransformContext,
) -> Started
where
    T: Transform + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Started::task(async move {
        let stage = build().map_err(Into::into)?;
        run(stage, ctx).await
    })
}
