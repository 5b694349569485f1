#!/usr/bin/env python3
"""Prints a Markdown table of the bundled models' quality, read from their cards (www/models/*/config.json).

Every number comes from the card that `cm train` wrote (`cm eval` on 4096 samples against fresh data);
nothing here is computed or typed by hand. Usage: python3 scripts/results.py [models_dir]
"""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).parent.parent / "www/models")
rows = []
for card_path in sorted(root.glob("*/config.json")):
    c = json.loads(card_path.read_text())
    m, p = c["metrics"], c.get("provenance", {})
    fmt = lambda k: f"{m[k]:.4f}" if k in m else "–"
    rows.append([c["name"], c["method"], str(c["steps"]), fmt("sliced_w2_1step"), fmt("sliced_w2_2step"), fmt("sliced_w2_4step"),
                 fmt("sliced_w2_heun35"), fmt("sliced_w2_noise_floor"), f"{p.get('wall_time_s', 0):.0f} s", p.get("hardware", "?")])
head = ["model", "method", "steps", "SW2 1 step", "SW2 2 steps", "SW2 4 steps", "SW2 teacher (Heun, 35 NFE)", "SW2 noise floor", "train wall time", "hardware"]
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for r in rows:
    print("| " + " | ".join(r) + " |")
