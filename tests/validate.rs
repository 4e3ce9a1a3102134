//! `rigtap validate`: exit codes and `file:line:column` messages from the real binary.

use std::process::Command;

fn validate(yaml: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rigtap"))
        .args(["validate", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).replace(path.to_str().unwrap(), "FILE");
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).replace(path.to_str().unwrap(), "FILE"),
        stderr,
    )
}

#[test]
fn valid_pipeline_prints_summary() {
    let (code, stdout, _) = validate(
        "sources:\n  g:\n    type: generate\nsinks:\n  s:\n    type: stdout\n    inputs: [g]\n",
    );
    assert_eq!(code, 0);
    assert_eq!(
        stdout,
        "FILE: ok: 1 source(s) [g], 0 transform(s) [], 1 sink(s) [s], 1 edge(s), memory budget 256MiB\n"
    );
}

#[test]
fn invalid_pipeline_exits_2_with_every_error() {
    let (code, _, stderr) = validate(
        "sources:\n  g:\n    type: generate\n    rate: fast\nsinks:\n  s:\n    type: stdout\n    inputs: [h]\n",
    );
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "FILE:2:3: source `g` feeds nothing; add it to the `inputs` of a transform or sink, or remove it\n\
         FILE:4:11: expected a number, found `fast`\n\
         FILE:8:14: unknown input `h` of `s`; did you mean `g`?\n"
    );
}

#[test]
fn kafka_settings_are_checked_before_anything_starts() {
    let (code, _, stderr) = validate(
        "sources:\n  g: {type: generate}\nsinks:\n  k:\n    type: kafka\n    inputs: [g]\n    brokers: 127.0.0.1:9092\n    topic: miners.{site\n",
    );
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "FILE:8:12: topic `miners.{site`: a `{` is never closed\n"
    );

    let (code, _, stderr) = validate(
        "sources:\n  g: {type: generate}\nsinks:\n  k:\n    type: kafka\n    inputs: [g]\n    brokers: 127.0.0.1:9092\n    topic: t\n    acks: leader\n",
    );
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with("FILE:9:11: `idempotence: true` needs `acks: all`"),
        "{stderr}"
    );

    let (code, _, stderr) = validate(
        "sources:\n  g: {type: generate}\nsinks:\n  k:\n    type: kafka\n    inputs: [g]\n    brokers: 127.0.0.1:9092\n    topic: t\n    librdkafka:\n      linger.ms: 5\n      sasl.password: hunter2\n      no.such.thing: 1\n",
    );
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with("FILE:12:7: librdkafka refused the producer settings")
            && stderr.contains("No such configuration property: \"no.such.thing\""),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn the_shipped_pipelines_validate() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut files = vec![format!("{root}/collector.yaml")];
    for entry in std::fs::read_dir(format!("{root}/pipelines")).unwrap() {
        files.push(entry.unwrap().path().display().to_string());
    }
    for file in files {
        let out = Command::new(env!("CARGO_BIN_EXE_rigtap"))
            .args(["validate", "-c", &file])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn version_is_printed() {
    let out = Command::new(env!("CARGO_BIN_EXE_rigtap"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("rigtap {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_disk_buffer_is_checked_where_it_is_written() {
    let kafka = "sources:\n  g: {type: generate}\nsinks:\n  k:\n    type: kafka\n    inputs: [g]\n    brokers: 127.0.0.1:9092\n    topic: t\n";
    let (code, _, stderr) = validate(&format!("{kafka}    buffer: {{type: disk}}\n"));
    assert_eq!(code, 2);
    assert!(stderr.starts_with("FILE:9:"), "{stderr}");
    assert!(stderr.contains("a disk buffer needs `path:`"), "{stderr}");

    let (code, _, stderr) = validate(&format!(
        "{kafka}    buffer: {{type: disk, path: /tmp/b, warn_at: 1.5}}\n"
    ));
    assert_eq!(code, 2);
    assert!(stderr.contains("`warn_at` is a share"), "{stderr}");

    let (code, _, stderr) = validate(&format!(
        "{kafka}    buffer: {{type: disk, path: /tmp/b}}\n  s:\n    type: stdout\n    inputs: [g]\n    buffer: {{type: disk, path: /tmp/b}}\n"
    ));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("FILE:13:13: sink `s` (stdout) cannot take a disk buffer")
            && stderr.contains("sinks `k` and `s` both buffer in /tmp/b"),
        "{stderr}"
    );

    let (code, _, stderr) = validate(&format!(
        "{kafka}    buffer: {{type: disk, path: /tmp/b, max_size: 10GiB, when_full: drop_newest}}\n"
    ));
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_disk_buffer_goes_on_sinks_only_and_labels_keep_off_sample_fields() {
    let (code, _, stderr) = validate(
        "sources:\n  g: {type: generate}\ntransforms:\n  f:\n    type: filter\n    inputs: [g]\n    condition: 'power_w > 1'\n    buffer: {type: disk, path: /tmp/t}\nsinks:\n  s: {type: stdout, inputs: [f]}\n",
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("FILE:8:13: transform `f` cannot take a disk buffer"),
        "{stderr}"
    );

    // A label named like a sample field would read back as that field.
    let (code, _, stderr) = validate(
        "sources:\n  g: {type: generate, labels: {site: a, state: b}}\nsinks:\n  s: {type: stdout, inputs: [g]}\n",
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("label `state` has the name of a sample column"),
        "{stderr}"
    );
}
