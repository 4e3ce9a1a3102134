//! Live views of what a source or transform emits (`/tap/COMPONENT`, `rigtap tap`):
//! one broadcast channel per component, offered each batch by its fan-out.
//!
//! A component's fan-out offers each batch to its tap only while someone watches, and
//! never waits for a watcher: a slow watcher misses batches (and is told how many),
//! the pipeline does not slow down.

use std::collections::HashMap;

use bytes::Bytes;
use tokio::sync::broadcast;

/// Batches (as JSON lines) a watcher may fall behind by before it misses some.
const TAP_BATCHES: usize = 64;

/// One tap per source and transform, by component id.
#[derive(Default)]
pub(crate) struct Taps(HashMap<String, broadcast::Sender<Bytes>>);

impl Taps {
    /// Creates the tap of `component`, for its fan-out to offer batches to.
    pub(crate) fn add(&mut self, component: &str) -> broadcast::Sender<Bytes> {
        self.0
            .entry(component.to_string())
            .or_insert_with(|| broadcast::channel(TAP_BATCHES).0)
            .clone()
    }

    pub(crate) fn watch(&self, component: &str) -> Option<broadcast::Receiver<Bytes>> {
        self.0.get(component).map(broadcast::Sender::subscribe)
    }

    /// The components that can be watched, sorted.
    pub(crate) fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.0.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}
