//! The stdout sink's loop: encode each batch, write it, count it.

use tokio::io::AsyncWriteExt;

use super::config::StdoutConfig;
use super::encoder::encode;
use crate::pipeline::component::{ComponentResult, SinkConfig, SinkContext, Started};
use crate::pipeline::stats::DropReason;

#[derive(Debug, thiserror::Error)]
pub(super) enum StdoutError {
    #[error("writing to stdout failed: {0}")]
    Write(#[source] std::io::Error),
}

impl SinkConfig for StdoutConfig {
    fn start(self: Box<Self>, ctx: SinkContext) -> Started {
        Started::task(run(*self, ctx))
    }
}

async fn run(config: StdoutConfig, mut ctx: SinkContext) -> ComponentResult {
    let mut stdout = tokio::io::stdout();
    let mut buffer = Vec::with_capacity(64 * 1024);
    let mut closed = false;
    while let Some(batch) = ctx.input.recv().await {
        if closed {
            ctx.stats.dropped(DropReason::OutputClosed, batch.len());
            continue;
        }
        buffer.clear();
        encode(config.encoding, batch.samples(), &mut buffer);
        let written = async {
            stdout.write_all(&buffer).await?;
            stdout.flush().await
        };
        match written.await {
            Ok(()) => {
                ctx.stats
                    .delivered(batch.samples().iter().map(|s| s.timestamp));
                ctx.stats.sent_bytes(buffer.len());
            }
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                tracing::warn!(sink = %ctx.id, "stdout was closed by its reader; stopping the pipeline");
                ctx.stats.dropped(DropReason::OutputClosed, batch.len());
                ctx.stop_pipeline.cancel();
                closed = true;
            }
            Err(e) => {
                ctx.stats.dropped(DropReason::WriteFailed, batch.len());
                return Err(StdoutError::Write(e).into());
            }
        }
    }
    Ok(())
}
