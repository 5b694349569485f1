#!/usr/bin/env bash
# Sets everything up and serves the playground with the bundled models.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo
echo "== building the playground (first build ~15-25 minutes; later ones are quick)"
echo "   then open http://127.0.0.1:8080/"
exec trunk serve --release
