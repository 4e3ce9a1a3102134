//! Each config error a user can make, with the exact line and column it is reported at.

use super::*;
use crate::pipeline::queue::WhenFull;
use crate::toolkit::units::ByteSize;

fn env(name: &str) -> Option<String> {
    (name == "RATE").then(|| "50".to_string())
}

fn errors(yaml: &str) -> Vec<String> {
    match from_str(yaml, &env) {
        Ok(_) => Vec::new(),
        Err(problems) => problems
            .iter()
            .map(|p| format!("{}: {}", p.mark, p.message))
            .collect(),
    }
}

const GOOD: &str = "\
sources:
  fleet:
    type: generate
    rate: ${RATE}
    count: ${COUNT:-100}
sinks:
  out:
    type: stdout
    inputs: [fleet]
    buffer: { max_batches: 4, when_full: drop_newest }
";

#[test]
fn a_good_pipeline_decodes_with_interpolated_values() {
    let config = from_str(GOOD, &env).unwrap().pipeline;
    let generate = format!("{:?}", config.sources[0].config);
    assert!(generate.starts_with("GenerateConfig {"), "{generate}");
    assert!(
        generate.contains("count: Some(100), rate: Some(50.0)"),
        "{generate}"
    );
    assert_eq!(config.sinks[0].inputs, vec!["fleet"]);
    assert_eq!(config.sinks[0].buffer.max_batches, 4);
    assert_eq!(config.sinks[0].buffer.when_full, WhenFull::DropNewest);
    assert_eq!(config.memory_budget, ByteSize(256 << 20));
    assert_eq!(
        config.to_string(),
        "1 source(s) [fleet], 0 transform(s) [], 1 sink(s) [out], 1 edge(s), memory budget 256MiB"
    );
}

#[test]
fn unknown_field_names_the_nearest_valid_one() {
    let yaml = GOOD.replace("    count: ${COUNT:-100}", "    cuont: 5");
    assert_eq!(
        errors(&yaml),
        ["5:5: unknown field `cuont`; did you mean `count`?"]
    );
}

#[test]
fn unknown_common_field_suggests_common_key() {
    let yaml = GOOD.replace("    inputs: [fleet]", "    input: [fleet]");
    assert_eq!(
        errors(&yaml),
        [
            "2:3: source `fleet` feeds nothing; add it to the `inputs` of a transform or sink, or remove it",
            "7:3: sink `out` has no inputs; add `inputs: [<source or transform id>]`",
            "9:5: unknown field `input`; did you mean `inputs`?",
        ]
    );
}

#[test]
fn unknown_top_level_field() {
    let yaml = format!("memory_budgit: 1MiB\n{GOOD}");
    assert_eq!(
        errors(&yaml),
        ["1:1: unknown field `memory_budgit`; did you mean `memory_budget`?"]
    );
}

#[test]
fn unknown_component_type() {
    let yaml = GOOD.replace("type: stdout", "type: stdot");
    assert_eq!(
        errors(&yaml),
        ["8:11: unknown sink type `stdot`; did you mean `stdout`?"]
    );
    let yaml = GOOD.replace("type: generate", "type: kafka");
    assert_eq!(
        errors(&yaml),
        ["3:11: unknown source type `kafka`; expected one of: generate, bos, cgminer"]
    );
}

#[test]
fn missing_type() {
    let yaml = GOOD.replace("    type: stdout\n", "");
    assert_eq!(
        errors(&yaml),
        ["8:5: missing `type`; add `type: <stdout | parquet | kafka>`"]
    );
}

#[test]
fn unknown_input_id() {
    let yaml = GOOD.replace("inputs: [fleet]", "inputs: [fleet, flet2]");
    assert_eq!(
        errors(&yaml),
        ["9:21: unknown input `flet2` of `out`; did you mean `fleet`?"]
    );
}

#[test]
fn a_source_that_feeds_nothing() {
    let yaml = GOOD.replace("sinks:", "  spare:\n    type: generate\nsinks:");
    assert_eq!(
        errors(&yaml),
        ["6:3: source `spare` feeds nothing; add it to the `inputs` of a transform or sink, or remove it"]
    );
}

#[test]
fn a_sink_used_as_input() {
    let yaml = format!("{GOOD}  echo:\n    type: stdout\n    inputs: [out]\n");
    assert_eq!(
        errors(&yaml),
        ["13:14: input `out` of `echo` is a sink, and sinks produce nothing; use a source or transform"]
    );
}

#[test]
fn duplicate_ids_across_sections() {
    let yaml = GOOD.replace("  out:", "  fleet:");
    let found = errors(&yaml);
    assert_eq!(
        found,
        [
            // The duplicate is left out of the graph, so the source it read from is unused.
            "2:3: source `fleet` feeds nothing; add it to the `inputs` of a transform or sink, or remove it",
            "7:3: component id `fleet` is already used at line 2; ids must be unique across sources, transforms and sinks",
        ]
    );
}

#[test]
fn a_duration_or_size_that_does_not_parse() {
    let yaml = format!("memory_budget: 12 parsecs\n{GOOD}");
    assert_eq!(
        errors(&yaml),
        ["1:16: `12 parsecs` is not a size; write e.g. `512KiB`, `64MiB`, `1GiB` or `10MB`"]
    );
    let err = "5m"
        .parse::<crate::toolkit::units::HumanDuration>()
        .unwrap();
    assert_eq!(err.0.as_secs(), 300);
}

#[test]
fn a_bad_value_points_at_the_value() {
    let yaml = GOOD.replace("rate: ${RATE}", "rate: -3");
    let found = errors(&yaml);
    assert_eq!(found.len(), 1);
    assert!(
        found[0].starts_with("4:11: `rate` must be a positive number"),
        "{found:?}"
    );
    let yaml = GOOD.replace("when_full: drop_newest", "when_full: drop");
    assert_eq!(
        errors(&yaml),
        ["10:42: unknown value `drop`; expected one of: block, drop_newest"]
    );
}

#[test]
fn an_unset_variable_without_default() {
    let yaml = GOOD.replace("${RATE}", "${NO_SUCH_RATE}");
    assert_eq!(
        errors(&yaml),
        ["4:11: environment variable `NO_SUCH_RATE` is not set; set it, or give a default with `${NO_SUCH_RATE:-value}`"]
    );
}

#[test]
fn sources_have_no_inputs() {
    let yaml = GOOD.replace("    rate: ${RATE}\n", "    inputs: [x]\n");
    assert_eq!(errors(&yaml), ["4:5: sources have no `inputs`; remove it"]);
}

#[test]
fn empty_pipeline_and_syntax_errors() {
    assert_eq!(
        errors("sinks: {}\n"),
        [
            "1:1: the pipeline has no sources; add a `sources:` map with at least one source",
            "1:1: the pipeline has no sinks; add a `sinks:` map with at least one sink"
        ]
    );
    let found = errors("sources:\n  a: [1\n");
    assert_eq!(found.len(), 1);
    assert!(found[0].contains("YAML syntax error"), "{found:?}");
}

#[test]
fn zero_sized_buffer_is_refused() {
    let yaml = GOOD.replace("max_batches: 4", "max_batches: 0");
    assert_eq!(
        errors(&yaml),
        ["10:13: `buffer.max_batches` must be at least 1"]
    );
}

#[test]
fn errors_render_as_file_line_column() {
    let error = ConfigError::Invalid {
        path: "pipelines/x.yaml".into(),
        diagnostics: vec![Diagnostic::new(Mark { line: 3, column: 7 }, "bad")],
    };
    assert_eq!(error.to_string(), "pipelines/x.yaml:3:7: bad");
}

const WITH_TRANSFORMS: &str = "\
sources:
  fleet:
    type: generate
transforms:
  a:
    type: filter
    inputs: [fleet, b]
    condition: kind == \"miner\"
  b:
    type: filter
    inputs: [a]
    condition: hashrate_ths > 10
sinks:
  out:
    type: stdout
    inputs: [b]
";

#[test]
fn a_cycle_is_named_with_its_path() {
    assert_eq!(
        errors(WITH_TRANSFORMS),
        ["5:3: transforms form a cycle: a -> b -> a; remove one of these inputs"]
    );
}

#[test]
fn a_bad_condition_points_at_the_condition() {
    let yaml = WITH_TRANSFORMS
        .replace("inputs: [fleet, b]", "inputs: [fleet]")
        .replace("hashrate_ths > 10", "hashrate > 10");
    assert_eq!(
        errors(&yaml),
        ["12:16: in the condition at character 1: unknown field `hashrate`; did you mean `hashrate_ths`? (any other name is a label)"]
    );
}

#[test]
fn api_health_fraction_is_checked() {
    let yaml = format!("api:\n  health: {{min_online: 90}}\n{GOOD}");
    assert_eq!(
        errors(&yaml),
        ["2:24: `api.health.min_online` is a fraction of the miners, from 0 to 1 (e.g. 0.9)"]
    );
}

#[test]
fn a_reload_reads_only_a_regular_file_within_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, GOOD).unwrap();
    assert_eq!(read_regular(&good).unwrap(), GOOD);

    // Refused on its metadata: the sparse file's 17 MiB are never read.
    let big = dir.path().join("big.yaml");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(MAX_CONFIG_BYTES + 1)
        .unwrap();
    let error = read_regular(&big).unwrap_err().to_string();
    assert!(error.contains("larger than 16 MiB"), "{error}");

    // Every kind of file but a regular one is refused (toolkit::regular_file's tests).
    let error = read_regular(dir.path()).unwrap_err().to_string();
    assert!(error.contains("it is a directory"), "{error}");
}
