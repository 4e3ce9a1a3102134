//! The layers of src/ import only downward, components do not import each other, and
//! no two files import each other, directly or round a circle.
//!
//! Layers, bottom to top (docs/architecture.md): 1 `toolkit`, 2 `pipeline`, 3 the
//! components (`sources::*`, `transforms::*`, `sinks::*`) and the simulator (`sim`)
//! beside them, 4 `topology`, 5 `operator`, 6 `main.rs`. The test reads every `use`
//! and every `crate::` path of every file (test code included), resolves each to the
//! file that defines the module it names, and checks the edges.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A file's module path: `src/sinks/kafka/sink.rs` is `["sinks", "kafka", "sink"]`.
type ModulePath = Vec<String>;

#[test]
fn layers_import_only_downward_and_nothing_imports_in_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = rust_files(&src);
    let modules: BTreeMap<ModulePath, PathBuf> = files
        .iter()
        .filter_map(|f| module_path(&src, f).map(|m| (m, f.clone())))
        .collect();
    let mut edges: BTreeMap<ModulePath, BTreeSet<ModulePath>> = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).unwrap();
        for path in imports(module, &text) {
            if let Some(target) = resolve(&modules, &path) {
                if &target != module && !is_parent_declaration(&target, module) {
                    edges.entry(module.clone()).or_default().insert(target);
                }
            }
        }
    }

    let mut upward = Vec::new();
    let mut across = Vec::new();
    for (from, targets) in &edges {
        for to in targets {
            let (lf, lt) = (layer(from), layer(to));
            if lt > lf {
                upward.push(format!(
                    "{} (layer {lf}) imports {} (layer {lt})",
                    name(from),
                    name(to)
                ));
            } else if lf == 4 && lt == 4 && unit(from) != unit(to) {
                across.push(format!(
                    "{} imports {}, another component",
                    name(from),
                    name(to)
                ));
            }
        }
    }
    let circles = circles(&edges);
    let circles: Vec<String> = circles
        .iter()
        .map(|c| c.iter().map(name).collect::<Vec<_>>().join(" <-> "))
        .collect();
    assert!(
        edges.len() > 40,
        "the scan found imports in only {} files; is it reading src/?",
        edges.len()
    );
    assert!(
        upward.is_empty() && across.is_empty() && circles.is_empty(),
        "{} upward import(s):\n{}\n{} import(s) across components:\n{}\n{} circle(s):\n{}",
        upward.len(),
        upward.join("\n"),
        across.len(),
        across.join("\n"),
        circles.len(),
        circles.join("\n"),
    );
}

/// Whether `parent` is the module that declares `child` (its `mod.rs`, or the crate
/// root): a declaration, not an import.
fn is_parent_declaration(parent: &ModulePath, child: &ModulePath) -> bool {
    parent.is_empty() && child.len() == 1
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// `src/a/b.rs` and `src/a/b/mod.rs` are `[a, b]`; `lib.rs` is `[]`; `main.rs` is
/// `["main"]`.
fn module_path(src: &Path, file: &Path) -> Option<ModulePath> {
    let relative = file.strip_prefix(src).ok()?.with_extension("");
    let mut parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") || parts == ["lib"] {
        parts.pop();
    }
    Some(parts)
}

fn layer(module: &ModulePath) -> u8 {
    match module.first().map(String::as_str) {
        None => 0,
        Some("toolkit") => 1,
        Some("pipeline") => 2,
        Some("fleet") => 3,
        Some("sources" | "transforms" | "sinks" | "sim") => 4,
        Some("topology") => 5,
        Some("operator") => 6,
        Some("main") => 7,
        Some(other) => panic!(
            "module `{other}` has no layer; add it to tests/layers.rs and docs/architecture.md"
        ),
    }
}

/// The component a layer-3 module belongs to: `sources::bos`, `sinks::kafka`, `sim`.
fn unit(module: &ModulePath) -> Vec<String> {
    let depth = if module[0] == "sim" { 1 } else { 2 };
    module.iter().take(depth).cloned().collect()
}

fn name(module: &ModulePath) -> String {
    if module.is_empty() {
        "lib.rs".into()
    } else {
        module.join("::")
    }
}

/// Every absolute module path a file names: `use` trees (braces expanded) and inline
/// `crate::` paths, with `super::` and `self::` made absolute.
fn imports(module: &ModulePath, text: &str) -> Vec<ModulePath> {
    // The module a `super::` is relative to: the file's, or inside the file's own
    // inline `mod tests`, the file itself.
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let tests_at = code.find("mod tests {").unwrap_or(usize::MAX);
    let mut out = Vec::new();
    let mut rest = code.as_str();
    let mut offset = 0;
    while let Some(found) = next_path(rest) {
        let (start, end) = found;
        let inside_tests = offset + start > tests_at;
        let tree = &rest[start..end];
        for path in expand(tree) {
            if let Some(absolute) = absolute(module, &path, inside_tests) {
                out.push(absolute);
            }
        }
        offset += end;
        rest = &rest[end..];
    }
    out
}

/// The next `crate::…`, `rigtap::…`, `super::…` or `self::…` path (a `use` tree with
/// its braces, or an inline path), as a byte range.
fn next_path(text: &str) -> Option<(usize, usize)> {
    let starts = ["crate::", "rigtap::", "super::", "self::"];
    let start = starts
        .iter()
        .filter_map(|s| {
            text.match_indices(s)
                .find(|(i, _)| {
                    !text[..*i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':')
                })
                .map(|(i, _)| i)
        })
        .min()?;
    let mut depth = 0;
    let mut end = start;
    for (i, c) in text[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth > 0 => depth -= 1,
            c if depth == 0 && !(c.is_alphanumeric() || c == '_' || c == ':') => {
                end = start + i;
                break;
            }
            _ => {}
        }
        end = start + i + c.len_utf8();
    }
    Some((start, end))
}

/// `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e` (whitespace removed).
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else {
        return vec![tree];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.len().saturating_sub(1)];
    let mut parts = Vec::new();
    let (mut depth, mut from) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[from..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| match p {
            "self" => vec![prefix.trim_end_matches("::").to_string()],
            p => expand(&format!("{prefix}{p}")),
        })
        .collect()
}

fn absolute(module: &ModulePath, path: &str, inside_tests: bool) -> Option<ModulePath> {
    let mut segments = path.split("::").filter(|s| !s.is_empty()).peekable();
    let mut base: ModulePath = match segments.peek().copied()? {
        "crate" | "rigtap" => {
            segments.next();
            Vec::new()
        }
        "self" => {
            segments.next();
            module.clone()
        }
        "super" => {
            let mut base = module.clone();
            // In a file's inline test module, the first `super` is the file itself.
            let mut skip = inside_tests;
            while segments.peek() == Some(&"super") {
                segments.next();
                if skip {
                    skip = false;
                } else {
                    base.pop()?;
                }
            }
            base
        }
        _ => return None,
    };
    base.extend(segments.map(str::to_string));
    Some(base)
}

/// The longest prefix of `path` that is a file's module.
fn resolve(modules: &BTreeMap<ModulePath, PathBuf>, path: &ModulePath) -> Option<ModulePath> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|prefix| modules.contains_key(prefix))
}

/// Strongly connected groups of more than one module (Tarjan's algorithm).
fn circles(edges: &BTreeMap<ModulePath, BTreeSet<ModulePath>>) -> Vec<Vec<ModulePath>> {
    struct State<'a> {
        edges: &'a BTreeMap<ModulePath, BTreeSet<ModulePath>>,
        index: BTreeMap<&'a ModulePath, usize>,
        low: BTreeMap<&'a ModulePath, usize>,
        stack: Vec<&'a ModulePath>,
        on_stack: BTreeSet<&'a ModulePath>,
        found: Vec<Vec<ModulePath>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a ModulePath) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.edges.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut group = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                group.push(w.clone());
                if w == v {
                    break;
                }
            }
            if group.len() > 1 {
                s.found.push(group);
            }
        }
    }
    let mut state = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !state.index.contains_key(v) {
            visit(&mut state, v);
        }
    }
    state.found
}

#[test]
fn use_trees_expand_and_resolve() {
    assert_eq!(
        expand("crate::toolkit::{yaml::{node, decode::DecodeError}, units}"),
        [
            "crate::toolkit::yaml::node",
            "crate::toolkit::yaml::decode::DecodeError",
            "crate::toolkit::units"
        ]
    );
    let module: ModulePath = vec!["sinks".into(), "kafka".into(), "sink".into()];
    assert_eq!(
        absolute(&module, "super::config::KafkaConfig", false).unwrap(),
        ["sinks", "kafka", "config", "KafkaConfig"]
    );
    assert_eq!(
        absolute(&module, "super::Thing", true).unwrap(),
        ["sinks", "kafka", "sink", "Thing"]
    );
    let text = "use crate::{sinks, sources};\nfn f() { crate::toolkit::limits::x(); } // crate::operator\n";
    let found = imports(&module, text);
    assert_eq!(found.len(), 3, "{found:?}");
}
