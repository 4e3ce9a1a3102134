//! What the user writes under `type: normalise`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::bounds::{self, Bound};
use crate::toolkit::yaml::decode::{from_node, DecodeError};
use crate::toolkit::yaml::node::Node;

/// What the user writes under `type: normalise`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NormaliseConfig {
    /// `field: [min, max]`, replacing the default bound of that field.
    #[serde(default)]
    pub(crate) bounds: BTreeMap<String, Bound>,
}

/// Decodes a `normalise` transform and checks its bounds.
pub(super) fn decode(body: &Node) -> Result<NormaliseConfig, DecodeError> {
    let config: NormaliseConfig = from_node(body)?;
    bounds::resolve(&config.bounds).map_err(|e| DecodeError::at_key(body, "bounds", e))?;
    Ok(config)
}
