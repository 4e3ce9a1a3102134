//! A count of things alive: each [`Counted`] adds one to a shared count for as long as
//! it lives, so every way out (an early return, a dropped future, a closed connection)
//! takes it off again.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

/// One in `count`, until dropped.
pub(crate) struct Counted(Arc<AtomicUsize>);

impl Counted {
    pub(crate) fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Relaxed);
        Counted(count.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_what_lives() {
        let count = Arc::new(AtomicUsize::new(0));
        let (a, b) = (Counted::new(&count), Counted::new(&count));
        assert_eq!(count.load(Relaxed), 2);
        drop(a);
        assert_eq!(count.load(Relaxed), 1);
        drop(b);
        assert_eq!(count.load(Relaxed), 0);
    }
}
