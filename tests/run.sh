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
# Debian packages: OpenSSL's headers (librdkafka is built from source with TLS), tmux
# (the test of `rigtap top` drives it in a terminal), promtool (checks the alert rules;
# Debian ships it in `prometheus`, which is not started).
sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
packages=()
pkg-config --exists openssl 2>/dev/null || packages+=(libssl-dev pkg-config)
command -v tmux >/dev/null || packages+=(tmux)
command -v promtool >/dev/null || packages+=(prometheus)
if [ ${#packages[@]} -gt 0 ]; then
    echo "== installing ${packages[*]}"
    sudo_if_needed apt-get update -qq
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi

echo "== rustfmt and clippy"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo fmt --all --check
cargo clippy --locked --all-targets -- -D warnings

echo "== tests"
cargo test --locked --all-targets
