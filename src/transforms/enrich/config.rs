//! What the user writes under `type: enrich`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::toolkit::inventory;
use crate::toolkit::sample::FIXED_COLUMNS;
use crate::toolkit::yaml::decode::{from_node, DecodeError};
use crate::toolkit::yaml::node::Node;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnrichConfig {
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub inventory: Option<PathBuf>,
    #[serde(default, rename = "static")]
    pub(crate) static_labels: BTreeMap<String, String>,
}

impl EnrichConfig {
    /// Every label an output sample may carry: `labels`, then the `static` names.
    pub(crate) fn declared(&self) -> Vec<String> {
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
pub(super) fn decode(body: &Node) -> Result<EnrichConfig, DecodeError> {
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
    // The inventory is read at start; a missing or malformed one is refused now.
    if let Some(path) = &config.inventory {
        inventory::read(path).map_err(|e| DecodeError::at_key(body, "inventory", e.to_string()))?;
    }
    Ok(config)
}
