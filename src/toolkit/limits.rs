//! The process's open-file limit, checked against what a fleet needs: every miner
//! costs the collector one socket (and the simulator a listener and a socket), and a
//! process over its limit fails in ways that look like network trouble (connections
//! that hang, miners that time out). Better to say so at start.

/// The soft open-file limit, if it is below `needed`.
pub(crate) fn open_files_short_of(needed: u64) -> Option<u64> {
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).ok()?;
    (soft < needed).then_some(soft)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_modest_need_fits_and_an_absurd_one_does_not() {
        assert_eq!(open_files_short_of(16), None);
        assert!(open_files_short_of(u64::MAX).is_some());
    }
}
