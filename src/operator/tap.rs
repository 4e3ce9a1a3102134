//! `rigtap tap`: prints what a source or transform of a running pipeline emits, read
//! from the pipeline's API (`/tap/COMPONENT`).

use super::tap_path;
use crate::pipeline::tap::SKIPPED_KEY;

/// The most of a refusal's body printed: the API's messages are one line.
const MAX_REFUSAL_BYTES: u64 = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("cannot reach the pipeline's API at {address}: {source}; is `rigtap run` running with this config, and `api.enabled`?")]
    Connect {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("reading from the API: {0}")]
    Read(#[from] std::io::Error),
    /// The API answered something other than 200: an unknown component, a bad path.
    #[error("the API answered `{status}`: {message}")]
    Refused { status: String, message: String },
}

/// Prints the samples `component` emits, read from the API at `address`, until the
/// pipeline stops or `limit` samples have been printed (`Some(0)`: none, once the API
/// has accepted the tap). A refusal is an error with the API's message.
pub async fn print(
    address: std::net::SocketAddr,
    component: &str,
    limit: Option<usize>,
) -> Result<(), TapError> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|source| TapError::Connect { address, source })?;
    // HTTP/1.0: the server streams the body and closes, no chunked framing to undo.
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {address}\r\n\r\n",
        tap_path::path(component)
    );
    stream.write_all(request.as_bytes()).await?;
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    if reader.read_line(&mut status).await? == 0 {
        return Err(TapError::Read(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the API closed the connection without an answer",
        )));
    }
    let status = status.trim_end().to_string();
    let mut line = String::new();
    // Headers end at the first empty line.
    while reader.read_line(&mut line).await? > 0 && line.trim_end() != "" {
        line.clear();
    }
    if status.split_whitespace().nth(1) != Some("200") {
        let mut body = Vec::new();
        reader
            .take(MAX_REFUSAL_BYTES)
            .read_to_end(&mut body)
            .await?;
        let message = String::from_utf8_lossy(&body).trim().to_string();
        return Err(TapError::Refused {
            status,
            message: if message.is_empty() {
                "(no message)".to_string()
            } else {
                message
            },
        });
    }
    let mut out = tokio::io::stdout();
    let mut printed = 0;
    // The line that says samples were skipped is printed, not counted as a sample.
    let skipped = format!("{{\"{SKIPPED_KEY}\":");
    while limit.is_none_or(|limit| printed < limit) {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            break;
        }
        out.write_all(line.as_bytes()).await?;
        printed += usize::from(!line.starts_with(&skipped));
    }
    out.flush().await?;
    Ok(())
}
