//! What both miner sources use to make a poll's answers into samples: a sample of a
//! miner stamped with the poll's time, and folds of measurements where none is no
//! value (absent), never zero.

use std::num::NonZeroU32;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};

use super::targets::Target;
use crate::toolkit::log_budget::LogBudget;
use crate::toolkit::sample::{Sample, SampleKind};

/// The most boards a poll reads of one miner. Miners have three or four; an answer
/// listing more (a firmware fault, or hostility: 20,000 figures in one Avalon string,
/// or in a hashboard list) is cut here, so that one poll cannot become thousands of
/// samples held in the queue to the pipeline (measured: 10 such stock miners took a
/// collector from 343 MB to 1.6 GB in 9 s).
pub(crate) const MAX_BOARDS: usize = 16;

/// How many of `listed` boards a poll of `target` reads: at most [`MAX_BOARDS`],
/// with a warning (at most one a second for the process) naming the miner when more
/// were listed.
pub(crate) fn boards_read(listed: usize, target: &Target) -> usize {
    static CUT: LazyLock<LogBudget> =
        LazyLock::new(|| LogBudget::new(NonZeroU32::MIN, NonZeroU32::MIN));
    if listed > MAX_BOARDS && CUT.allow() {
        tracing::warn!(miner = %target.id, address = %target.address, boards = listed, read = MAX_BOARDS, lines_suppressed_so_far = CUT.suppressed(), "the miner's answer lists more boards than any miner has; only the first are read");
    }
    listed.min(MAX_BOARDS)
}

/// An empty sample of `kind` for `target`, with its labels, stamped `at`.
pub(crate) fn sample_at(target: &Target, kind: SampleKind, at: DateTime<Utc>) -> Sample {
    let mut sample = Sample::new(kind, target.id.clone(), target.labels.clone());
    sample.timestamp = at;
    sample
}

pub(crate) fn max(values: impl Iterator<Item = f64>) -> Option<f64> {
    values.fold(None, |best, v| Some(best.map_or(v, |b: f64| b.max(v))))
}

pub(crate) fn min(values: impl Iterator<Item = f64>) -> Option<f64> {
    values.fold(None, |best, v| Some(best.map_or(v, |b: f64| b.min(v))))
}

pub(crate) fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0u32), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / f64::from(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_is_absent_not_zero() {
        let none = std::iter::empty::<f64>;
        assert_eq!((max(none()), min(none()), mean(none())), (None, None, None));
        let v = || [3.0, -1.0, 4.0].into_iter();
        assert_eq!(
            (max(v()), min(v()), mean(v())),
            (Some(4.0), Some(-1.0), Some(2.0))
        );
    }
}
