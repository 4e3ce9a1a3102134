//! What asks the agent for a reload (`POST /reload`, `--watch`), and what it counts of
//! them for `/metrics`.

use std::sync::atomic::AtomicU64;

use tokio::sync::oneshot;

use crate::topology::running::Changes;

/// A request to reload the config file; the reply (for `POST /reload`) says what
/// changed, or why the new file was refused.
pub(crate) struct Reload {
    pub(crate) reply: Option<oneshot::Sender<Result<Changes, String>>>,
}

/// Reloads so far, by outcome, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct ReloadCounts {
    pub(crate) applied: AtomicU64,
    pub(crate) refused: AtomicU64,
}
