#!/usr/bin/env bash
# The whole test suite, as the README gives it: installs what the tests need (once),
# checks formatting and lints, then runs every unit and integration test.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== test prerequisites"
# Independent clients and readers for the integration tests, in a venv under target/.
venv=target/py
if ! "$venv/bin/python" -c 'import grpc, grpc_tools' 2>/dev/null \
   || ! cmp -s tests/py/requirements.txt "$venv/requirements.txt"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/py/requirements.txt
    cp tests/py/requirements.txt "$venv/requirements.txt"
fi

echo "== rustfmt and clippy"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo fmt --all --check
cargo clippy --locked --all-targets -- -D warnings

echo "== tests"
cargo test --locked --all-targets
