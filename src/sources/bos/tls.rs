//! TLS to the miners: a CA file or the system's roots, an optional server name, and a
//! client certificate for mTLS. `validate` checks that each file is there and holds
//! what it claims (a certificate, a key); the files are read again at start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, InvalidDnsNameError, PrivateKeyDer, ServerName};
use serde::Deserialize;

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

/// `tls.server_name` as rustls checks it, or what is wrong with it.
fn parse_server_name(name: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(name.to_string()).map_err(|e| {
        format!(
            "`tls.server_name` {name:?} is not a DNS name or an IP address ({e}); set it to the name the miners' certificates carry"
        )
    })
}

impl TlsConfig {
    /// The files' problems, each with the key it is about: missing, unreadable, or not
    /// a PEM certificate (CA, client certificate) or key.
    pub(crate) fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(name) = &self.server_name {
            parse_server_name(name).map_err(|message| ("server_name", message))?;
        }
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
pub(crate) enum TlsSetupError {
    #[error("tls: cannot read {}: {source}; check the path in `tls`", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tls: {} holds no usable PEM {what}: {source}", path.display())]
    Pem {
        path: PathBuf,
        what: &'static str,
        source: rustls_pki_types::pem::Error,
    },
    #[error("tls: {0}; check `tls.ca_file`, `tls.cert_file` and `tls.key_file`")]
    Rustls(#[from] rustls::Error),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|source| TlsSetupError::Read {
        path: path.to_owned(),
        source,
    })
}

fn pem_error<'a>(
    path: &'a Path,
    what: &'static str,
) -> impl FnOnce(rustls_pki_types::pem::Error) -> TlsSetupError + 'a {
    move |source| TlsSetupError::Pem {
        path: path.to_owned(),
        what,
        source,
    }
}

/// What every TLS connection of a source shares: the client configuration (HTTP/2 by
/// ALPN) and the name to check the miners' certificates against, when set.
pub(crate) struct MinerTls {
    pub(crate) config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl MinerTls {
    /// The name a miner's certificate must carry: `tls.server_name`, else the host
    /// dialled (a name or an address).
    pub(crate) fn server_name(
        &self,
        host: &str,
    ) -> Result<ServerName<'static>, InvalidDnsNameError> {
        match &self.server_name {
            Some(name) => Ok(name.clone()),
            None => ServerName::try_from(
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
            ),
        }
    }
}

/// Reads the CA (or this host's trusted roots), the client identity and the server
/// name of `tls`.
pub(crate) fn client_config(tls: &TlsConfig) -> Result<MinerTls, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            for certificate in CertificateDer::pem_slice_iter(&read(path)?) {
                roots.add(certificate.map_err(pem_error(path, "certificate"))?)?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for error in &native.errors {
                tracing::warn!(%error, "tls: a certificate of this host's trusted roots could not be read");
            }
            // Roots this host trusts but rustls cannot parse are left out, as browsers do.
            roots.add_parsable_certificates(native.certs);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_slice_iter(&read(cert)?)
                .collect::<Result<Vec<_>, _>>()
                .map_err(pem_error(cert, "certificate"))?;
            let key_der = PrivateKeyDer::from_pem_slice(&read(key)?)
                .map_err(pem_error(key, "private key"))?;
            builder.with_client_auth_cert(chain, key_der)?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let server_name = match &tls.server_name {
        Some(name) => Some(parse_server_name(name).map_err(rustls::Error::General)?),
        None => None,
    };
    Ok(MinerTls {
        config: Arc::new(config),
        server_name,
    })
}
