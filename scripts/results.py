#!/usr/bin/env python3
"""Prints Markdown tables of the bundled models' quality, read from their cards (www/models/*/config.json).

Every number comes from the card (`cm train`, then `cm eval --write-card`); nothing here is computed or
typed by hand. 2D models: sliced W2 on 4096 samples against fresh data. Image models: FID-LeNet etc. on
4096 samples against the test split, with the dataset's classifier in classifiers/.
Usage: python3 scripts/results.py [models_dir]
"""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).parent.parent / "www/models")
points, images = [], []
for card_path in sorted(root.glob("*/config.json")):
    c = json.loads(card_path.read_text())
    m, p = c["metrics"], c.get("provenance", {})
    tuned = c.get("taus", {})
    # A step count with a tuned tau list (`cm tune`) is measured through it: the value says so.
    fmt = lambda k, d=4: (f"{m[k]:.{d}f}" + next((" (tau " + ", ".join(f"{t:.3g}" for t in tuned[s]) + ")" for s in tuned if k.endswith(f"_{s}step")), "")
                          if k in m else "–")
    wall = f"{p.get('wall_time_s', 0):.0f} s"
    if c["model"]["architecture"].get("kind") == "unet":
        images.append([c["name"], c["method"], str(c["steps"]),
                       fmt("fid_1step", 2), fmt("fid_2step", 2), fmt("fid_4step", 2), fmt("fid_heun35", 2),
                       fmt("fid_reference", 2), fmt("class_kl_1step", 3), fmt("max_prob_1step", 3),
                       wall, p.get("hardware", "?")])
    else:
        points.append([c["name"], c["method"], str(c["steps"]), fmt("sliced_w2_1step"), fmt("sliced_w2_2step"),
                       fmt("sliced_w2_4step"), fmt("sliced_w2_heun35"), fmt("sliced_w2_noise_floor"), wall,
                       p.get("hardware", "?")])


def table(head, rows):
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")


table(["model", "method", "steps", "SW2 1 step", "SW2 2 steps", "SW2 4 steps", "SW2 teacher (Heun, 35 NFE)",
       "SW2 noise floor", "train wall time", "hardware"], points)
if images:
    print()
    table(["model", "method", "steps", "FID-LeNet 1 step", "2 steps", "4 steps", "teacher (Heun, 35 NFE)",
           "train vs test", "class KL 1 step", "max prob 1 step", "train wall time", "hardware"], images)
