#!/usr/bin/env bash
# The whole test suite, as the README gives it: installs what the tests need (once),
# checks formatting and lints, then runs every unit and integration test.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== rustfmt and clippy"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo fmt --all --check
cargo clippy --locked --all-targets -- -D warnings

echo "== tests"
cargo test --locked --all-targets
