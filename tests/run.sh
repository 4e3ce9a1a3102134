#!/usr/bin/env bash
# The whole test suite, as the README gives it: installs what the tests need (once),
# checks formatting and lints, then runs every unit and integration test.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== test prerequisites"
# Independent clients and readers for the integration tests, in a venv under target/.
venv=target/py
if ! "$venv/bin/python" -c 'import grpc, grpc_tools, kafka, zstandard' 2>/dev/null \
   || ! cmp -s tests/py/requirements.txt "$venv/requirements.txt"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/py/requirements.txt
    cp tests/py/requirements.txt "$venv/requirements.txt"
fi

# A real Kafka-protocol broker for the kafka sink's tests (about 7 minutes to build, once).
if ! command -v tansu >/dev/null && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" ]; then
    echo "== installing tansu 0.6.0 (Kafka-compatible broker) with cargo install"
    cargo install tansu --version 0.6.0 --features dynostore --locked
fi
# librdkafka is built from source with TLS (OpenSSL) support: it needs OpenSSL's headers.
if ! pkg-config --exists openssl 2>/dev/null; then
    echo "== installing libssl-dev and pkg-config"
    sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
    sudo_if_needed apt-get update -qq
    sudo_if_needed apt-get install -y -qq libssl-dev pkg-config
fi

echo "== rustfmt and clippy"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo fmt --all --check
cargo clippy --locked --all-targets -- -D warnings

echo "== tests"
cargo test --locked --all-targets
