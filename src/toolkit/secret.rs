//! Secrets in config: written inline (usually as `${ENV_VAR}`) or read from a file, and
//! never printed. `Debug` and `Display` show `***`, so a secret cannot leak through a
//! log line or `rigtap validate`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    /// The secret itself; call only where it is sent, never where it is shown.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// Reads a secret file (as Kubernetes and Docker mount them), without the final newline.
    pub(crate) fn from_file(path: &Path) -> Result<Self, SecretError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecretError {
            path: path.to_owned(),
            source,
        })?;
        Ok(Secret(text.trim_end_matches(['\r', '\n']).to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read the secret file {}: {source}; check the path and that rigtap may read it", path.display())]
pub(crate) struct SecretError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shown() {
        let secret = Secret("hunter2".to_string());
        assert_eq!(format!("{secret} {secret:?}"), "*** Secret(***)");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn from_file_drops_the_final_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        std::fs::write(&path, "s3cret\n").unwrap();
        assert_eq!(Secret::from_file(&path).unwrap().expose(), "s3cret");
        let missing = Secret::from_file(&dir.path().join("nope")).unwrap_err();
        assert!(missing.to_string().contains("cannot read the secret file"));
    }
}
