//! Physical bounds per measurement. A value outside them (or NaN, or infinite) is a
//! miner's mistake, not a reading: `normalise` removes it and counts it.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::toolkit::sample::{float_field_mut, FloatFieldMut};

/// `[min, max]`, inclusive.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
pub(crate) struct Bound(pub [f64; 2]);

impl Bound {
    pub(crate) fn admits(&self, value: f64) -> bool {
        value.is_finite() && value >= self.0[0] && value <= self.0[1]
    }
}

/// The defaults: generous for any ASIC made so far, far from what a broken sensor or a
/// unit mix-up produces (a GH/s value read as TH/s is 1,000 times too big).
pub(super) const DEFAULTS: [(&str, [f64; 2]); 11] = [
    ("hashrate_ths", [0.0, 2_000.0]),
    ("hashrate_nominal_ths", [0.0, 2_000.0]),
    ("power_w", [0.0, 20_000.0]),
    ("efficiency_jth", [1.0, 500.0]),
    ("temp_chip_c", [-40.0, 150.0]),
    ("temp_board_c", [-40.0, 150.0]),
    // Liquid water, with room for a sensor at either end of a hydro loop.
    ("temp_water_in_c", [-20.0, 110.0]),
    ("temp_water_out_c", [-20.0, 110.0]),
    ("fan_rpm", [0.0, 30_000.0]),
    ("frequency_mhz", [0.0, 5_000.0]),
    ("voltage_v", [0.0, 100.0]),
];

/// One measurement's check, with its accessor resolved once rather than per sample.
#[derive(Clone, Copy, Debug)]
pub(super) struct Check {
    pub name: &'static str,
    pub field: FloatFieldMut,
    pub bound: Bound,
}

/// The defaults with the user's `bounds:` laid over them; an unknown field is an error.
pub(super) fn resolve(overrides: &BTreeMap<String, Bound>) -> Result<Vec<Check>, String> {
    if let Some(name) = overrides
        .keys()
        .find(|name| float_field_mut(name).is_none())
    {
        let names: Vec<&str> = DEFAULTS.iter().map(|(n, _)| *n).collect();
        return Err(format!(
            "`bounds.{name}`: not a measurement; bounds apply to {}",
            names.join(", ")
        ));
    }
    if let Some((name, bound)) = overrides.iter().find(|(_, b)| {
        // NaN bounds, or min above max, admit nothing.
        let [min, max] = b.0;
        min.is_nan() || max.is_nan() || min > max
    }) {
        return Err(format!(
            "`bounds.{name}`: [{}, {}] is empty; write [min, max]",
            bound.0[0], bound.0[1]
        ));
    }
    Ok(DEFAULTS
        .iter()
        .filter_map(|(name, default)| {
            Some(Check {
                name,
                field: float_field_mut(name)?,
                bound: overrides.get(*name).copied().unwrap_or(Bound(*default)),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_default_bound_admits_real_values_and_refuses_absurd_ones() {
        let real = [
            ("hashrate_ths", 247.0),
            ("hashrate_nominal_ths", 250.0),
            ("power_w", 3480.0),
            ("efficiency_jth", 14.07),
            ("temp_chip_c", 78.0),
            ("temp_board_c", 55.0),
            ("temp_water_in_c", 32.0),
            ("temp_water_out_c", 40.0),
            ("fan_rpm", 5900.0),
            ("frequency_mhz", 626.0),
            ("voltage_v", 13.7),
        ];
        let bounds = resolve(&BTreeMap::new()).unwrap();
        assert_eq!(
            bounds.len(),
            DEFAULTS.len(),
            "every default names a measurement"
        );
        for (Check { name, bound, .. }, (real_name, value)) in bounds.iter().zip(real) {
            assert_eq!(*name, real_name);
            assert!(bound.admits(value), "{name} {value}");
            assert!(!bound.admits(f64::NAN), "{name} NaN");
            assert!(!bound.admits(f64::INFINITY), "{name} inf");
            assert!(
                !bound.admits(-1.0) || name.starts_with("temp_"),
                "{name} negative"
            );
            assert!(
                !bound.admits(value * 1000.0),
                "{name}: a unit mix-up (x1000) is refused"
            );
        }
        let temp = bounds
            .iter()
            .find(|c| c.name == "temp_chip_c")
            .unwrap()
            .bound;
        assert!(!temp.admits(-300.0), "below absolute zero");
    }

    #[test]
    fn overrides_replace_defaults_and_are_checked() {
        let mine = BTreeMap::from([("temp_chip_c".to_string(), Bound([0.0, 95.0]))]);
        let bounds = resolve(&mine).unwrap();
        let temp = bounds
            .iter()
            .find(|c| c.name == "temp_chip_c")
            .unwrap()
            .bound;
        assert!(!temp.admits(96.0));
        let bad = BTreeMap::from([("miner_id".to_string(), Bound([0.0, 1.0]))]);
        assert!(resolve(&bad).unwrap_err().contains("not a measurement"));
        let empty = BTreeMap::from([("power_w".to_string(), Bound([5.0, 1.0]))]);
        assert!(resolve(&empty).unwrap_err().contains("is empty"));
    }
}
