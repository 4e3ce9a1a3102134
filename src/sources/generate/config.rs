use std::collections::BTreeMap;

use serde::{de, Deserialize, Deserializer};

use crate::toolkit::sample::FIXED_COLUMNS;
use crate::toolkit::yaml::decode::{from_node, within, DecodeError};
use crate::toolkit::yaml::node::Node;

/// What the user writes under `type: generate`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct GenerateConfig {
    /// Samples to emit before the source finishes; absent means until stopped.
    #[serde(default)]
    pub count: Option<u64>,
    /// Samples per second; absent means as fast as downstream accepts them.
    #[serde(default, deserialize_with = "positive_rate")]
    pub rate: Option<f64>,
    /// Distinct synthetic miners, visited round-robin.
    #[serde(default = "default_miners", deserialize_with = "at_least_one")]
    pub miners: u32,
    /// Largest batch handed downstream.
    #[serde(default = "default_batch_size", deserialize_with = "at_least_one")]
    pub batch_size: usize,
    /// Seed of the synthetic values; the same seed gives the same values.
    #[serde(default)]
    pub seed: u64,
    /// Static labels put on every sample.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The bounds of a `generate` source's settings: the slowest rate still ticks within
/// the longest duration rigtap takes; the largest miner count and batch keep its own
/// memory to tens of megabytes.
const MIN_RATE: f64 = 0.001;
const MAX_RATE: f64 = 10_000_000.0;
const MAX_MINERS: u32 = 1_000_000;
const MAX_BATCH: usize = 100_000;

/// Decodes a `generate` source and checks its bounds.
pub(super) fn decode(body: &Node) -> Result<GenerateConfig, DecodeError> {
    let config: GenerateConfig = from_node(body)?;
    if let Some(rate) = config.rate {
        within(body, &["rate"], rate, MIN_RATE, MAX_RATE)?;
    }
    within(body, &["miners"], config.miners, 1, MAX_MINERS)?;
    within(body, &["batch_size"], config.batch_size, 1, MAX_BATCH)?;
    if let Some(name) = config
        .labels
        .keys()
        .find(|n| FIXED_COLUMNS.contains(&n.as_str()))
    {
        return Err(DecodeError::at_path(
            body,
            &["labels", name],
            format!("label `{name}` has the name of a sample column; choose another name"),
        ));
    }
    Ok(config)
}

fn default_miners() -> u32 {
    10
}

fn default_batch_size() -> usize {
    100
}

fn positive_rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let rate = f64::deserialize(d)?;
    if rate.is_finite() && rate > 0.0 {
        Ok(Some(rate))
    } else {
        Err(de::Error::custom(format!(
            "`rate` must be a positive number of samples per second, found {rate}; remove it to emit as fast as the sinks accept"
        )))
    }
}

fn at_least_one<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + PartialOrd + From<u8>,
{
    let n = T::deserialize(d)?;
    if n >= T::from(1) {
        Ok(n)
    } else {
        Err(de::Error::custom("must be at least 1"))
    }
}
