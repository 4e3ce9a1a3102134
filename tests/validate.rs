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
