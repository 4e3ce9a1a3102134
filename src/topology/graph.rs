//! Checks of the pipeline graph: every input exists and produces samples, nothing
//! forms a cycle, and every source and transform feeds something.

use std::collections::HashMap;

use crate::pipeline::stats::Role;
use crate::toolkit::yaml::decode::nearest;
use crate::toolkit::yaml::diagnostic::Diagnostic;
use crate::toolkit::yaml::node::Mark;

/// One component as the graph sees it.
pub(crate) struct GraphNode<'a> {
    pub id: &'a str,
    pub mark: Mark,
    pub(crate) section: Role,
    pub inputs: &'a [(String, Mark)],
}

/// All graph problems, each at the position a user would edit to fix it.
pub(crate) fn check(nodes: &[GraphNode<'_>]) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    let by_id: HashMap<&str, &GraphNode<'_>> = nodes.iter().map(|n| (n.id, n)).collect();
    let producers = || {
        nodes
            .iter()
            .filter(|n| n.section != Role::Sink)
            .map(|n| n.id)
    };

    for node in nodes {
        if node.section != Role::Source && node.inputs.is_empty() {
            problems.push(Diagnostic::new(
                node.mark,
                format!(
                    "{} `{}` has no inputs; add `inputs: [<source or transform id>]`",
                    node.section.as_str(),
                    node.id
                ),
            ));
        }
        for (input, mark) in node.inputs {
            match by_id.get(input.as_str()) {
                None => {
                    let hint = match nearest(input, producers()) {
                        Some(best) => format!("did you mean `{best}`?"),
                        None => format!(
                            "known sources and transforms: {}",
                            producers().collect::<Vec<_>>().join(", ")
                        ),
                    };
                    problems.push(Diagnostic::new(
                        *mark,
                        format!("unknown input `{input}` of `{}`; {hint}", node.id),
                    ));
                }
                Some(target) if target.section == Role::Sink => problems.push(Diagnostic::new(
                    *mark,
                    format!(
                        "input `{input}` of `{}` is a sink, and sinks produce nothing; use a source or transform",
                        node.id
                    ),
                )),
                Some(target) if target.id == node.id => problems.push(Diagnostic::new(
                    *mark,
                    format!("`{}` lists itself as an input; remove it", node.id),
                )),
                Some(_) => {}
            }
        }
    }

    for node in nodes.iter().filter(|n| n.section != Role::Sink) {
        let feeds = nodes
            .iter()
            .any(|other| other.inputs.iter().any(|(i, _)| i == node.id));
        if !feeds {
            problems.push(Diagnostic::new(
                node.mark,
                format!(
                    "{} `{}` feeds nothing; add it to the `inputs` of a transform or sink, or remove it",
                    node.section.as_str(),
                    node.id
                ),
            ));
        }
    }

    if let Some(cycle) = find_cycle(nodes, &by_id) {
        let first = by_id[cycle[0]];
        problems.push(Diagnostic::new(
            first.mark,
            format!(
                "transforms form a cycle: {} -> {}; remove one of these inputs",
                cycle.join(" -> "),
                cycle[0]
            ),
        ));
    }
    problems
}

/// A cycle among transforms, as the ids along it, if there is one.
fn find_cycle<'a>(
    nodes: &[GraphNode<'a>],
    by_id: &HashMap<&str, &GraphNode<'a>>,
) -> Option<Vec<&'a str>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Visit {
        New,
        OnPath,
        Done,
    }
    fn visit<'a>(
        node: &GraphNode<'a>,
        by_id: &HashMap<&str, &GraphNode<'a>>,
        marks: &mut HashMap<&'a str, Visit>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<&'a str>> {
        marks.insert(node.id, Visit::OnPath);
        path.push(node.id);
        for (input, _) in node.inputs {
            let Some(next) = by_id.get(input.as_str()) else {
                continue;
            };
            if next.id == node.id {
                continue; // reported on its own as a self-input
            }
            match marks.get(next.id).copied().unwrap_or(Visit::New) {
                Visit::OnPath => {
                    let start = path.iter().position(|id| *id == next.id).unwrap_or(0);
                    return Some(path[start..].to_vec());
                }
                Visit::New => {
                    if let Some(cycle) = visit(next, by_id, marks, path) {
                        return Some(cycle);
                    }
                }
                Visit::Done => {}
            }
        }
        path.pop();
        marks.insert(node.id, Visit::Done);
        None
    }

    let mut marks = HashMap::new();
    for node in nodes.iter().filter(|n| n.section == Role::Transform) {
        if marks.get(node.id).copied().unwrap_or(Visit::New) == Visit::New {
            if let Some(cycle) = visit(node, by_id, &mut marks, &mut Vec::new()) {
                return Some(cycle);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: usize) -> Mark {
        Mark { line, column: 3 }
    }

    #[test]
    fn finds_cycle_unknown_input_and_unused_source() {
        let ab = [("b".to_string(), at(10)), ("src".to_string(), at(11))];
        let ba = [("a".to_string(), at(20))];
        let sink_in = [("a".to_string(), at(30)), ("nope".to_string(), at(31))];
        let nodes = [
            GraphNode {
                id: "src",
                mark: at(1),
                section: Role::Source,
                inputs: &[],
            },
            GraphNode {
                id: "idle",
                mark: at(2),
                section: Role::Source,
                inputs: &[],
            },
            GraphNode {
                id: "a",
                mark: at(9),
                section: Role::Transform,
                inputs: &ab,
            },
            GraphNode {
                id: "b",
                mark: at(19),
                section: Role::Transform,
                inputs: &ba,
            },
            GraphNode {
                id: "out",
                mark: at(29),
                section: Role::Sink,
                inputs: &sink_in,
            },
        ];
        let problems = check(&nodes);
        let messages: Vec<String> = problems
            .iter()
            .map(|p| format!("{}: {}", p.mark, p.message))
            .collect();
        assert!(messages.contains(&"31:3: unknown input `nope` of `out`; known sources and transforms: src, idle, a, b".to_string()), "{messages:?}");
        assert!(messages.contains(&"2:3: source `idle` feeds nothing; add it to the `inputs` of a transform or sink, or remove it".to_string()), "{messages:?}");
        assert!(
            messages
                .iter()
                .any(|m| m.starts_with("9:3: transforms form a cycle: a -> b -> a")),
            "{messages:?}"
        );
        assert_eq!(problems.len(), 3, "{messages:?}");
    }

    #[test]
    fn sink_as_input_is_refused() {
        let sink_in = [("src".to_string(), at(5))];
        let bad = [("out".to_string(), at(8))];
        let nodes = [
            GraphNode {
                id: "src",
                mark: at(1),
                section: Role::Source,
                inputs: &[],
            },
            GraphNode {
                id: "out",
                mark: at(4),
                section: Role::Sink,
                inputs: &sink_in,
            },
            GraphNode {
                id: "out2",
                mark: at(7),
                section: Role::Sink,
                inputs: &bad,
            },
        ];
        let problems = check(&nodes);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.contains("is a sink"));
    }
}
