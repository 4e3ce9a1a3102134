//! TLS to the miners: a CA file or the system's roots, an optional server name, and a
//! client certificate for mTLS. Files are read once at start, and a missing or bad file
//! is an error that names it.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use super::config::TlsConfig;

#[derive(Debug, thiserror::Error)]
#[error("tls: cannot read {}: {source}; check the path in `tls`", path.display())]
pub(crate) struct TlsFileError {
    path: PathBuf,
    source: std::io::Error,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|source| TlsFileError {
        path: path.to_owned(),
        source,
    })
}

pub(crate) fn client_config(tls: &TlsConfig) -> Result<ClientTlsConfig, TlsFileError> {
    let mut config = ClientTlsConfig::new();
    config = match &tls.ca_file {
        Some(path) => config.ca_certificate(Certificate::from_pem(read(path)?)),
        None => config.with_native_roots(),
    };
    if let Some(name) = &tls.server_name {
        config = config.domain_name(name.clone());
    }
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(config)
}
