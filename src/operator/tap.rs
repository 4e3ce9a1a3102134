//! `rigtap tap`: prints what a source or transform of a running pipeline emits, read
//! from the pipeline's API (`/tap/COMPONENT`).

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("cannot reach the pipeline's API at {address}: {source}; is `rigtap run` running with this config, and `api.enabled`?")]
    Connect {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("reading from the API: {0}")]
    Read(#[from] std::io::Error),
    #[error("{0}")]
    Refused(String),
}

/// Prints the samples `component` emits, read from the API at `address`, until the
/// pipeline stops or `limit` samples have been printed.
pub async fn print(
    address: std::net::SocketAddr,
    component: &str,
    limit: Option<usize>,
) -> Result<(), TapError> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|source| TapError::Connect { address, source })?;
    // HTTP/1.0: the server streams the body and closes, no chunked framing to undo.
    let request = format!("GET /tap/{component} HTTP/1.0\r\nHost: {address}\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).await?;
    let ok = status.split_whitespace().nth(1) == Some("200");
    let mut line = String::new();
    // Headers end at the first empty line.
    while reader.read_line(&mut line).await? > 0 && line.trim_end() != "" {
        line.clear();
    }
    let mut out = tokio::io::stdout();
    let mut printed = 0;
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            break;
        }
        if !ok {
            return Err(TapError::Refused(line.trim_end().to_string()));
        }
        out.write_all(line.as_bytes()).await?;
        printed += 1;
        if limit.is_some_and(|limit| printed >= limit) {
            break;
        }
    }
    out.flush().await?;
    Ok(())
}
