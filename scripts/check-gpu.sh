#!/usr/bin/env bash
# Compiles the GPU paths of `cm` (wgpu, Vulkan, CUDA) without running them: what a CPU-only machine can check.
# wgpu and vulkan build as usual. burn 0.22's CUDA backend pulls cubecl-llvm, whose build script downloads an
# LLVM bundle; offline, DOCS_RS=1 makes those build scripts skip the native LLVM setup, so the CUDA path is
# type-checked (cargo check) but not linked. A second target folder keeps the GPU dependency tree apart.
# Measured on the 2-core machine: ~7 minutes from a warm registry.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CM_GPU_TARGET_DIR:-$HOME/.cache/cm/target-gpu}"
echo "== wgpu + vulkan (cargo check)"
cargo check --locked -p cm-trainer --features wgpu,vulkan
echo "== wgpu + vulkan + cuda (cargo check, LLVM setup skipped: DOCS_RS=1)"
DOCS_RS=1 cargo check --locked -p cm-trainer --features wgpu,vulkan,cuda
