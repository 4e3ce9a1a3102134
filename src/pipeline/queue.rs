//! The queue in front of a transform or sink: how many batches it holds, and what a
//! full queue does to the next one.

use serde::Deserialize;

/// What the user writes under a component's `buffer:`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct BufferConfig {
    /// Batches the queue holds; a full queue holds back its inputs (or drops, if asked).
    #[serde(default = "default_max_batches")]
    pub max_batches: usize,
    #[serde(default)]
    pub when_full: WhenFull,
}

/// 16 batches of a few hundred samples keep a sink busy through a slow flush while
/// staying small next to the memory budget.
fn default_max_batches() -> usize {
    16
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            max_batches: default_max_batches(),
            when_full: WhenFull::default(),
        }
    }
}

/// What a full queue does to a new batch.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait for room: backpressure reaches the sources (the default, loses nothing).
    #[default]
    Block,
    /// Drop the new batch and count it (`reason: queue_full`).
    DropNewest,
}
