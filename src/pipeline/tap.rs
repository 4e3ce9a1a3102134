//! Live views of what a source or transform emits (`/tap/COMPONENT`, `rigtap tap`):
//! one broadcast channel per component, offered each batch by its fan-out.
//!
//! A component's fan-out offers each batch to its tap only while someone watches, and
//! never waits for a watcher: a slow watcher misses batches (and is told how many),
//! the pipeline does not slow down.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::broadcast;

/// Batches (as JSON lines) a watcher may fall behind by before it misses some.
const TAP_BATCHES: usize = 64;

/// One tap per source and transform, by component id; a reload adds and removes
/// them, and a replaced component keeps its watchers.
#[derive(Default)]
pub(crate) struct Taps(Mutex<HashMap<String, broadcast::Sender<Bytes>>>);

impl Taps {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, broadcast::Sender<Bytes>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The tap of `component`, for its fan-out to offer batches to.
    pub(crate) fn add(&self, component: &str) -> broadcast::Sender<Bytes> {
        self.map()
            .entry(component.to_string())
            .or_insert_with(|| broadcast::channel(TAP_BATCHES).0)
            .clone()
    }

    /// Forgets a removed component's tap: its watchers' streams end.
    pub(crate) fn remove(&self, component: &str) {
        self.map().remove(component);
    }

    pub(crate) fn watch(&self, component: &str) -> Option<broadcast::Receiver<Bytes>> {
        self.map().get(component).map(broadcast::Sender::subscribe)
    }

    /// The components that can be watched, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.map().keys().cloned().collect();
        names.sort_unstable();
        names
    }
}
