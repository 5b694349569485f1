#!/usr/bin/env bash
# Runs every check: rustfmt and clippy (native and wasm), Rust unit, property, golden, training,
# CLI and web-state tests, then the browser tests
# (the built playground in headless Chromium, WebGPU and CPU paths, native<->wasm parity).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --tests

echo "== formatting and lints (native and wasm)"
cargo fmt --all --check
cargo clippy --locked --workspace --all-targets -- -D warnings
cargo clippy --locked --release --target wasm32-unknown-unknown -p cm-web -- -D warnings

echo "== cargo test"
cargo test --workspace --locked

echo "== building the playground (trunk)"
trunk build --release

echo "== browser tests"
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
cargo build --locked -p cm-trainer --bin cm
export CM_BIN="$target_dir/debug/cm" CM_DIST="$PWD/dist"
(cd tests/browser && node --test --test-concurrency=1)
