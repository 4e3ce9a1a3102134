//! `type: enrich`: labels from the inventory and from config, on every sample, with a
//! declared label set so the schema (Parquet columns, Kafka fields) is known before the
//! first sample.
//!
//! ```yaml
//! transforms:
//!   labelled:
//!     type: enrich
//!     inputs: [clean]
//!     labels: [site, rack, model]      # what every sample carries; others are removed
//!     inventory: miners.csv            # id,address,<columns>: per-miner values
//!     static: {region: eu-north}       # the same value on every sample (declared too)
//! ```
//!
//! A value comes from `static`, else the inventory row of the sample's miner, else the
//! label the sample already had; a label with no value is absent (a null column).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use crate::config::decode::{from_node, DecodeError};
use crate::config::node::Node;
use crate::sample::{Labels, Sample, FIXED_COLUMNS};
use crate::sources::bos::targets::{read_inventory, TargetError};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrichConfig {
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub inventory: Option<PathBuf>,
    #[serde(default, rename = "static")]
    pub static_labels: BTreeMap<String, String>,
}

impl EnrichConfig {
    /// Every label an output sample may carry: `labels`, then the `static` names.
    pub fn declared(&self) -> Vec<String> {
        let mut names = self.labels.clone();
        names.extend(
            self.static_labels
                .keys()
                .filter(|k| !self.labels.contains(k))
                .cloned(),
        );
        names
    }
}

/// Decodes an `enrich` transform and checks its label names.
pub fn decode(body: &Node) -> Result<EnrichConfig, DecodeError> {
    let config: EnrichConfig = from_node(body)?;
    let error = |message: String| DecodeError::at_key(body, "labels", message);
    let declared = config.declared();
    if declared.is_empty() {
        return Err(error(
            "declare at least one label in `labels` or `static`".into(),
        ));
    }
    if let Some(name) = declared
        .iter()
        .find(|n| FIXED_COLUMNS.contains(&n.as_str()))
    {
        return Err(error(format!(
            "label `{name}` has the name of a sample column; choose another name"
        )));
    }
    Ok(config)
}

pub struct Enricher {
    declared: Vec<String>,
    static_labels: BTreeMap<String, String>,
    inventory: HashMap<Arc<str>, Labels>,
    /// Per miner: the labels it came with, and what they became (shared, not rebuilt).
    cache: HashMap<Arc<str>, (Labels, Labels)>,
}

impl Enricher {
    pub fn new(config: &EnrichConfig) -> Result<Self, TargetError> {
        let inventory = match &config.inventory {
            None => HashMap::new(),
            Some(path) => read_inventory(path)?
                .into_iter()
                .map(|target| (target.id, target.labels))
                .collect(),
        };
        Ok(Enricher {
            declared: config.declared(),
            static_labels: config.static_labels.clone(),
            inventory,
            cache: HashMap::new(),
        })
    }

    pub fn apply(&mut self, samples: &[Sample]) -> Vec<Sample> {
        samples
            .iter()
            .map(|sample| {
                let mut sample = sample.clone();
                sample.labels = self.labels_for(&sample);
                sample
            })
            .collect()
    }

    fn labels_for(&mut self, sample: &Sample) -> Labels {
        if let Some((input, output)) = self.cache.get(&sample.miner_id) {
            if Arc::ptr_eq(input, &sample.labels) {
                return output.clone();
            }
        }
        let row = self.inventory.get(&sample.miner_id);
        let labels: BTreeMap<String, String> = self
            .declared
            .iter()
            .filter_map(|name| {
                let value = self
                    .static_labels
                    .get(name)
                    .or_else(|| row.and_then(|r| r.get(name)))
                    .or_else(|| sample.labels.get(name))?;
                Some((name.clone(), value.clone()))
            })
            .collect();
        let output: Labels = Arc::new(labels);
        self.cache.insert(
            sample.miner_id.clone(),
            (sample.labels.clone(), output.clone()),
        );
        output
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::SampleKind;

    #[test]
    fn static_then_inventory_then_own_and_nothing_undeclared() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inv.csv");
        std::fs::write(&path, "id,address,site,rack\nm1,10.0.0.1:50051,north,r1\n").unwrap();
        let config = EnrichConfig {
            labels: vec!["site".into(), "rack".into(), "model".into()],
            inventory: Some(path),
            static_labels: BTreeMap::from([
                ("region".into(), "eu".into()),
                ("rack".into(), "fixed".into()),
            ]),
        };
        let mut enricher = Enricher::new(&config).unwrap();
        let own: Labels = Arc::new(BTreeMap::from([
            ("model".into(), "S21".into()),
            ("site".into(), "ignored".into()),
            ("undeclared".into(), "x".into()),
        ]));
        let m1 = Sample::new(SampleKind::Miner, "m1".into(), own.clone());
        let m2 = Sample::new(SampleKind::Miner, "m2".into(), own);
        let out = enricher.apply(&[m1.clone(), m2, m1]);
        let labels = |i: usize| {
            out[i]
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(labels(0), "model=S21,rack=fixed,region=eu,site=north");
        assert_eq!(
            labels(1),
            "model=S21,rack=fixed,region=eu,site=ignored",
            "m2 is not in the inventory"
        );
        assert!(
            Arc::ptr_eq(&out[0].labels, &out[2].labels),
            "one label map per miner, shared"
        );
    }
}
