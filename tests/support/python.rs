//! The Python of the test venv (tests/run.sh creates it from tests/py/requirements.txt),
//! for the independent clients and readers.

use std::path::PathBuf;

pub fn python() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/py/bin/python");
    assert!(
        venv.exists(),
        "{} is missing; run ./tests/run.sh once to create the test venv",
        venv.display()
    );
    venv
}
