//! The running `normalise` stage: bounds, derived efficiency, share deltas.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::Arc;

use chrono::SubsecRound;

use super::bounds::{self, Bound};
use super::config::NormaliseConfig;
use super::counters;
use crate::pipeline::component::{Started, TransformConfig, TransformContext};
use crate::pipeline::transform::{self, Transform};
use crate::toolkit::log_budget::LogBudget;
use crate::toolkit::sample::{Sample, SampleKind};

/// The running stage: bounds, and each miner's previous counters.
pub(super) struct Normaliser {
    checks: Vec<bounds::Check>,
    /// The bound a derived efficiency must meet, like a reported one.
    efficiency: Bound,
    previous: HashMap<Arc<str>, Option<counters::Previous>>,
    /// Values removed, by field.
    pub implausible: BTreeMap<&'static str, u64>,
    pub(crate) counter_resets: u64,
    /// A line per reset, within a budget: counters that keep going back (a firmware
    /// that does not keep them, a fleet of thousands) must not flood the log.
    reset_lines: LogBudget,
    pub(crate) efficiency_derived: u64,
}

impl Normaliser {
    pub(super) fn new(config: &NormaliseConfig) -> Result<Self, String> {
        let checks = bounds::resolve(&config.bounds)?;
        let efficiency = checks
            .iter()
            .find(|c| c.name == "efficiency_jth")
            .map_or(Bound([f64::NEG_INFINITY, f64::INFINITY]), |c| c.bound);
        Ok(Normaliser {
            checks,
            efficiency,
            previous: HashMap::new(),
            implausible: BTreeMap::new(),
            counter_resets: 0,
            reset_lines: LogBudget::new(NonZeroU32::MIN, NonZeroU32::new(10).expect("10 > 0")),
            efficiency_derived: 0,
        })
    }

    fn one(&mut self, mut sample: Sample) -> Sample {
        sample.timestamp = sample.timestamp.trunc_subsecs(3);
        for check in &self.checks {
            let value = (check.field)(&mut sample);
            if value.is_some_and(|v| !check.bound.admits(v)) {
                *value = None;
                *self.implausible.entry(check.name).or_default() += 1;
            }
        }
        if sample.efficiency_jth.is_none() {
            if let (Some(watts), Some(ths)) = (sample.power_w, sample.hashrate_ths) {
                let derived = watts / ths;
                if ths > 0.0 && self.efficiency.admits(derived) {
                    sample.efficiency_jth = Some(derived);
                    self.efficiency_derived += 1;
                }
            }
        }
        if sample.kind == SampleKind::Miner {
            let previous = self.previous.entry(sample.miner_id.clone()).or_default();
            if counters::apply(previous, &mut sample) {
                self.counter_resets += 1;
                if self.reset_lines.allow() {
                    tracing::info!(
                        miner = %sample.miner_id,
                        resets_so_far = self.counter_resets,
                        lines_suppressed_so_far = self.reset_lines.suppressed(),
                        "share counters went back: the miner restarted; deltas count from the restart"
                    );
                }
            }
        }
        sample
    }
}

impl Transform for Normaliser {
    fn apply(&mut self, samples: &[Sample]) -> Vec<Sample> {
        samples.iter().map(|s| self.one(s.clone())).collect()
    }

    fn finished(&self, id: &str) {
        tracing::info!(
            transform = %id,
            implausible = ?self.implausible,
            counter_resets = self.counter_resets,
            reset_lines_suppressed = self.reset_lines.suppressed(),
            efficiency_derived = self.efficiency_derived,
            "normalise finished: implausible values removed, by field"
        );
    }
}

impl TransformConfig for NormaliseConfig {
    fn start(self: Box<Self>, ctx: TransformContext) -> Started {
        transform::start(move || Normaliser::new(&self), ctx)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::toolkit::strategies::hostile_double;

    fn miner(hashrate: f64, power: f64) -> Sample {
        let mut s = Sample::new(SampleKind::Miner, "m".into(), Default::default());
        s.hashrate_ths = Some(hashrate);
        s.power_w = Some(power);
        s
    }

    #[test]
    fn implausible_values_are_removed_and_counted_by_field() {
        let mut n = Normaliser::new(&NormaliseConfig::default()).unwrap();
        let mut bad = miner(f64::NAN, 9.0e9);
        bad.temp_chip_c = Some(-300.0);
        bad.fan_rpm = Some(5900.0);
        let out = n.apply(&[bad]);
        assert_eq!(out[0].hashrate_ths, None);
        assert_eq!(out[0].power_w, None);
        assert_eq!(out[0].temp_chip_c, None);
        assert_eq!(out[0].fan_rpm, Some(5900.0), "good values stay");
        assert_eq!(
            out[0].efficiency_jth, None,
            "nothing derived from removed values"
        );
        assert_eq!(
            n.implausible,
            BTreeMap::from([("hashrate_ths", 1), ("power_w", 1), ("temp_chip_c", 1)])
        );
    }

    #[test]
    fn counters_that_keep_going_back_are_all_counted_in_a_few_lines() {
        let mut n = Normaliser::new(&NormaliseConfig::default()).unwrap();
        // A thousand samples, each with fewer shares than the one before.
        let samples: Vec<Sample> = (0..1000u64)
            .map(|i| {
                let mut s = miner(200.0, 3000.0);
                s.shares_accepted = Some(1_000_000 - i);
                s
            })
            .collect();
        let out = n.apply(&samples);
        assert_eq!(n.counter_resets, 999, "every reset after the first sample");
        assert_eq!(out[999].shares_accepted_delta, Some(999_001));
        let written = 999 - n.reset_lines.suppressed();
        assert!((10..=11).contains(&written), "{written} lines written");
    }

    #[test]
    fn reported_efficiency_is_kept() {
        let mut n = Normaliser::new(&NormaliseConfig::default()).unwrap();
        let mut s = miner(200.0, 3000.0);
        s.efficiency_jth = Some(15.5);
        assert_eq!(n.apply(&[s])[0].efficiency_jth, Some(15.5));
        assert_eq!(n.efficiency_derived, 0);
    }

    proptest! {
        /// Efficiency is derived as W / (TH/s) for every plausible pair, and the units
        /// already canonical pass through untouched.
        #[test]
        fn efficiency_is_watts_over_terahash(ths in 1.0f64..1500.0, watts in 100.0f64..15000.0) {
            let mut n = Normaliser::new(&NormaliseConfig::default()).unwrap();
            let out = n.apply(&[miner(ths, watts)]);
            prop_assert_eq!(out[0].hashrate_ths, Some(ths));
            prop_assert_eq!(out[0].power_w, Some(watts));
            let jth = watts / ths;
            if (1.0..=500.0).contains(&jth) {
                prop_assert_eq!(out[0].efficiency_jth, Some(jth));
            } else {
                prop_assert_eq!(out[0].efficiency_jth, None);
            }
        }
    }

    /// Any double a miner could send, the hostile ones often, or none.
    fn double() -> impl Strategy<Value = Option<f64>> {
        proptest::option::of(hostile_double())
    }

    proptest! {
        /// Whatever values samples carry (NaN, infinities, extremes, absent), every
        /// measurement `normalise` leaves is finite and within its bound, and share
        /// deltas never underflow.
        #[test]
        fn any_values_leave_normalise_finite_and_bounded(
            values in proptest::collection::vec(double(), 9),
            shares in proptest::collection::vec(proptest::option::of(any::<u64>()), 3),
        ) {
            let mut n = Normaliser::new(&NormaliseConfig::default()).unwrap();
            let mut s = miner(0.0, 0.0);
            (s.hashrate_ths, s.hashrate_nominal_ths, s.power_w) = (values[0], values[1], values[2]);
            (s.efficiency_jth, s.temp_chip_c, s.temp_board_c) = (values[3], values[4], values[5]);
            (s.fan_rpm, s.frequency_mhz, s.voltage_v) = (values[6], values[7], values[8]);
            (s.shares_accepted, s.shares_rejected, s.shares_stale) = (shares[0], shares[1], shares[2]);
            let out = n.apply(&[s.clone(), s]);
            for sample in &out {
                for check in &n.checks {
                    let mut copy = sample.clone();
                    if let Some(v) = *(check.field)(&mut copy) {
                        prop_assert!(check.bound.admits(v), "{} = {v}", check.name);
                    }
                }
            }
        }
    }
}
