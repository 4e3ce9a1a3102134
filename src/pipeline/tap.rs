//! Live views of what a source or transform emits (`/tap/COMPONENT`, `rigtap tap`):
//! one tap per component, offered each batch by its fan-out.
//!
//! A tap is a debugging view: it must never hold the pipeline back nor grow it. The
//! fan-out offers each batch and never waits. Each watcher has a queue of its own,
//! of JSON lines, holding at most [`WATCHER_BYTES`]: what does not fit is skipped for
//! that watcher alone, which finds a `{"tap_skipped_samples":N}` line where the
//! samples were. Lines are encoded only while someone watches, and only as many as
//! the roomiest watcher can take.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::toolkit::sample::{write_json_lines, Sample};

/// The key of the line that stands where samples were skipped for a watcher.
pub(crate) const SKIPPED_KEY: &str = "tap_skipped_samples";

/// Bytes of JSON lines a tap holds for one watcher that has not taken them yet: some
/// ten thousand samples, plenty to follow a component at a terminal, and all that a
/// watcher that stalls costs (with one more such batch in the API's connection).
/// The buffers its lines share with other watchers' count at most twice over (see
/// [`Watcher::push`]).
pub(crate) const WATCHER_BYTES: usize = 4 << 20;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// One tap per source and transform, by component id; a reload adds and removes
/// them, and a replaced component keeps its watchers.
#[derive(Default)]
pub(crate) struct Taps(Mutex<HashMap<String, Arc<Tap>>>);

impl Taps {
    /// The tap of `component`, for its fan-out to offer batches to.
    pub(crate) fn add(&self, component: &str) -> Arc<Tap> {
        lock(&self.0)
            .entry(component.to_string())
            .or_default()
            .clone()
    }

    /// Forgets a removed component's tap: its watchers' streams end once the
    /// component's fan-out is gone too.
    pub(crate) fn remove(&self, component: &str) {
        lock(&self.0).remove(component);
    }

    pub(crate) fn watch(&self, component: &str) -> Option<TapReceiver> {
        lock(&self.0).get(component).map(|tap| tap.watch())
    }

    /// The components that can be watched, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.0).keys().cloned().collect();
        names.sort_unstable();
        names
    }
}

/// One component's tap: its watchers. Shared by [`Taps`] and the component's
/// fan-out; when both are gone, its watchers' streams end.
#[derive(Default)]
pub(crate) struct Tap {
    /// Weak: a watcher that leaves (its [`TapReceiver`] dropped) frees what it held.
    watchers: Mutex<Vec<Weak<Watcher>>>,
}

impl Tap {
    fn watch(&self) -> TapReceiver {
        let watcher = Arc::new(Watcher::default());
        lock(&self.watchers).push(Arc::downgrade(&watcher));
        TapReceiver { watcher }
    }

    /// Offers `samples` to every watcher, without waiting: each takes the whole lines
    /// its room holds, and counts the rest as skipped.
    pub(crate) fn offer(&self, samples: &[Sample]) {
        let watchers: Vec<Arc<Watcher>> = {
            let mut watchers = lock(&self.watchers);
            watchers.retain(|w| w.strong_count() > 0);
            watchers.iter().filter_map(Weak::upgrade).collect()
        };
        let Some(room) = watchers.iter().map(|w| w.room()).max() else {
            return;
        };
        let mut lines = Vec::new();
        // Where each encoded sample's line ends.
        let mut ends = Vec::new();
        for sample in samples {
            if lines.len() >= room {
                break;
            }
            write_json_lines(std::slice::from_ref(sample), &mut lines);
            ends.push(lines.len());
        }
        let lines = Bytes::from(lines);
        for watcher in watchers {
            watcher.push(&lines, &ends, samples.len());
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        let watchers = self.watchers.get_mut().unwrap_or_else(|e| e.into_inner());
        for watcher in watchers.iter().filter_map(Weak::upgrade) {
            lock(&watcher.held).closed = true;
            watcher.ready.notify_one();
        }
    }
}

/// What one watcher has not taken yet.
#[derive(Default)]
struct Watcher {
    held: Mutex<Held>,
    /// Something to take, or the tap is gone.
    ready: Notify,
}

#[derive(Default)]
struct Held {
    entries: VecDeque<Entry>,
    /// The bytes of lines in `entries`: at most [`WATCHER_BYTES`].
    bytes: usize,
    /// No more lines will come.
    closed: bool,
}

enum Entry {
    Lines(Bytes),
    /// Samples skipped here, in the order of the stream.
    Skipped(u64),
}

impl Watcher {
    fn room(&self) -> usize {
        WATCHER_BYTES.saturating_sub(lock(&self.held).bytes)
    }

    /// Takes the first lines of `lines` (of `samples` samples, the first `ends.len()`
    /// of them encoded, line i ending at `ends[i]`) that fit, and counts the rest.
    fn push(&self, lines: &Bytes, ends: &[usize], samples: usize) {
        let mut held = lock(&self.held);
        let room = WATCHER_BYTES.saturating_sub(held.bytes);
        let fit = ends.partition_point(|end| *end <= room);
        if let Some(&bytes) = fit.checked_sub(1).and_then(|last| ends.get(last)) {
            // A slice keeps the whole buffer alive, encoded for the roomiest watcher:
            // a watcher that takes much less than all of it takes a copy, so what it
            // holds is what it counts.
            let taken = match bytes >= lines.len() / 2 {
                true => lines.slice(..bytes),
                false => Bytes::copy_from_slice(&lines[..bytes]),
            };
            held.entries.push_back(Entry::Lines(taken));
            held.bytes += bytes;
        }
        let skipped = (samples - fit) as u64;
        if skipped > 0 {
            match held.entries.back_mut() {
                Some(Entry::Skipped(n)) => *n += skipped,
                _ => held.entries.push_back(Entry::Skipped(skipped)),
            }
        }
        drop(held);
        self.ready.notify_one();
    }
}

/// A watcher's end of a tap: its lines in order, and where it missed some.
pub(crate) struct TapReceiver {
    watcher: Arc<Watcher>,
}

impl TapReceiver {
    /// The next lines, or a `{"tap_skipped_samples":N}` line where samples did not
    /// fit; `None` once the tap is gone and all was taken.
    pub(crate) async fn recv(&self) -> Option<Bytes> {
        loop {
            {
                let mut held = lock(&self.watcher.held);
                match held.entries.pop_front() {
                    Some(Entry::Lines(lines)) => {
                        held.bytes -= lines.len();
                        return Some(lines);
                    }
                    Some(Entry::Skipped(n)) => {
                        return Some(Bytes::from(format!("{{\"{SKIPPED_KEY}\":{n}}}\n")))
                    }
                    None if held.closed => return None,
                    None => {}
                }
            }
            // A notification sent since the lock was let go is kept for this wait.
            self.watcher.ready.notified().await;
        }
    }
}

#[cfg(test)]
mod tests;
