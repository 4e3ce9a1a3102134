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
            && stderr.contains("sink `s` buffers in /tmp/b, and sink `k` buffers in /tmp/b: each sink needs a directory of its own"),
        "{stderr}"
    );

    let (code, _, stderr) = validate(&format!(
        "{kafka}    buffer: {{type: disk, path: /tmp/b, max_size: 10GiB, when_full: drop_newest}}\n"
    ));
    assert_eq!(code, 0, "{stderr}");
}

/// What `run` could not write, `validate` refuses at its place: a directory under a
/// file, and two sinks' directories one inside the other (a parquet sink removes the
/// temporaries it finds under its path at start, another sink's live files among them).
#[test]
fn directories_a_sink_cannot_make_or_would_share_are_refused_where_written() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes");
    std::fs::write(&file, "x").unwrap();
    let (root, file) = (dir.path().display(), file.display());
    let (code, _, stderr) = validate(&format!(
        "sources:\n  g: {{type: generate}}\nsinks:\n  p:\n    type: parquet\n    inputs: [g]\n    path: {file}/out\n"
    ));
    assert_eq!(code, 2);
    assert!(
        stderr.contains(&format!(
            "FILE:7:11: {file} is a file, not a directory, so {file}/out cannot be made"
        )),
        "{stderr}"
    );

    let (code, _, stderr) = validate(&format!(
        "sources:\n  g: {{type: generate}}\n  b:\n    type: bos\n    targets: {{addresses: [127.0.0.1]}}\n    username: root\n    password: x\n    record: {{path: {file}/rec}}\nsinks:\n  s: {{type: stdout, inputs: [g, b]}}\n"
    ));
    assert_eq!(code, 2);
    assert!(
        stderr.contains(&format!("FILE:8:20: {file} is a file")),
        "{stderr}"
    );

    let (code, _, stderr) = validate(&format!(
        "sources:\n  g: {{type: generate}}\nsinks:\n  p:\n    type: parquet\n    inputs: [g]\n    path: {root}/files\n  q:\n    type: parquet\n    inputs: [g]\n    path: {root}/files/more\n"
    ));
    assert_eq!(code, 2);
    assert!(
        stderr.contains(&format!("FILE:11:11: sink `q` writes its files into {root}/files/more, and sink `p` writes its files into {root}/files: a parquet sink's tree is its own")),
        "{stderr}"
    );

    let (code, _, stderr) = validate(&format!(
        "sources:\n  g: {{type: generate}}\nsinks:\n  p:\n    type: parquet\n    inputs: [g]\n    path: {root}/files\n    buffer: {{type: disk, path: {file}/buffer}}\n"
    ));
    assert_eq!(code, 2);
    assert!(
        stderr.contains(&format!("FILE:8:32: {file} is a file")),
        "{stderr}"
    );

    // Another sink's buffer in a parquet sink's tree: refused; its own: as before.
    let (code, _, stderr) = validate(&format!(
        "sources:\n  g: {{type: generate}}\nsinks:\n  p:\n    type: parquet\n    inputs: [g]\n    path: {root}/files\n    buffer: {{type: disk, path: {root}/files/buffer}}\n  k:\n    type: kafka\n    inputs: [g]\n    brokers: 127.0.0.1:9092\n    topic: t\n    buffer: {{type: disk, path: {root}/files/kafka}}\n"
    ));
    assert_eq!(code, 2);
    assert!(
        stderr.contains(&format!("FILE:14:13: sink `k` buffers in {root}/files/kafka, and sink `p` writes its files into {root}/files: a parquet sink's tree is its own")),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let (code, _, stderr) = validate(&format!(
        "sources:\n  g: {{type: generate}}\nsinks:\n  p:\n    type: parquet\n    inputs: [g]\n    path: {root}/files\n    buffer: {{type: disk, path: {root}/buffer}}\n"
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
