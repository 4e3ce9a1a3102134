//! Problems found in a config file, each at the line and column a user would edit.

use std::fmt;
use std::path::{Path, PathBuf};

use super::decode::DecodeError;
use super::node::Mark;

/// One problem found in a config file.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub mark: Mark,
    pub message: String,
}

impl Diagnostic {
    pub fn new(mark: Mark, message: impl Into<String>) -> Self {
        Diagnostic {
            mark,
            message: message.into(),
        }
    }

    /// A decode error, at its own position or else at `fallback`.
    pub(crate) fn from_decode(fallback: Mark) -> impl Fn(DecodeError) -> Diagnostic {
        move |e| Diagnostic::new(e.mark.unwrap_or(fallback), e.message)
    }
}

/// Why a config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read the config file: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", Located { path, diagnostics })]
    Invalid {
        path: PathBuf,
        diagnostics: Vec<Diagnostic>,
    },
}

/// `FILE:LINE:COLUMN: message`, one line per problem.
struct Located<'a> {
    path: &'a Path,
    diagnostics: &'a [Diagnostic],
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}:{}: {}", self.path.display(), d.mark, d.message)?;
        }
        Ok(())
    }
}
