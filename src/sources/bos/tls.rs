//! TLS to the miners: a CA file or the system's roots, an optional server name, and a
//! client certificate for mTLS. `validate` checks that each file is there and holds
//! what it claims (a certificate, a key); the files are read again at start.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsConfig {
    #[serde(default)]
    pub(crate) ca_file: Option<PathBuf>,
    /// The name the miners' certificates carry, when it is not the address dialled.
    #[serde(default)]
    pub(crate) server_name: Option<String>,
    /// Client certificate and key (PEM) for mTLS; both or neither.
    #[serde(default)]
    pub(crate) cert_file: Option<PathBuf>,
    #[serde(default)]
    pub(crate) key_file: Option<PathBuf>,
}

impl TlsConfig {
    /// The files' problems, each with the key it is about: missing, unreadable, or not
    /// a PEM certificate (CA, client certificate) or key.
    pub(crate) fn check(&self) -> Result<(), (&'static str, String)> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err((
                "cert_file",
                "`tls.cert_file` and `tls.key_file` go together (mTLS); set both or neither".into(),
            ));
        }
        let certificates = [("ca_file", &self.ca_file), ("cert_file", &self.cert_file)];
        for (key, path) in certificates {
            let Some(path) = path else { continue };
            let pem = read(path).map_err(|e| (key, e.to_string()))?;
            let parsed: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
            if !matches!(&parsed, Ok(certificates) if !certificates.is_empty()) {
                return Err((key, format!(
                    "`tls.{key}` {} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`); point it at the certificate file",
                    path.display()
                )));
            }
        }
        if let Some(path) = &self.key_file {
            let pem = read(path).map_err(|e| ("key_file", e.to_string()))?;
            if PrivateKeyDer::from_pem_slice(&pem).is_err() {
                return Err(("key_file", format!(
                    "`tls.key_file` {} holds no PEM private key; point it at the client certificate's key",
                    path.display()
                )));
            }
        }
        Ok(())
    }
}

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
