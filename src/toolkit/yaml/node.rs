//! A YAML document as a tree of nodes that remember where they were written.
//!
//! serde alone forgets positions once a value is decoded; the pipeline checks that run
//! after decoding (unknown inputs, cycles) still need to say `file:line:column`. So the
//! document is first parsed into this small tree (with saphyr's event parser), then
//! decoded from it by [`super::decode`], which attaches a node's position to every error.

use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// A 1-based line and column in the config file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mark {
    pub line: usize,
    pub column: usize,
}

impl Mark {
    fn of(span: &Span) -> Self {
        Mark {
            line: span.start.line(),
            column: span.start.col() + 1,
        }
    }
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One YAML node and its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub mark: Mark,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A scalar's text; `plain` is false for quoted and block scalars, which are always strings.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Entries in file order; keys are scalars.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The scalar text of this node, if it is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// True for an empty plain scalar, `~` or `null`: YAML's ways to write nothing.
    pub(crate) fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true } if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The value of `key` in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries()
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// A mapping's entries, or nothing for other nodes.
    pub(crate) fn entries(&self) -> &[(Node, Node)] {
        match &self.value {
            Value::Map(entries) => entries,
            _ => &[],
        }
    }

    /// The same YAML, wherever it was written: marks are not compared. (A reload keeps
    /// a component whose settings are the same, even if lines moved.)
    pub(crate) fn same_as(&self, other: &Node) -> bool {
        match (&self.value, &other.value) {
            (Value::Scalar { text: a, plain: pa }, Value::Scalar { text: b, plain: pb }) => {
                a == b && pa == pb
            }
            (Value::Seq(a), Value::Seq(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_as(y))
            }
            (Value::Map(a), Value::Map(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|((ka, va), (kb, vb))| ka.same_as(kb) && va.same_as(vb))
            }
            _ => false,
        }
    }

    /// What kind of node this is, for error messages.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Scalar { .. } if self.is_null() => "nothing",
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// `over` laid on `base`: mappings merge key by key (recursively), anything else in
/// `over` replaces what `base` had. Used for presets, so a user's field keeps its own
/// position in errors while the preset fills in the rest.
pub(crate) fn overlay(base: &Node, over: &Node) -> Node {
    match (&base.value, &over.value) {
        (Value::Map(base_entries), Value::Map(over_entries)) => {
            let mut entries: Vec<(Node, Node)> = base_entries
                .iter()
                .map(
                    |(key, value)| match over.get(key.as_str().unwrap_or_default()) {
                        Some(mine) => (key.clone(), overlay(value, mine)),
                        None => (key.clone(), value.clone()),
                    },
                )
                .collect();
            entries.extend(
                over_entries
                    .iter()
                    .filter(|(key, _)| base.get(key.as_str().unwrap_or_default()).is_none())
                    .cloned(),
            );
            Node {
                mark: over.mark,
                value: Value::Map(entries),
            }
        }
        _ => over.clone(),
    }
}

/// A YAML syntax error, or a construct rigtap's configs do not use.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SyntaxError {
    pub mark: Mark,
    pub message: String,
}

/// Parses one YAML document. An empty document is an empty mapping.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut builder = Builder::default();
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| SyntaxError {
            mark: Mark {
                line: e.marker().line(),
                column: e.marker().col() + 1,
            },
            message: format!("YAML syntax error: {}", e.info()),
        })?;
        builder.push(event, span)?;
    }
    Ok(builder.root.unwrap_or(Node {
        mark: Mark { line: 1, column: 1 },
        value: Value::Map(Vec::new()),
    }))
}

/// Turns the parser's event stream into a tree.
#[derive(Default)]
struct Builder {
    /// Open collections: the node being filled and, for mappings, a key awaiting its value.
    stack: Vec<(Node, Option<Node>)>,
    root: Option<Node>,
    documents: usize,
}

impl Builder {
    fn push(&mut self, event: Event<'_>, span: Span) -> Result<(), SyntaxError> {
        let mark = Mark::of(&span);
        match event {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(SyntaxError {
                        mark,
                        message: "a config file holds one YAML document; remove the second `---`"
                            .into(),
                    });
                }
            }
            Event::Alias(_) => {
                return Err(SyntaxError {
                    mark,
                    message: "YAML aliases (`*name`) are not supported in rigtap configs; write the value out".into(),
                })
            }
            Event::Scalar(text, style, _, _) => {
                let plain = style == ScalarStyle::Plain;
                self.add(Node {
                    mark,
                    value: Value::Scalar {
                        text: text.into_owned(),
                        plain,
                    },
                });
            }
            Event::SequenceStart(..) => self.stack.push((
                Node {
                    mark,
                    value: Value::Seq(Vec::new()),
                },
                None,
            )),
            Event::MappingStart(..) => self.stack.push((
                Node {
                    mark,
                    value: Value::Map(Vec::new()),
                },
                None,
            )),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((node, _)) = self.stack.pop() {
                    self.add(node);
                }
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
        Ok(())
    }

    fn add(&mut self, node: Node) {
        let Some((parent, pending_key)) = self.stack.last_mut() else {
            self.root = Some(node);
            return;
        };
        match &mut parent.value {
            Value::Seq(items) => items.push(node),
            Value::Map(entries) => match pending_key.take() {
                Some(key) => entries.push((key, node)),
                None => *pending_key = Some(node),
            },
            Value::Scalar { .. } => unreachable!("only collections are pushed on the stack"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let root = parse("a: 1\nlist:\n  - x\n  - y\n").unwrap();
        let a = root.get("a").unwrap();
        assert_eq!(a.mark, Mark { line: 1, column: 4 });
        let Value::Seq(items) = &root.get("list").unwrap().value else {
            panic!("list is a sequence")
        };
        assert_eq!(items[1].mark, Mark { line: 4, column: 5 });
        assert_eq!(items[1].as_str(), Some("y"));
    }

    #[test]
    fn syntax_error_has_position() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.mark.line >= 1);
        assert!(err.message.starts_with("YAML syntax error"));
    }

    #[test]
    fn empty_document_is_empty_map() {
        assert_eq!(parse("").unwrap().entries().len(), 0);
    }

    #[test]
    fn overlay_merges_mappings_and_replaces_the_rest() {
        let base = parse("a: 1\nnested: {x: 1, y: 2}\nlist: [1, 2]\n").unwrap();
        let over = parse("nested: {y: 3}\nlist: [9]\nextra: true\n").unwrap();
        let merged = overlay(&base, &over);
        assert_eq!(merged.get("a").unwrap().as_str(), Some("1"));
        let nested = merged.get("nested").unwrap();
        assert_eq!(nested.get("x").unwrap().as_str(), Some("1"));
        assert_eq!(nested.get("y").unwrap().as_str(), Some("3"));
        assert_eq!(
            nested.get("y").unwrap().mark.line,
            1,
            "the overriding value keeps its position"
        );
        assert_eq!(merged.get("list"), over.get("list"));
        assert_eq!(merged.get("extra").unwrap().as_str(), Some("true"));
    }

    #[test]
    fn aliases_are_refused_with_position() {
        let err = parse("a: &x 1\nb: *x\n").unwrap_err();
        assert_eq!(err.mark.line, 2);
    }
}
