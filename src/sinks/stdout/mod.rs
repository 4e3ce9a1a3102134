//! `type: stdout`: samples as JSON lines (or a compact text form) for people and pipes.
//!
//! A closed pipe (`rigtap run ... | head`) is not an error: the sink asks the pipeline
//! to stop, and counts what it can no longer write as dropped (`output_closed`).

mod config;
mod encoder;

pub use config::{StdoutConfig, StdoutEncoding};
pub use encoder::encode;

use tokio::io::AsyncWriteExt;

use crate::topology::stats::DropReason;
use crate::topology::{ComponentResult, SinkContext};

#[derive(Debug, thiserror::Error)]
pub enum StdoutError {
    #[error("writing to stdout failed: {0}")]
    Write(#[source] std::io::Error),
}

pub async fn run(config: StdoutConfig, mut ctx: SinkContext) -> ComponentResult {
    let mut stdout = tokio::io::stdout();
    let mut buffer = Vec::with_capacity(64 * 1024);
    let mut closed = false;
    while let Some(batch) = ctx.input.recv().await {
        ctx.stats.received(batch.len());
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
                ctx.stats.sent(batch.len());
                ctx.stats.sent_bytes(buffer.len());
            }
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                tracing::warn!(sink = %ctx.id, "stdout was closed by its reader; stopping the pipeline");
                ctx.stats.dropped(DropReason::OutputClosed, batch.len());
                ctx.stop_pipeline.cancel();
                closed = true;
            }
            Err(e) => return Err(StdoutError::Write(e).into()),
        }
    }
    Ok(())
}
