#!/usr/bin/env bash
# Runs every test: Rust unit, property, golden, training and CLI tests, then the browser tests
# (the built playground in headless Chromium, WebGPU and CPU paths, native<->wasm parity).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --tests

echo "== cargo test"
cargo test --workspace --locked

echo "== building the playground (trunk)"
trunk build --release

echo "== browser tests"
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
cargo build --locked -p cm-trainer --bin cm
export CM_BIN="$target_dir/debug/cm" CM_DIST="$PWD/dist"
(cd tests/browser && node --test --test-concurrency=1)
