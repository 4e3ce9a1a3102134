//! The config file a run is given: the pipeline (decoded by the topology) beside the
//! operator's `api:` section and an embedded `simulator:`. Loading runs in stages that
//! each collect every problem they can: parse to a positioned tree, interpolate
//! `${VAR}`, decode the top-level sections, then the pipeline and its graph.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use super::api_config::ApiConfig;
use crate::pipeline::component::DecodeContext;
use crate::sim::embedded::EmbeddedSim;
use crate::sim::{self, SimConfig};
use crate::toolkit::regular_file;
use crate::toolkit::yaml::decode::{from_node, within, DecodeError};
use crate::toolkit::yaml::diagnostic::{ConfigError, Diagnostic};
use crate::toolkit::yaml::interpolate;
use crate::toolkit::yaml::node::{self, Mark};
use crate::topology::config::{self as pipeline, PipelineConfig};

/// A whole config file, decoded and checked.
#[derive(Debug)]
pub struct AgentConfig {
    pub pipeline: PipelineConfig,
    /// A simulated fleet to serve inside the process before the sources start.
    pub(crate) simulator: Option<EmbeddedSim>,
    /// The operator's endpoints: metrics, health, tap.
    pub api: ApiConfig,
}

impl fmt::Display for AgentConfig {
    /// The one-line summary `rigtap validate` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.pipeline.fmt(f)
    }
}

/// The sections at the top of the file that are not the pipeline's.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Globals {
    #[serde(default)]
    simulator: Option<EmbeddedSim>,
    #[serde(default)]
    api: ApiConfig,
    // The pipeline's own keys are decoded by the topology.
    #[serde(default, rename = "memory_budget")]
    _memory_budget: serde::de::IgnoredAny,
    #[serde(default, rename = "sources")]
    _sources: serde::de::IgnoredAny,
    #[serde(default, rename = "transforms")]
    _transforms: serde::de::IgnoredAny,
    #[serde(default, rename = "sinks")]
    _sinks: serde::de::IgnoredAny,
}

/// The largest config file rigtap reads: pipelines are a few kilobytes; this refuses
/// a wrong path (`-c /dev/zero`, a log file) before it is read whole.
const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Reads, interpolates from the process environment, decodes and checks `path`.
pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
    decode_file(path, read(path))
}

/// [`load`] for a running pipeline's reload (SIGHUP, `POST /reload`, `--watch`):
/// `path` must be a regular file ([`read_regular`]), so a reload cannot hang on a
/// FIFO or read a device. Blocks: call it off the async runtime.
pub(crate) fn load_regular(path: &Path) -> Result<AgentConfig, ConfigError> {
    decode_file(path, read_regular(path))
}

fn decode_file(path: &Path, text: std::io::Result<String>) -> Result<AgentConfig, ConfigError> {
    let text = text.map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    from_str(&text, &|name| std::env::var(name).ok()).map_err(|diagnostics| ConfigError::Invalid {
        path: path.to_owned(),
        diagnostics,
    })
}

/// The file's text, if it is UTF-8 and at most [`MAX_CONFIG_BYTES`] long. Any kind of
/// file: at start, `-c <(envsubst < pipeline.yaml)` is a FIFO.
fn read(path: &Path) -> std::io::Result<String> {
    utf8(regular_file::read_capped(
        std::fs::File::open(path)?,
        MAX_CONFIG_BYTES,
    )?)
}

/// The text of `path` if it is a regular file of at most [`MAX_CONFIG_BYTES`], UTF-8
/// ([`regular_file::read`]): a FIFO would block the reload until someone writes to it.
/// Blocks: call it off the async runtime.
pub(crate) fn read_regular(path: &Path) -> std::io::Result<String> {
    utf8(regular_file::read(path, MAX_CONFIG_BYTES)?)
}

fn utf8(bytes: Vec<u8>) -> std::io::Result<String> {
    String::from_utf8(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Decodes and checks a config file's text; `env` resolves `${VAR}`.
pub fn from_str(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AgentConfig, Vec<Diagnostic>> {
    let mut root = node::parse(text).map_err(|e| vec![Diagnostic::new(e.mark, e.message)])?;
    let mut errors = Vec::new();
    interpolate::interpolate(&mut root, env, &mut errors);
    let mut problems: Vec<Diagnostic> = errors
        .into_iter()
        .map(Diagnostic::from_decode(root.mark))
        .collect();
    // A value whose variable is unset is reported once, not again as a bad value.
    let unset: Vec<Mark> = problems.iter().map(|p| p.mark).collect();

    let globals = match from_node::<Globals>(&root) {
        Ok(globals) if !(0.0..=1.0).contains(&globals.api.health.min_online) => {
            let mark = ["api", "health", "min_online"]
                .iter()
                .try_fold(&root, |node, key| node.get(key))
                .map_or(root.mark, |n| n.mark);
            problems.push(Diagnostic::new(
                mark,
                "`api.health.min_online` is a fraction of the miners, from 0 to 1 (e.g. 0.9)",
            ));
            None
        }
        Ok(globals) => Some(globals),
        Err(e) => {
            problems.push(Diagnostic::from_decode(root.mark)(e));
            None
        }
    };
    // The embedded fleet's miners are known before it starts: sources get them as
    // plain targets.
    let mut context = DecodeContext::default();
    if let Some(simulator) = globals.as_ref().and_then(|g| g.simulator.as_ref()) {
        let miners = simulator.miners;
        if let Err(e) = within(&root, &["simulator", "miners"], miners, 1, sim::MAX_MINERS) {
            problems.push(Diagnostic::from_decode(root.mark)(e));
        }
        let config = SimConfig {
            miners: miners.min(sim::MAX_MINERS),
            ..simulator.sim_config()
        };
        match sim::inventory(&config) {
            Ok(rows) => context.embedded_fleet = Some(Arc::from(rows)),
            Err(e) => {
                let at = DecodeError::at_path(&root, &["simulator", "first"], e.to_string());
                problems.push(Diagnostic::from_decode(root.mark)(at));
            }
        }
    }
    let pipeline = pipeline::decode(&root, &context, &mut problems);

    match (globals, pipeline) {
        (Some(globals), Some(pipeline)) if problems.is_empty() => Ok(AgentConfig {
            pipeline,
            simulator: globals.simulator,
            api: globals.api,
        }),
        _ => {
            let interpolation_errors = unset.len();
            let mut index = 0;
            problems.retain(|p| {
                index += 1;
                index <= interpolation_errors || !unset.contains(&p.mark)
            });
            problems.sort_by_key(|p| p.mark);
            problems.dedup();
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests;
