#!/usr/bin/env bash
# The GPU check for a session that is lent a GPU machine (which has no network and no Rust): build here,
# run there in one go.
#
#   bash scripts/gpu-check.sh --prepare   # here: release cm with Vulkan + CUDA (offline), the Vulkan loader
#                                         # and MNIST into devbin/ (git-ignored; ~40 MB to carry); on a
#                                         # machine without a GPU it also checks that every GPU backend
#                                         # fails with one error line, exit 1
#   bash scripts/gpu-check.sh --software  # here, after --prepare, on a machine without a GPU: on Vulkan
#                                         # through Mesa's software driver (lavapipe, installed from Debian
#                                         # where missing), every method's first losses and the sampling
#                                         # check against the CPU's, and a recipe over lavapipe's buffer
#                                         # limit ending in one error line; the GPU kernels and this
#                                         # script, checked before a GPU is lent
#   bash scripts/gpu-check.sh [--quick]   # there, from the repository root with devbin/ carried:
#                                         # writes $OUT/gpu-check.txt (or ./gpu-check-out/) and
#                                         # $OUT/gpu-cache.tar.xz: copy that to ~/.cache/cm/ here, and the
#                                         # next --prepare carries it, so the next GPU check starts warm
#
# What it runs and checks is in scripts/gpu_check.py: every method (edm, ict, ect, cd, sct, scd on the MNIST
# recipes) on every GPU backend for a few hundred steps with finite, falling loss and first losses equal to
# the CPU's; 8 samples of the bundled mnist-ict (two steps) and mnist-edm (Euler, 4 NFE) equal to the CPU's;
# training steps/s of the small and the 7 M-parameter U-Net against the JAX peer on the same GPU,
# warm-up (autotune) time cold and warm, FLOP/s; peak GPU memory. It keeps to a time budget
# (GPU_CHECK_BUDGET_S, default 450 s) and writes what it has measured as it goes.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--prepare" ]; then
  export CARGO_TARGET_DIR="${CM_GPU_TARGET_DIR:-$HOME/.cache/cm/target-gpu}"
  echo "== release cm with --features vulkan,cuda (offline; CUDA through NVRTC, see vendor/cubecl-cuda)"
  cargo build --release --locked -p cm-trainer --features vulkan,cuda
  mkdir -p devbin/vulkan devbin/data/mnist
  strip -o devbin/cm "$CARGO_TARGET_DIR/release/cm"
  xz -T0 -6 -f devbin/cm
  bash scripts/setup.sh --gpu-only
  loader="${CM_CACHE:-$HOME/.cache/cm}/vulkan/libvulkan.so.1"
  cp "$loader" devbin/vulkan/libvulkan.so.1
  bash scripts/data.sh >/dev/null
  relay="${CM_CACHE:-$HOME/.cache/cm}/gpu-cache.tar.xz"
  if [ -f "$relay" ]; then cp "$relay" devbin/gpu-cache.tar.xz; echo "kernel caches of the last GPU check: $relay"; fi
  data="${CM_DATA:-${CM_CACHE:-$HOME/.cache/cm}/data}"
  for f in "$data"/mnist/*-ubyte; do gzip -c "$f" > "devbin/data/mnist/$(basename "$f").gz"; done
  du -sh devbin
  if ! command -v nvidia-smi >/dev/null; then
    echo "== no GPU here: every GPU backend must fail with one error line and exit 1 (not a panic)"
    for b in cuda vulkan wgpu; do
      set +e
      err=$(env -u RUST_BACKTRACE "$CARGO_TARGET_DIR/release/cm" train --config configs/moons-ict.toml --steps 2 --backend "$b" \
        --out "$(mktemp -d)/run" 2>&1 >/dev/null)
      rc=$?
      set -e
      echo "  --backend $b: exit $rc: $err"
      if [ "$rc" != 1 ] || [ "$(printf '%s\n' "$err" | grep -c .)" != 1 ] || ! printf '%s' "$err" | grep -q "backend \`$b\`"; then
        echo "FAIL: expected exit 1 and one line naming backend \`$b\`"; exit 1
      fi
    done
  fi
  echo "carry devbin/ to the GPU machine and run: bash scripts/gpu-check.sh"
  exit 0
fi

if [ "${1:-}" = "--software" ]; then
  cm="${CM_GPU_TARGET_DIR:-$HOME/.cache/cm/target-gpu}/release/cm"
  [ -x "$cm" ] || { echo "no $cm: run bash scripts/gpu-check.sh --prepare first"; exit 1; }
  icd=$(ls /usr/share/vulkan/icd.d/lvp_icd*.json 2>/dev/null | head -n 1 || true)
  if [ -z "$icd" ]; then
    echo "== installing Mesa's software Vulkan driver (lavapipe) and the Vulkan loader"
    apt-get update -qq && apt-get install -y -qq mesa-vulkan-drivers libvulkan1
    icd=$(ls /usr/share/vulkan/icd.d/lvp_icd*.json | head -n 1)
  fi
  # lavapipe runs the MNIST net ~30-90x slower than flex: three steps of each method, and no speed part.
  export CM_BIN="$cm" VK_ICD_FILENAMES="$icd" CM_ALLOW_SOFTWARE_GPU=1 GPU_CHECK_BACKENDS="${GPU_CHECK_BACKENDS:-vulkan}" GPU_CHECK_SPEED=0 \
    GPU_CHECK_PROFILE=0 GPU_CHECK_STOP_AT="${GPU_CHECK_STOP_AT:-3}" GPU_CHECK_BUDGET_S="${GPU_CHECK_BUDGET_S:-7200}" \
    GPU_CHECK_METHOD_TIMEOUT="${GPU_CHECK_METHOD_TIMEOUT:-1800}" GPU_CHECK_ALLOCATION_FAILURE=1 \
    GPU_CHECK_METHODS_SHARE=1 OUT="${OUT:-$PWD/gpu-check-software}"
  exec python3 scripts/gpu_check.py
fi

[ -x devbin/cm ] || { xz -dc devbin/cm.xz > devbin/cm && chmod +x devbin/cm; }
export CM_BIN="$PWD/devbin/cm"
# Kernel caches travel between lent machines (all Hopper, sm_90): cubecl's compiled kernels and autotune
# decisions ($CM_CACHE/cubecl) and the NVIDIA driver's own caches (PTX to machine code for CUDA, pipelines
# for Vulkan), pointed into $CM_CACHE/nv so they are found and saved with it. gpu_check.py writes them to
# $OUT/gpu-cache.tar.xz at the end; `--prepare` puts the last one it was given (~/.cache/cm/gpu-cache.tar.xz)
# into devbin/, and it is unpacked here before anything runs.
export CM_CACHE="${CM_CACHE:-$HOME/.cache/cm}"
export CUDA_CACHE_PATH="$CM_CACHE/nv/compute" CUDA_CACHE_MAXSIZE=4294967296
export __GL_SHADER_DISK_CACHE=1 __GL_SHADER_DISK_CACHE_PATH="$CM_CACHE/nv/gl" __GL_SHADER_DISK_CACHE_SKIP_CLEANUP=1
if [ -f devbin/gpu-cache.tar.xz ]; then
  mkdir -p "$CM_CACHE" && tar -xJf devbin/gpu-cache.tar.xz -C "$CM_CACHE" && echo "kernel caches unpacked from devbin/gpu-cache.tar.xz"
fi
export CM_DATA="$PWD/devbin/data"
export CM_VULKAN_LOADER="$PWD/devbin/vulkan/libvulkan.so.1"
exec python3 scripts/gpu_check.py "$@"
