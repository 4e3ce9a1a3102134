//! The running `enrich` stage: each miner's declared labels, computed once and shared.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::config::EnrichConfig;
use crate::pipeline::component::{Started, TransformConfig, TransformContext};
use crate::pipeline::transform::{self, Transform};
use crate::toolkit::inventory::{self, InventoryError};
use crate::toolkit::sample::{Labels, Sample};

pub(super) struct Enricher {
    declared: Vec<String>,
    static_labels: BTreeMap<String, String>,
    inventory: HashMap<Arc<str>, Labels>,
    /// Per miner: the labels it came with, and what they became (shared, not rebuilt).
    cache: HashMap<Arc<str>, (Labels, Labels)>,
}

impl Enricher {
    pub(super) fn new(config: &EnrichConfig) -> Result<Self, InventoryError> {
        let inventory = match &config.inventory {
            None => HashMap::new(),
            Some(path) => inventory::read(path)?
                .into_iter()
                .map(|row| (row.id, row.labels))
                .collect(),
        };
        Ok(Enricher {
            declared: config.declared(),
            static_labels: config.static_labels.clone(),
            inventory,
            cache: HashMap::new(),
        })
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

impl Transform for Enricher {
    fn apply(&mut self, samples: &[Sample]) -> Vec<Sample> {
        samples
            .iter()
            .map(|sample| {
                let mut sample = sample.clone();
                sample.labels = self.labels_for(&sample);
                sample
            })
            .collect()
    }
}

impl TransformConfig for EnrichConfig {
    fn start(self: Box<Self>, ctx: TransformContext) -> Started {
        transform::start(move || Enricher::new(&self), ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toolkit::sample::SampleKind;

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
