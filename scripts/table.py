#!/usr/bin/env python3
"""The README's method table: one- and two-step quality of CT, iCT, ECT, CD, sCT, sCD and the diffusion teacher on
moons, MNIST and Fashion-MNIST, from the models trained with the committed recipes (configs/<dataset>-<method>.toml).

    python3 scripts/table.py            # from the bundled models in www/models (checked against the recipes)
    python3 scripts/table.py --train    # retrain every recipe into runs/table/ first (hours on a CPU)

Every number is read from a model card (`cm train` writes the 2D metrics; `cm eval --write-card` the image
ones); nothing is typed by hand. Before a bundled card is used, its recorded recipe is compared with the
committed recipe file, so a stale model cannot pass for the current recipe.
moons: sliced W2 to fresh data on 4096 samples (noise floor = two fresh data draws).
MNIST, Fashion-MNIST 16 px: FID-LeNet to the test split on 4096 samples (classifiers/<dataset>-16),
train-vs-test reference. `ict` and `ect` start from the EDM teacher's weights (init_from), `ict-scratch` from random ones;
`sct` and `scd` from the TrigFlow teacher's (`trigflow`, the same network), `sct-scratch` and `scd-scratch`
from random ones (`scd-scratch` distils the EDM teacher).
MNIST 28 px (`configs/mnist-<method>-28.toml`, rows "mnist 28 px"): the same metric with classifiers/mnist-28, so
its numbers compare only with each other. Class-conditional MNIST (`configs/mnist-<method>-cond.toml`, rows "mnist by
class"): samples drawn from every digit in turn, against the same test split.
Two steps use the card's tuned tau where it has one (`cm tune`, named in the row), else iCT's 0.821 (sCM's
t_mid = 1.1 for sct/scd); four steps the card's tuned list where it has one (marked "tuned"), else the geometric
spread around that default (`schedule::default_taus`).
"""
import json
import pathlib
import subprocess
import sys
import tomllib


def sig4(v):
    """Four significant digits, keeping the zeros that are significant (5.9998 -> 6.000, not 6)."""
    text = f"{v:.4g}"
    return f"{v:#.4g}" if "e" not in text and "." not in text and abs(float(text)) < 1000 else text


ROOT = pathlib.Path(__file__).resolve().parent.parent
METHODS = ["edm", "trigflow", "ct", "ict-scratch", "ict", "ect", "cd", "sct-scratch", "sct", "scd-scratch", "scd",
           "edm-28", "ict-28", "ect-28", "cd-28", "trigflow-cond", "sct-cond",
           "scd-cond"]
TEACHERS = ("edm", "trigflow")
DATASETS = {
    "moons": ("sliced W2", "sliced_w2"),
    "mnist": ("FID-LeNet", "fid"),
    "fashion-mnist": ("FID-LeNet", "fid"),
    "emoji": ("FID-LeNet", "fid"),
}


def recorded_matches(recipe: dict, recorded: dict, path: str = "") -> list:
    """Keys where the committed recipe and the card's resolved recipe differ (recipe keys only)."""
    bad = []
    for k, v in recipe.items():
        if k not in recorded:
            bad.append(path + k)
        elif isinstance(v, dict) and isinstance(recorded[k], dict):
            bad += recorded_matches(v, recorded[k], f"{path}{k}.")
        elif isinstance(v, float) or isinstance(recorded[k], float):
            if abs(float(v) - float(recorded[k])) > 1e-12 * max(1.0, abs(float(v))):
                bad.append(path + k)
        elif v != recorded[k]:
            bad.append(path + k)
    return bad


def base(method: str) -> str:
    """The method of a recipe name: `cd-28` (MNIST at 28 px) and `sct-cond` (class-conditional) are cd and sct."""
    return method.removesuffix("-28").removesuffix("-cond")


def cm(*args):
    binary = ROOT / "target/release/cm"
    cmd = [str(binary)] if binary.exists() else ["cargo", "run", "--release", "-q", "-p", "cm-trainer", "--"]
    subprocess.run(cmd + list(args), check=True, cwd=ROOT)


def model_dir(dataset: str, method: str, train: bool) -> pathlib.Path | None:
    name = f"{dataset}-{method}"
    recipe_path = ROOT / "configs" / f"{name}.toml"
    if not recipe_path.exists():
        return None
    if train:
        out = ROOT / "runs/table" / name
        cm("train", "--config", str(recipe_path), "--out", str(out), "--force")
        if dataset != "moons":
            eval_args = ["--teacher-nfe", "35"] if base(method) in TEACHERS else []
            cm("eval", "--model", str(out / "model"), "--n", "4096", "--write-card", *eval_args)
        return out / "model"
    bundled = ROOT / "www/models" / name
    card = bundled / "config.json"
    if not card.exists():
        return None
    recipe = tomllib.loads(recipe_path.read_text())
    recorded = json.loads(card.read_text()).get("provenance", {}).get("config", {})
    bad = recorded_matches(recipe, recorded)
    if bad:
        sys.exit(f"{card}: trained with a recipe that differs from {recipe_path} in {', '.join(bad)}; "
                 f"retrain it (python3 scripts/table.py --train) or restore the recipe")
    return bundled


def main():
    train = "--train" in sys.argv[1:]
    print("| dataset | metric | method | steps | 1 step | 2 steps | 4 steps | teacher, Heun 35 NFE | reference | train wall time |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for dataset, (metric, key) in DATASETS.items():
        for method in METHODS:
            if not (ROOT / "configs" / f"{dataset}-{method}.toml").exists():
                continue
            d = model_dir(dataset, method, train)
            label = f"{dataset} 28 px" if method.endswith("-28") else f"{dataset} by class" if method.endswith("-cond") \
                else dataset
            method = base(method)
            if d is None:
                print(f"| {label} | {metric} | {method} | – | not trained | | | | | |")
                continue
            c = json.loads((d / "config.json").read_text())
            m = c["metrics"]
            f = lambda k: sig4(m[k]) if k in m else "–"
            ref = f(f"{key}_noise_floor") if dataset == "moons" else f(f"{key}_reference")
            wall = c.get("provenance", {}).get("wall_time_s")
            wall = f"{wall / 60:.0f} min" if wall else "–"
            if method in TEACHERS:
                print(f"| {label} | {metric} | {method} (teacher) | {c['steps']} | | | | {f(key + '_heun35')} | {ref} | {wall} |")
            else:
                tuned = c.get("taus", {}).get("2")
                two = f(key + "_2step") + (f" (tau {tuned[0]:.3g}, `cm tune`)" if tuned else "")
                four = f(key + "_4step") + (" (tuned)" if "4" in c.get("taus", {}) and key + "_4step" in m else "")
                # A student of a guided teacher (`[teacher] guidance`) says so: it distils another ODE.
                w = (c.get("provenance", {}).get("config", {}).get("teacher") or {}).get("guidance", 1.0)
                method += f" (teacher guidance {w:g})" if w != 1.0 else ""
                print(f"| {label} | {metric} | {method} | {c['steps']} | {f(key + '_1step')} | {two} | {four} | | {ref} | {wall} |")


if __name__ == "__main__":
    main()
