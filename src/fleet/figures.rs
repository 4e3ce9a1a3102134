//! What both miner sources use to make a poll's answers into samples: a sample of a
//! miner stamped with the poll's time, and folds of measurements where none is no
//! value (absent), never zero.

use chrono::{DateTime, Utc};

use super::targets::Target;
use crate::toolkit::sample::{Sample, SampleKind};

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
