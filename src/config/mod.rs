//! The pipeline file: YAML model, environment interpolation, and validation that
//! reports `file:line:column: what is wrong, and how to fix it`.
//!
//! Loading runs in stages that each collect every error they can before giving up:
//! parse to a positioned tree ([`node`]), interpolate `${VAR}` ([`interpolate`]),
//! decode each component with serde ([`decode`]), then check the graph ([`graph`]).

pub mod decode;
pub mod graph;
pub mod interpolate;
pub mod node;
pub mod secret;
pub mod units;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::sim::embedded::EmbeddedSim;
use crate::sinks::kafka::KafkaConfig;
use crate::sinks::parquet::ParquetConfig;
use crate::sinks::stdout::StdoutConfig;
use crate::sources::bos::BosConfig;
use crate::sources::generate::GenerateConfig;
use crate::telemetry::api_config::ApiConfig;
use crate::transforms::enrich::EnrichConfig;
use crate::transforms::filter::FilterConfig;
use crate::transforms::normalise::NormaliseConfig;
use decode::{from_node, nearest, unknown_name, DecodeError};
use graph::{GraphNode, Section};
use node::{Mark, Node, Value};
use units::ByteSize;

/// A whole pipeline, decoded and checked.
#[derive(Debug)]
pub struct PipelineConfig {
    /// Bytes that all queued batches together may hold before sources are held back.
    pub memory_budget: ByteSize,
    /// A simulated fleet to serve inside the process before the sources start.
    pub simulator: Option<EmbeddedSim>,
    /// The operator's endpoints: metrics, health, tap.
    pub api: ApiConfig,
    pub sources: Vec<Component<SourceConfig>>,
    pub transforms: Vec<Component<TransformConfig>>,
    pub sinks: Vec<Component<SinkConfig>>,
}

/// One component: its id, where it reads from, its input queue, and its own settings.
#[derive(Debug)]
pub struct Component<T> {
    pub id: String,
    pub inputs: Vec<String>,
    pub buffer: BufferConfig,
    pub config: T,
}

#[derive(Debug)]
pub enum SourceConfig {
    Generate(GenerateConfig),
    Bos(Box<BosConfig>),
}

#[derive(Debug)]
pub enum TransformConfig {
    Filter(FilterConfig),
    Normalise(NormaliseConfig),
    Enrich(EnrichConfig),
}

#[derive(Debug)]
pub enum SinkConfig {
    Stdout(StdoutConfig),
    Parquet(Box<ParquetConfig>),
    Kafka(Box<KafkaConfig>),
}

/// The queue in front of a transform or sink.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    /// Batches the queue holds; a full queue holds back its inputs (or drops, if asked).
    #[serde(default = "default_max_batches")]
    pub max_batches: usize,
    #[serde(default)]
    pub when_full: WhenFull,
}

/// 16 batches of a few hundred samples keep a sink busy through a slow flush while
/// staying small next to the memory budget.
fn default_max_batches() -> usize {
    16
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            max_batches: default_max_batches(),
            when_full: WhenFull::default(),
        }
    }
}

/// What a full queue does to a new batch.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait for room: backpressure reaches the sources (the default, loses nothing).
    #[default]
    Block,
    /// Drop the new batch and count it (`reason: queue_full`).
    DropNewest,
}

/// Settings at the top of the file, beside the three component maps.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Globals {
    #[serde(default = "default_memory_budget")]
    memory_budget: ByteSize,
    #[serde(default)]
    simulator: Option<EmbeddedSim>,
    #[serde(default)]
    api: ApiConfig,
    // The component maps are decoded one component at a time by `Decoder`.
    #[serde(default, rename = "sources")]
    _sources: serde::de::IgnoredAny,
    #[serde(default, rename = "transforms")]
    _transforms: serde::de::IgnoredAny,
    #[serde(default, rename = "sinks")]
    _sinks: serde::de::IgnoredAny,
}

/// 256 MiB holds about a million queued samples: minutes of a 10,000-miner fleet.
fn default_memory_budget() -> ByteSize {
    ByteSize(256 << 20)
}

/// One problem found in a config file.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub mark: Mark,
    pub message: String,
}

impl Diagnostic {
    pub fn new(mark: Mark, message: impl Into<String>) -> Self {
        Diagnostic {
            mark,
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read the config file: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", render(path, diagnostics))]
    Invalid {
        path: PathBuf,
        diagnostics: Vec<Diagnostic>,
    },
}

fn render(path: &Path, diagnostics: &[Diagnostic]) -> String {
    let lines: Vec<String> = diagnostics
        .iter()
        .map(|d| format!("{}:{}: {}", path.display(), d.mark, d.message))
        .collect();
    lines.join("\n")
}

impl fmt::Display for PipelineConfig {
    /// The one-line summary `rigtap validate` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let edges: usize = self
            .transforms
            .iter()
            .map(|c| c.inputs.len())
            .sum::<usize>()
            + self.sinks.iter().map(|c| c.inputs.len()).sum::<usize>();
        let names = |ids: Vec<&str>| ids.join(", ");
        write!(
            f,
            "{} source(s) [{}], {} transform(s) [{}], {} sink(s) [{}], {} edge(s), memory budget {}",
            self.sources.len(),
            names(self.sources.iter().map(|c| c.id.as_str()).collect()),
            self.transforms.len(),
            names(self.transforms.iter().map(|c| c.id.as_str()).collect()),
            self.sinks.len(),
            names(self.sinks.iter().map(|c| c.id.as_str()).collect()),
            edges,
            self.memory_budget
        )
    }
}

/// Reads, interpolates from the process environment, decodes and checks `path`.
pub fn load(path: &Path) -> Result<PipelineConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    from_str(&text, &|name| std::env::var(name).ok()).map_err(|diagnostics| ConfigError::Invalid {
        path: path.to_owned(),
        diagnostics,
    })
}

/// Decodes and checks a pipeline from YAML text; `env` resolves `${VAR}`.
pub fn from_str(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PipelineConfig, Vec<Diagnostic>> {
    let mut root = node::parse(text).map_err(|e| vec![Diagnostic::new(e.mark, e.message)])?;
    let mut errors = Vec::new();
    interpolate::interpolate(&mut root, env, &mut errors);
    let mut problems: Vec<Diagnostic> = errors.into_iter().map(located(root.mark)).collect();
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
            problems.push(located(root.mark)(e));
            None
        }
    };
    let mut decoder = Decoder {
        problems,
        graph: Vec::new(),
    };
    let sources = decoder.section(&root, Section::Source, decode_source);
    let transforms = decoder.section(&root, Section::Transform, decode_transform);
    let sinks = decoder.section(&root, Section::Sink, decode_sink);
    let mut problems = decoder.problems;

    if sources.is_empty() && root.get("sources").is_none_or(|s| s.entries().is_empty()) {
        problems.push(Diagnostic::new(
            root.mark,
            "the pipeline has no sources; add a `sources:` map with at least one source",
        ));
    }
    if sinks.is_empty() && root.get("sinks").is_none_or(|s| s.entries().is_empty()) {
        problems.push(Diagnostic::new(
            root.mark,
            "the pipeline has no sinks; add a `sinks:` map with at least one sink",
        ));
    }
    let graph_nodes: Vec<GraphNode<'_>> = decoder
        .graph
        .iter()
        .map(|(id, mark, section, inputs)| GraphNode {
            id,
            mark: *mark,
            section: *section,
            inputs,
        })
        .collect();
    problems.extend(graph::check(&graph_nodes));
    let has_simulator = globals.as_ref().is_some_and(|g| g.simulator.is_some());
    for source in &sources {
        if let SourceConfig::Bos(bos) = &source.config {
            if bos.targets.simulator && !has_simulator {
                let mark = decoder
                    .graph
                    .iter()
                    .find(|(id, ..)| *id == source.id)
                    .map_or(root.mark, |g| g.1);
                problems.push(Diagnostic::new(mark, "`targets.simulator: true` needs a top-level `simulator:` section (e.g. `simulator: {miners: 20}`)"));
            }
        }
    }

    match globals {
        Some(globals) if problems.is_empty() => Ok(PipelineConfig {
            memory_budget: globals.memory_budget,
            simulator: globals.simulator,
            api: globals.api,
            sources,
            transforms,
            sinks,
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

fn located(fallback: Mark) -> impl Fn(DecodeError) -> Diagnostic {
    move |e| Diagnostic::new(e.mark.unwrap_or(fallback), e.message)
}

/// Keys every component of a section may have, besides those of its type.
fn common_keys(section: Section) -> &'static [&'static str] {
    match section {
        Section::Source => &["type"],
        Section::Transform | Section::Sink => &["type", "inputs", "buffer"],
    }
}

fn section_key(section: Section) -> &'static str {
    match section {
        Section::Source => "sources",
        Section::Transform => "transforms",
        Section::Sink => "sinks",
    }
}

/// The types each section knows, for "did you mean" and the list of valid ones.
pub const SOURCE_TYPES: &[&str] = &["generate", "bos"];
pub const TRANSFORM_TYPES: &[&str] = &["normalise", "enrich", "filter"];
pub const SINK_TYPES: &[&str] = &["stdout", "parquet", "kafka"];

fn decode_source(kind: &str, body: &Node) -> Option<Result<SourceConfig, DecodeError>> {
    match kind {
        "generate" => Some(from_node(body).map(SourceConfig::Generate)),
        "bos" => {
            Some(crate::sources::bos::config::decode(body).map(|c| SourceConfig::Bos(Box::new(c))))
        }
        _ => None,
    }
}

fn decode_transform(kind: &str, body: &Node) -> Option<Result<TransformConfig, DecodeError>> {
    match kind {
        "filter" => Some(from_node(body).map(TransformConfig::Filter)),
        "normalise" => {
            Some(crate::transforms::normalise::decode(body).map(TransformConfig::Normalise))
        }
        "enrich" => Some(crate::transforms::enrich::decode(body).map(TransformConfig::Enrich)),
        _ => None,
    }
}

fn decode_sink(kind: &str, body: &Node) -> Option<Result<SinkConfig, DecodeError>> {
    match kind {
        "stdout" => Some(from_node(body).map(SinkConfig::Stdout)),
        "parquet" => {
            Some(crate::sinks::parquet::decode(body).map(|c| SinkConfig::Parquet(Box::new(c))))
        }
        "kafka" => Some(crate::sinks::kafka::decode(body).map(|c| SinkConfig::Kafka(Box::new(c)))),
        _ => None,
    }
}

fn known_types(section: Section) -> &'static [&'static str] {
    match section {
        Section::Source => SOURCE_TYPES,
        Section::Transform => TRANSFORM_TYPES,
        Section::Sink => SINK_TYPES,
    }
}

type GraphEntry = (String, Mark, Section, Vec<(String, Mark)>);

/// Decodes the components of each section, collecting problems and graph edges.
struct Decoder {
    problems: Vec<Diagnostic>,
    graph: Vec<GraphEntry>,
}

impl Decoder {
    fn section<T>(
        &mut self,
        root: &Node,
        section: Section,
        decode: fn(&str, &Node) -> Option<Result<T, DecodeError>>,
    ) -> Vec<Component<T>> {
        let Some(map) = root.get(section_key(section)) else {
            return Vec::new();
        };
        if !matches!(map.value, Value::Map(_)) && !map.is_null() {
            self.problems.push(Diagnostic::new(
                map.mark,
                format!(
                    "`{}` must map component ids to their settings, found {}",
                    section_key(section),
                    map.kind()
                ),
            ));
            return Vec::new();
        }
        let mut components = Vec::new();
        for (key, body) in map.entries() {
            let Some(id) = key.as_str() else {
                self.problems.push(Diagnostic::new(
                    key.mark,
                    "a component id must be a plain name",
                ));
                continue;
            };
            if let Some((_, first, ..)) = self.graph.iter().find(|(other, ..)| other == id) {
                self.problems.push(Diagnostic::new(
                    key.mark,
                    format!("component id `{id}` is already used at line {}; ids must be unique across sources, transforms and sinks", first.line),
                ));
                continue;
            }
            let inputs = self.inputs(body, section);
            self.graph
                .push((id.to_string(), key.mark, section, inputs.clone()));
            if let Some(config) = self.component(body, section, decode) {
                let buffer = match body.get("buffer").map(from_node::<BufferConfig>) {
                    None => BufferConfig::default(),
                    Some(Ok(buffer)) if buffer.max_batches > 0 => buffer,
                    Some(Ok(_)) => {
                        let mark = body.get("buffer").map_or(body.mark, |b| b.mark);
                        self.problems.push(Diagnostic::new(
                            mark,
                            "`buffer.max_batches` must be at least 1",
                        ));
                        continue;
                    }
                    Some(Err(e)) => {
                        self.problems.push(located(body.mark)(e));
                        continue;
                    }
                };
                components.push(Component {
                    id: id.to_string(),
                    inputs: inputs.into_iter().map(|(id, _)| id).collect(),
                    buffer,
                    config,
                });
            }
        }
        components
    }

    /// A component's `inputs`, each with its position.
    fn inputs(&mut self, body: &Node, section: Section) -> Vec<(String, Mark)> {
        if section == Section::Source {
            return Vec::new();
        }
        match body.get("inputs").map(|n| &n.value) {
            None => Vec::new(),
            Some(Value::Seq(items)) => items
                .iter()
                .filter_map(|item| match item.as_str() {
                    Some(id) => Some((id.to_string(), item.mark)),
                    None => {
                        self.problems.push(Diagnostic::new(
                            item.mark,
                            "an input is a component id, not a nested value",
                        ));
                        None
                    }
                })
                .collect(),
            Some(_) => {
                let mark = body.get("inputs").map_or(body.mark, |n| n.mark);
                self.problems.push(Diagnostic::new(
                    mark,
                    "`inputs` must be a list of component ids, e.g. `inputs: [fleet]`",
                ));
                Vec::new()
            }
        }
    }

    /// Decodes the type-specific part of one component.
    fn component<T>(
        &mut self,
        body: &Node,
        section: Section,
        decode: fn(&str, &Node) -> Option<Result<T, DecodeError>>,
    ) -> Option<T> {
        let Value::Map(entries) = &body.value else {
            self.problems.push(Diagnostic::new(
                body.mark,
                format!(
                    "a {} is a mapping with at least `type:`, found {}",
                    section.singular(),
                    body.kind()
                ),
            ));
            return None;
        };
        let types = known_types(section);
        let Some(type_node) = body.get("type") else {
            self.problems.push(Diagnostic::new(
                body.mark,
                format!("missing `type`; add `type: <{}>`", types.join(" | ")),
            ));
            return None;
        };
        let kind = type_node.as_str().unwrap_or_default();
        let specific = Node {
            mark: body.mark,
            value: Value::Map(
                entries
                    .iter()
                    .filter(|(k, _)| {
                        !common_keys(section).contains(&k.as_str().unwrap_or_default())
                    })
                    .cloned()
                    .collect(),
            ),
        };
        match decode(kind, &specific) {
            None => {
                let what = format!("{} type", section.singular());
                self.problems.push(Diagnostic::new(
                    type_node.mark,
                    unknown_name(&what, kind, types),
                ));
                None
            }
            Some(Ok(config)) => Some(config),
            Some(Err(mut e)) => {
                // A misspelt common key (`input:`) is closer to it than to the type's fields.
                if let Some((found, expected)) = e.unknown_field.take() {
                    let valid = expected.iter().chain(common_keys(section)).copied();
                    if section == Section::Source && found == "inputs" {
                        e.message = "sources have no `inputs`; remove it".into();
                    } else if let Some(best) = nearest(&found, valid) {
                        e.message = format!("unknown field `{found}`; did you mean `{best}`?");
                    }
                }
                self.problems.push(located(body.mark)(e));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
