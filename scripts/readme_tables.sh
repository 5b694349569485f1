#!/usr/bin/env bash
# Rewrites the README's generated tables (between <!-- scripts/X.py --> markers) from the bundled cards.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 - <<'PY'
import re, subprocess
readme = open("README.md").read()
for script in ["scripts/table.py", "scripts/results.py"]:
    out = subprocess.run(["python3", script], check=True, capture_output=True, text=True).stdout
    start, end = f"<!-- {script} -->", f"<!-- /{script} -->"
    a, b = readme.index(start) + len(start), readme.index(end)
    readme = readme[:a] + "\n" + out.strip() + "\n" + readme[b:]
open("README.md", "w").write(readme)
PY
