//! Samples shared by the benches: a realistic miner row with two labels.

use std::sync::Arc;

use rigtap::toolkit::sample::{Sample, SampleKind};

/// `n` miner samples, each its own miner.
pub fn samples(n: usize) -> Vec<Sample> {
    let labels = Arc::new(
        [
            ("site".to_string(), "north".to_string()),
            ("rack".to_string(), "r12".to_string()),
        ]
        .into(),
    );
    (0..n)
        .map(|i| {
            let mut s = Sample::new(
                SampleKind::Miner,
                format!("m-{i:05}").into(),
                Arc::clone(&labels),
            );
            s.hashrate_ths = Some(240.0 + i as f64 % 7.0);
            s.power_w = Some(3400.0);
            s.efficiency_jth = Some(14.1);
            s.temp_chip_c = Some(71.5);
            s.fan_rpm = Some(5900.0);
            s.shares_accepted = Some(i as u64);
            s
        })
        .collect()
}
