//! The pipeline part of a config file: the memory budget and the three component maps,
//! each component decoded by its registered type, then the graph checked. Every
//! problem found is collected, each at the line and column a user would edit.

use std::fmt;
use std::time::Duration;

use crate::pipeline::component::{
    ComponentType, DecodeContext, SinkConfig, SourceConfig, TransformConfig,
};
use crate::pipeline::queue::{BufferConfig, BufferKind};
use crate::pipeline::stats::Role;
use crate::toolkit::paths;
use crate::toolkit::units::{ByteSize, HumanDuration};
use crate::toolkit::yaml::decode::{from_node, nearest, unknown_name, within, DecodeError};
use crate::toolkit::yaml::diagnostic::Diagnostic;
use crate::toolkit::yaml::node::{Mark, Node, Value};

use super::graph::{self, GraphNode};
use super::registry::{self, SINKS, SOURCES, TRANSFORMS};

/// A whole pipeline, decoded and checked.
#[derive(Debug)]
pub struct PipelineConfig {
    /// Bytes that all queued batches together may hold before sources are held back.
    pub memory_budget: ByteSize,
    pub sources: Vec<Component<dyn SourceConfig>>,
    pub transforms: Vec<Component<dyn TransformConfig>>,
    pub sinks: Vec<Component<dyn SinkConfig>>,
}

/// One component: its id, where it reads from, its input queue, and its own settings.
#[derive(Debug)]
pub struct Component<C: ?Sized> {
    /// Its `type:` and the YAML of its own settings, to tell on a reload whether it
    /// changed.
    pub(crate) kind: &'static str,
    pub(crate) settings: Node,
    pub id: String,
    pub inputs: Vec<String>,
    pub buffer: BufferConfig,
    pub config: Box<C>,
}

/// 256 MiB holds about a million queued samples: minutes of a 10,000-miner fleet.
const DEFAULT_MEMORY_BUDGET: ByteSize = ByteSize(256 << 20);

/// The smallest budget: a few batches of a few hundred samples.
const MIN_MEMORY_BUDGET: ByteSize = ByteSize(64 << 10);

/// The most batches a queue may hold: the memory budget bounds what they hold, this
/// bounds the queue's own bookkeeping (tokio's channels refuse far larger ones).
const MAX_QUEUE_BATCHES: usize = 1_000_000;

impl fmt::Display for PipelineConfig {
    /// The one-line summary `rigtap validate` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let edges: usize = self
            .transforms
            .iter()
            .map(|c| c.inputs.len())
            .sum::<usize>()
            + self.sinks.iter().map(|c| c.inputs.len()).sum::<usize>();
        fn ids<C: ?Sized>(components: &[Component<C>]) -> String {
            let ids: Vec<&str> = components.iter().map(|c| c.id.as_str()).collect();
            ids.join(", ")
        }
        write!(
            f,
            "{} source(s) [{}], {} transform(s) [{}], {} sink(s) [{}], {} edge(s), memory budget {}",
            self.sources.len(),
            ids(&self.sources),
            self.transforms.len(),
            ids(&self.transforms),
            self.sinks.len(),
            ids(&self.sinks),
            edges,
            self.memory_budget
        )
    }
}

/// Decodes the pipeline of an (interpolated) config file and checks its graph. Other
/// top-level keys are left to their owners; problems are added to `problems`, and a
/// config is returned only when none were found here.
pub(crate) fn decode(
    root: &Node,
    context: &DecodeContext,
    problems: &mut Vec<Diagnostic>,
) -> Option<PipelineConfig> {
    let found = problems.len();
    let memory_budget = match root.get("memory_budget") {
        None => DEFAULT_MEMORY_BUDGET,
        Some(node) => from_node::<ByteSize>(node)
            .and_then(|budget| {
                let max = ByteSize(crate::toolkit::units::MAX_SIZE);
                within(root, &["memory_budget"], budget, MIN_MEMORY_BUDGET, max)?;
                Ok(budget)
            })
            .unwrap_or_else(|e| {
                problems.push(Diagnostic::from_decode(node.mark)(e));
                DEFAULT_MEMORY_BUDGET
            }),
    };
    let mut decoder = Decoder {
        root,
        context,
        problems,
        graph: Vec::new(),
    };
    let sources = decoder.section(Role::Source, SOURCES);
    let transforms = decoder.section(Role::Transform, TRANSFORMS);
    let sinks = decoder.section(Role::Sink, SINKS);
    let graph = std::mem::take(&mut decoder.graph);
    let problems = decoder.problems;
    written_directories(root, &sinks, problems);
    for transform in transforms.iter().filter(|t| t.buffer.disk().is_some()) {
        let mark = root
            .get(section_key(Role::Transform))
            .and_then(|t| t.get(&transform.id))
            .and_then(|b| b.get("buffer"))
            .map_or(root.mark, |b| b.mark);
        problems.push(Diagnostic::new(
            mark,
            format!(
                "transform `{}` cannot take a disk buffer: only a `kafka` or `parquet` sink can",
                transform.id
            ),
        ));
    }

    for (role, count) in [(Role::Source, sources.len()), (Role::Sink, sinks.len())] {
        let key = section_key(role);
        if count == 0 && root.get(key).is_none_or(|s| s.entries().is_empty()) {
            problems.push(Diagnostic::new(
                root.mark,
                format!(
                    "the pipeline has no {key}; add a `{key}:` map with at least one {}",
                    role.as_str()
                ),
            ));
        }
    }
    let nodes: Vec<GraphNode<'_>> = graph
        .iter()
        .map(|(id, mark, section, inputs)| GraphNode {
            id,
            mark: *mark,
            section: *section,
            inputs,
        })
        .collect();
    problems.extend(graph::check(&nodes));
    (problems.len() == found).then_some(PipelineConfig {
        memory_budget,
        sources,
        transforms,
        sinks,
    })
}

/// Keys every component of a section may have, besides those of its type.
fn common_keys(role: Role) -> &'static [&'static str] {
    match role {
        Role::Source => &["type"],
        Role::Transform | Role::Sink => &["type", "inputs", "buffer"],
    }
}

fn section_key(role: Role) -> &'static str {
    match role {
        Role::Source => "sources",
        Role::Transform => "transforms",
        Role::Sink => "sinks",
    }
}

type GraphEntry = (String, Mark, Role, Vec<(String, Mark)>);

/// Decodes the components of each section, collecting problems and graph edges.
struct Decoder<'a> {
    root: &'a Node,
    context: &'a DecodeContext,
    problems: &'a mut Vec<Diagnostic>,
    graph: Vec<GraphEntry>,
}

impl Decoder<'_> {
    fn section<C: ?Sized>(&mut self, role: Role, types: &[ComponentType<C>]) -> Vec<Component<C>> {
        let Some(map) = self.root.get(section_key(role)) else {
            return Vec::new();
        };
        if !matches!(map.value, Value::Map(_)) && !map.is_null() {
            self.problems.push(Diagnostic::new(
                map.mark,
                format!(
                    "`{}` must map component ids to their settings, found {}",
                    section_key(role),
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
            let inputs = self.inputs(body, role);
            self.graph
                .push((id.to_string(), key.mark, role, inputs.clone()));
            let Some((kind, settings, config)) = self.component(body, role, types) else {
                continue;
            };
            let Some(buffer) = self.buffer(body) else {
                continue;
            };
            components.push(Component {
                kind,
                settings,
                id: id.to_string(),
                inputs: inputs.into_iter().map(|(id, _)| id).collect(),
                buffer,
                config,
            });
        }
        components
    }

    /// The queue in front of a transform or sink.
    fn buffer(&mut self, body: &Node) -> Option<BufferConfig> {
        match body.get("buffer").map(from_node::<BufferConfig>) {
            None => Some(BufferConfig::default()),
            Some(Ok(buffer)) if buffer.max_batches > 0 => {
                let max = MAX_QUEUE_BATCHES;
                let checked = within(body, &["buffer", "max_batches"], buffer.max_batches, 1, max)
                    .and_then(|()| check_disk(body, &buffer));
                match checked {
                    Ok(()) => Some(buffer),
                    Err(e) => {
                        self.problems.push(Diagnostic::from_decode(body.mark)(e));
                        None
                    }
                }
            }
            Some(Ok(_)) => {
                let mark = body.get("buffer").map_or(body.mark, |b| b.mark);
                self.problems.push(Diagnostic::new(
                    mark,
                    "`buffer.max_batches` must be at least 1",
                ));
                None
            }
            Some(Err(e)) => {
                self.problems.push(Diagnostic::from_decode(body.mark)(e));
                None
            }
        }
    }

    /// A component's `inputs`, each with its position.
    fn inputs(&mut self, body: &Node, role: Role) -> Vec<(String, Mark)> {
        if role == Role::Source {
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
    fn component<C: ?Sized>(
        &mut self,
        body: &Node,
        role: Role,
        types: &[ComponentType<C>],
    ) -> Option<(&'static str, Node, Box<C>)> {
        let Value::Map(entries) = &body.value else {
            self.problems.push(Diagnostic::new(
                body.mark,
                format!(
                    "a {} is a mapping with at least `type:`, found {}",
                    role.as_str(),
                    body.kind()
                ),
            ));
            return None;
        };
        let names = registry::names(types);
        let Some(type_node) = body.get("type") else {
            self.problems.push(Diagnostic::new(
                body.mark,
                format!("missing `type`; add `type: <{}>`", names.join(" | ")),
            ));
            return None;
        };
        let kind = type_node.as_str().unwrap_or_default();
        let Some(component_type) = types.iter().find(|t| t.name == kind) else {
            let what = format!("{} type", role.as_str());
            self.problems.push(Diagnostic::new(
                type_node.mark,
                unknown_name(&what, kind, &names),
            ));
            return None;
        };
        let specific = Node {
            mark: body.mark,
            value: Value::Map(
                entries
                    .iter()
                    .filter(|(k, _)| !common_keys(role).contains(&k.as_str().unwrap_or_default()))
                    .cloned()
                    .collect(),
            ),
        };
        match (component_type.decode)(&specific, self.context) {
            Ok(config) => Some((component_type.name, specific, config)),
            Err(e) => {
                self.problems
                    .push(Diagnostic::from_decode(body.mark)(self.suggest(e, role)));
                None
            }
        }
    }

    /// A misspelt common key (`input:`) is closer to it than to the type's fields.
    fn suggest(&self, mut e: DecodeError, role: Role) -> DecodeError {
        if let Some((found, expected)) = e.unknown_field.take() {
            let valid = expected.iter().chain(common_keys(role)).copied();
            if role == Role::Source && found == "inputs" {
                e.message = "sources have no `inputs`; remove it".into();
            } else if let Some(best) = nearest(&found, valid) {
                e.message = format!("unknown field `{found}`; did you mean `{best}`?");
            }
        }
        e
    }
}

/// A disk buffer's own settings: a path, and bounds.
fn check_disk(body: &Node, buffer: &BufferConfig) -> Result<(), DecodeError> {
    let at = |key: &str, message: &str| {
        Err(DecodeError::at_path(
            body,
            &["buffer", key],
            message.to_string(),
        ))
    };
    match (buffer.kind, &buffer.path) {
        (BufferKind::Disk, None) => {
            return at(
                "type",
                "a disk buffer needs `path:`, its own directory (e.g. /var/lib/rigtap/kafka)",
            )
        }
        (BufferKind::Memory, Some(_)) => {
            return at(
                "path",
                "`path` is for a disk buffer; add `type: disk`, or remove it",
            )
        }
        (BufferKind::Disk, Some(path)) => {
            if let Err(message) = paths::writable_dir(path) {
                return at("path", &message);
            }
        }
        _ => {}
    }
    within(
        body,
        &["buffer", "max_size"],
        buffer.max_size,
        ByteSize(1 << 20),
        ByteSize(1 << 50),
    )?;
    within(
        body,
        &["buffer", "sync_every"],
        buffer.sync_every,
        HumanDuration(Duration::from_millis(1)),
        HumanDuration(Duration::from_secs(3600)),
    )?;
    if !(buffer.warn_at > 0.0 && buffer.warn_at <= 1.0) {
        return at(
            "warn_at",
            &format!(
                "`warn_at` is a share of `max_size` above 0 and at most 1, found {}",
                buffer.warn_at
            ),
        );
    }
    Ok(())
}

/// Disk buffers only on sinks that take one. The directories sinks write (a Parquet
/// sink's tree, disk buffers) are each one sink's: no two sinks write into the same
/// one, and nothing of another sink is inside a Parquet sink's tree (it clears the
/// temporaries it finds there at start).
fn written_directories(
    root: &Node,
    sinks: &[Component<dyn SinkConfig>],
    problems: &mut Vec<Diagnostic>,
) {
    struct Written<'a> {
        sink: &'a str,
        dir: &'a std::path::Path,
        /// A Parquet sink's tree, rather than a disk buffer.
        tree: bool,
    }
    let describe = |w: &Written<'_>| match w.tree {
        true => format!(
            "sink `{}` writes its files into {}",
            w.sink,
            w.dir.display()
        ),
        false => format!("sink `{}` buffers in {}", w.sink, w.dir.display()),
    };
    let mut written: Vec<Written<'_>> = Vec::new();
    for sink in sinks {
        let node = root.get("sinks").and_then(|s| s.get(&sink.id));
        let mark_of = |key: &str| {
            let at = node.and_then(|n| n.get(key));
            at.or(node).map_or(root.mark, |n| n.mark)
        };
        let buffer = sink.buffer.path.as_deref().map(|dir| {
            let mark = mark_of("buffer");
            if !sink.config.takes_disk_buffer() {
                problems.push(Diagnostic::new(
                    mark,
                    format!(
                        "sink `{}` ({}) cannot take a disk buffer: it needs a destination that acknowledges each sample (a `kafka` or `parquet` sink)",
                        sink.id, sink.kind
                    ),
                ));
            }
            (Written { sink: &sink.id, dir, tree: false }, mark)
        });
        let tree = sink.config.writes_into().map(|dir| {
            (
                Written {
                    sink: &sink.id,
                    dir,
                    tree: true,
                },
                mark_of("path"),
            )
        });
        for (new, mark) in tree.into_iter().chain(buffer) {
            let clash = written.iter().find_map(|old| {
                if old.sink == new.sink {
                    return None;
                }
                if paths::within(new.dir, old.dir) && paths::within(old.dir, new.dir) {
                    Some("each sink needs a directory of its own")
                } else if old.tree && paths::within(new.dir, old.dir)
                    || new.tree && paths::within(old.dir, new.dir)
                {
                    Some("a parquet sink's tree is its own (it clears the temporaries it finds there at start): keep other sinks' files and buffers out of it")
                } else {
                    None
                }
                .map(|why| (old, why))
            });
            if let Some((old, why)) = clash {
                problems.push(Diagnostic::new(
                    mark,
                    format!("{}, and {}: {why}", describe(&new), describe(old)),
                ));
            }
            written.push(new);
        }
    }
}
