#!/usr/bin/env python3
"""The README's table of every bundled image consistency model's jumps from its teacher's PF-ODE:
`cm trajectory --model <it> --teacher <its teacher> --n 256 --seed 1` for each, printed as a markdown table.

    python3 scripts/trajectories.py [path/to/cm]     # default: target/release/cm, or $CM_BIN (~9 min on 2 cores)

The teacher is the model the recipe distils or starts from (`teacher.path`, else `init_from`) when that is
a diffusion model; a model trained from scratch is measured against its dataset's EDM teacher (at its resolution).
A class-conditional pair follows every class in turn (`cm trajectory`'s default), along the ODE guided as the
student's recipe guided its teacher (`[teacher] guidance`).
"""
import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODELS = ROOT / "www" / "models"
CM = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CM_BIN", str(ROOT / "target" / "release" / "cm"))
DIFFUSION = ("edm", "trigflow")


def card(name):
    return json.loads((MODELS / name / "config.json").read_text())


def teacher_of(c):
    cfg = c["provenance"]["config"]
    own = (cfg.get("teacher") or {}).get("path") or cfg.get("init_from")
    if own and card(pathlib.Path(own).name)["method"] in DIFFUSION:
        return pathlib.Path(own).name
    return f"{c['dataset']}-edm" + ("-28" if cfg["network"]["resolution"] == 28 else "")


rows = []
for name in json.loads((MODELS / "index.json").read_text())["models"]:
    c = card(name)
    if c["method"] in DIFFUSION or c["provenance"]["config"]["network"]["kind"] != "unet":
        continue
    teacher = teacher_of(c)
    guidance = (c["provenance"]["config"].get("teacher") or {}).get("guidance", 1.0)
    out = subprocess.run([CM, "trajectory", "--model", str(MODELS / name), "--teacher", str(MODELS / teacher),
                          "--n", "256", "--seed", "1", "--guidance", str(guidance)],
                         check=True, capture_output=True, text=True).stdout
    r = json.loads(out)
    rows.append((name, teacher, r, c["metrics"]["fid_1step"]))

sigmas = [l["sigma"] for l in rows[0][2]["levels"]]
head = " | ".join(f"{s:.3g}" for s in sigmas)
print(f"| model | ODE of | jump RMS from sigma = {head} | mean (teacher's D) | one-step FID-LeNet (card) |")
print("|---|---|" + "---|" * len(sigmas) + "---|---|")
order = lambda row: ("-28" in row[0], row[0].split("-")[0], row[2]["levels"][0]["jump_rms"])
for name, teacher, r, fid in sorted(rows, key=order):
    cells = []
    for i, l in enumerate(r["levels"]):
        v = f"{l['jump_rms']:.3f}" if l["jump_rms"] >= 0.01 else f"{l['jump_rms']:.4f}"
        cells.append(v + (f" ({l['denoised_rms']:.3f})" if i in (0, 4) else ""))
    print(f"| {name} | {teacher} | " + " | ".join(cells)
          + f" | {r['mean_jump_rms']:.3f} ({r['mean_denoised_rms']:.3f}) | {fid:.1f} |")
