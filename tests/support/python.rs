//! The Python of the test venv (tests/run.sh creates it from tests/py/requirements.txt),
//! for the independent clients and readers.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;

pub fn python() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/py/bin/python");
    assert!(
        venv.exists(),
        "{} is missing; run ./tests/run.sh once to create the test venv",
        venv.display()
    );
    venv
}

/// Runs tests/py/`script` with `args` in the test venv, and returns what it printed.
/// A script that fails fails the test, with its stderr.
pub fn run_script<A: AsRef<OsStr>>(script: &str, args: &[A]) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(script);
    let output = Command::new(python())
        .arg(path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
    assert!(
        output.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}
