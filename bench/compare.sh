#!/usr/bin/env bash
# Training-step speed of cm (burn, flex CPU backend) against the JAX/flax peer in bench/jax, on the same
# U-Net and iCT step (configs/mnist-ict-scratch.toml, batch 64), at 1 and 2 threads. Run on a quiet machine.
# Needs the peer's venv: python3 -m venv ~/.cache/cm/venv-jax && ~/.cache/cm/venv-jax/bin/pip install -r bench/jax/requirements.txt
set -euo pipefail
cd "$(dirname "$0")/.."
# Both sides optimised: JAX runs XLA-compiled code, so cm runs its release build (the one README's
# `cargo build --release` gives users; the dev build is ~1.6x slower at training).
if [ -z "${CM_BIN:-}" ]; then
  cargo build --release --locked -q -p cm-trainer
fi
CM="${CM_BIN:-${CARGO_TARGET_DIR:-target}/release/cm}"
PY="${JAX_PYTHON:-$HOME/.cache/cm/venv-jax/bin/python}"
STEPS="${STEPS:-30}"
# cm with one batch over all threads and, from 2 threads up, with the batch split into one shard per
# thread trained side by side (`--devices`, data parallel, each shard in a thread pool of its own: the
# fastest way cm has to use several cores; equal results up to float rounding). The ratio is the
# faster cm against JAX.
cm_speed() {
  RAYON_NUM_THREADS=$1 taskset -c 0-$(($1 - 1)) "$CM" bench --train configs/mnist-ict-scratch.toml --steps "$STEPS" \
    --devices "$2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["steps_per_s"])'
}
for t in ${THREADS:-1 2}; do
  cm_one=$(cm_speed "$t" 1)
  cm_shards=$cm_one
  [ "$t" -gt 1 ] && cm_shards=$(cm_speed "$t" "$t")
  jax_rate=$("$PY" bench/jax/unet_ict.py --threads "$t" --steps "$STEPS" --json \
    | python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["steps_per_s"])')
  python3 -c "print(f'threads {$t}: cm {$cm_one:.3f} steps/s (one batch), {$cm_shards:.3f} ({$t} shards); jax {$jax_rate:.3f} steps/s; cm/jax = {max($cm_one, $cm_shards) / $jax_rate:.2f}')"
done
