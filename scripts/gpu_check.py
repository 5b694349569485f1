#!/usr/bin/env python3
"""The GPU check (run by scripts/gpu-check.sh on a lent GPU machine; see that script for the set-up).

1. Correctness, every method x every GPU backend: the MNIST recipes configs/mnist-{edm,ict,ect,cd,sct,scd}.toml
   trained for STEPS steps with the loss logged every step. Passes when the run exits 0, every loss is
   finite, the loss falls (mean of the last 20 steps below the mean of the first 20), and the first 3
   losses equal the CPU backend's for the same recipe and seed within RTOL (noise, data rows and levels are
   drawn on the host, so every backend sees the same numbers).
2. Speed: `cm bench --train` of the small U-Net (configs/mnist-ict-scratch.toml) and the 7 M-parameter one
   (bench/mnist-ict-unet7m.toml) on each backend, twice (cold, then with the kernel/autotune cache warm),
   and the JAX peer (bench/jax/unet_ict.py) on the same recipes on the same GPU: steps/s, cm/JAX, warm-up
   seconds, TFLOP/s (FLOPs per step as XLA counts the peer's identical step).
3. Peak GPU memory of each run (nvidia-smi, polled).

Writes $OUT/gpu-check.txt (a readable report, rewritten after every run) and $OUT/gpu-check.json, within
a time budget (GPU_CHECK_BUDGET_S, default 450 s): what does not fit is reported as skipped.
Exit status 1 when a check failed.

4. At the end, the kernel caches ($CM_CACHE/cubecl: compiled kernels and autotune decisions; $CM_CACHE/nv:
   the driver's) go to $OUT/gpu-cache.tar.xz (when under the 15 MiB a returned file may have), for the
   next GPU check to start from (scripts/gpu-check.sh says how it travels). The report says whether this
   run started from such a relay, so a "first run" time is read as cold or warm.
"""

import json
import math
import os
import pathlib
import re
import subprocess
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
CM = os.environ.get("CM_BIN", str(ROOT / "devbin" / "cm"))
OUT = pathlib.Path(os.environ.get("OUT", ROOT / "gpu-check-out"))
BUDGET = float(os.environ.get("GPU_CHECK_BUDGET_S", "450"))
QUICK = "--quick" in sys.argv
BACKENDS = os.environ.get("GPU_CHECK_BACKENDS", "cuda vulkan").split()
SPEED_BACKENDS = os.environ.get("GPU_CHECK_SPEED_BACKENDS", " ".join(BACKENDS)).split()
# GPU_CHECK_SPEED=0: no speed or sampling part (the method check only).
SPEED = os.environ.get("GPU_CHECK_SPEED", "1") != "0"
METHODS_SHARE = float(os.environ.get("GPU_CHECK_METHODS_SHARE", "0.5"))
# configs/<DATASET>-<method>.toml; `moons` makes a quick smoke test of the script itself on any machine.
DATASET = os.environ.get("GPU_CHECK_DATASET", "mnist")
ALL_METHODS = ["ict", "edm", "ect", "cd", "sct", "scd"]
# The methods with a recipe for DATASET: all of them on mnist; moons has no ECT recipe (noted in the report).
# GPU_CHECK_METHODS="sct scd" checks only those (a rerun of the ones that failed).
CHOSEN = os.environ.get("GPU_CHECK_METHODS", " ".join(ALL_METHODS)).split()
if unknown := [m for m in CHOSEN if m not in ALL_METHODS]:
    sys.exit(f"GPU_CHECK_METHODS: unknown method(s) {' '.join(unknown)}; expected some of {' '.join(ALL_METHODS)}")
METHODS = [m for m in CHOSEN if (ROOT / "configs" / f"{DATASET}-{m}.toml").exists()]
STEPS = 60 if QUICK else 200
# GPU_CHECK_STOP_AT=k: each backend run stops after its first k steps (of the STEPS-step recipe), so only
# the first losses' agreement with the CPU is judged, not the fall: `gpu-check.sh --software` on a
# software Vulkan, where a few hundred MNIST steps would take hours.
STOP_AT = int(os.environ.get("GPU_CHECK_STOP_AT", "0")) or None
# Seconds each method after a backend's first may take (the first may take the backend's share). On a GPU
# they find the net's kernels compiled and tuned by the first; on a software Vulkan the kernels only some
# methods use (the JVP of sCT/sCD, CD's teacher) still take minutes to compile and tune.
METHOD_TIMEOUT = float(os.environ.get("GPU_CHECK_METHOD_TIMEOUT", "120"))
RTOL = 2e-3
BENCH_STEPS = os.environ.get("GPU_CHECK_BENCH_STEPS", "50")
NETS = os.environ.get("GPU_CHECK_NETS", "small,7m").split(",")
# FP32 (non-tensor-core) peak of the cards we are lent, TFLOP/s (NVIDIA's data sheets, SXM parts).
PEAK_FP32 = {"H100": 67.0, "H200": 67.0}
START = time.time()
# Run folders stay out of $OUT: a lent machine returns at most 8 files from it, and those are the report,
# its JSON, the kernel profile and the cache relay.
RUNS = pathlib.Path(os.environ.get("GPU_CHECK_RUNS", "/tmp/cm-gpu-check-runs"))
report = {"gpu": None, "cache_at_start": None, "cache_saved": None, "methods": [], "agreement": [], "errors": [],
          "speed": [], "sampling": [],
          "profile": None,
          "notes": [f"no configs/{DATASET}-{m}.toml: {m} not checked" for m in CHOSEN if m not in METHODS]}
# The parts of the report whose rows pass or fail; the exit status is theirs.
VERDICT_PARTS = ("methods", "agreement", "errors")
CACHE = pathlib.Path(os.environ.get("CM_CACHE", pathlib.Path.home() / ".cache" / "cm"))
CACHE_PARTS = ["cubecl", "nv"]
RELAY_MAX = 15 * 2**20
# Each backend's part ends at its own deadline (an equal share of what is left when it starts, the
# kernel profile's reserve kept back), so a slow first backend cannot starve the second.
DEADLINE = [START + BUDGET]
PROFILE_RESERVE = 45 if os.environ.get("GPU_CHECK_PROFILE", "1") != "0" else 0


def left():
    return DEADLINE[0] - time.time()


def log(msg):
    print(f"[{time.time() - START:5.0f} s] {msg}", flush=True)


class GpuMemory:
    """Peak `memory.used` of GPU 0 while a command runs (MiB), polled every 0.25 s."""

    def __enter__(self):
        self.peak, self.stop = None, threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True)
        self.thread.start()
        return self

    def poll(self):
        while not self.stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                                      "-i", "0"], capture_output=True, text=True, timeout=5).stdout
                v = int(out.split()[0])
                self.peak = v if self.peak is None else max(self.peak, v)
            except Exception:
                pass
            self.stop.wait(0.25)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def run(cmd, timeout, env=None, unset=()):
    """(returncode or 'timeout', stdout, stderr tail, seconds, peak GPU MiB); `env` added to ours, `unset` taken out"""
    t = time.time()
    with GpuMemory() as mem:
        try:
            p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                               env={k: v for k, v in {**os.environ, **(env or {})}.items() if k not in unset})
            rc, out, err = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as e:
            rc, out, err = "timeout", (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or ""), ""
    log(f"{' '.join(str(c) for c in cmd[:6])}: rc={rc} in {time.time() - t:.1f} s, peak {mem.peak} MiB")
    return rc, out, err.strip().splitlines()[-3:], time.time() - t, mem.peak


def recipe_every_step(method, recipe=None):
    """configs/<DATASET>-<method>.toml (or `recipe`) with the loss logged every step and no samples or
    checkpoints."""
    text = (ROOT / (recipe or f"configs/{DATASET}-{method}.toml")).read_text()
    for key, value in [("log_every", 1), ("sample_every", 0), ("checkpoint_every", 0), ("eval_every", 0)]:
        text, n = re.subn(rf"(?m)^{key}\s*=.*$", f"{key} = {value}", text)
        if n == 0:
            text = f"{key} = {value}\n" + text
    path = RUNS / f"{DATASET}-{method}-every-step.toml"
    path.write_text(text)
    return path


def metric_rows(run_dir):
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [r for r in (json.loads(l) for l in path.read_text().splitlines() if l.strip()) if "loss" in r]


def train(method, backend, stop_at=None, timeout=150, recipe=None, steps=None):
    """Trains STEPS steps (the curriculum and lr follow them), or only the first `stop_at` of them.
    Returns (rc, losses, stderr tail, seconds, peak MiB, timing) where timing has the seconds to the first
    step (start-up, kernel compilation, autotune) and the steps/s over the last half of the run."""
    out = RUNS / f"{backend}-{method}"
    stop = ["--stop-at", str(stop_at)] if stop_at else []
    rc, _, err, secs, mem = run([CM, "train", "--config", str(recipe_every_step(method, recipe)), "--steps", str(steps or STEPS),
                                 "--backend", backend, "--out", str(out), "--force"] + stop,
                                timeout=min(timeout, max(left(), 1)))
    rows = metric_rows(out)
    timing = {}
    if rows and "elapsed_s" in rows[0]:
        timing["first_step_s"] = round(rows[0]["elapsed_s"], 1)
        half = rows[len(rows) // 2]
        if rows[-1]["step"] > half["step"] and rows[-1]["elapsed_s"] > half["elapsed_s"]:
            timing["steps_per_s"] = round((rows[-1]["step"] - half["step"]) / (rows[-1]["elapsed_s"] - half["elapsed_s"]), 2)
    return rc, [r["loss"] for r in rows], err, secs, mem, timing


CPU = {}


def cpu_references():
    for m in METHODS:
        if left() < 20:
            report["notes"].append(f"cpu reference for {m}: skipped (time budget)")
            continue
        rc, l, err, secs, _, _ = train(m, "cpu", stop_at=3)
        CPU[m] = l[:3] if rc == 0 else None
        if rc != 0:
            report["notes"].append(f"cpu reference for {m} failed: {rc} {err}")


def check_methods(b):
    cpu = CPU
    if True:
        for i, m in enumerate(METHODS):
            row = {"backend": b, "method": m}
            if left() < 30:
                row["result"] = "skipped (time budget)"
                report["methods"].append(row)
                continue
            # The first run on a backend compiles and autotunes every kernel of the net (minutes on a
            # fresh machine); the others find them in the on-disk cache, since every MNIST recipe uses
            # the same net and batch. The first may use the backend's share but 10 s for each other; the others
            # get METHOD_TIMEOUT.
            first = max(left() - 10 * (len(METHODS) - 1), 30)
            rc, l, err, secs, mem, timing = train(m, b, stop_at=STOP_AT, timeout=first if i == 0 else METHOD_TIMEOUT)
            row.update(rc=rc, seconds=round(secs, 1), peak_gpu_mib=mem, steps_logged=len(l), **timing)
            finite = bool(l) and all(math.isfinite(v) for v in l)
            k = min(20, len(l) // 2)
            falling = (finite and k > 0 and sum(l[-k:]) / k < sum(l[:k]) / k) if not STOP_AT else None
            ref = cpu.get(m)
            equal = None
            if ref and len(l) >= 3:
                rel = [abs(a - r) / max(abs(r), 1e-8) for a, r in zip(l[:3], ref)]
                row["first_losses"], row["cpu_first_losses"], row["max_rel_diff"] = l[:3], ref, max(rel)
                equal = max(rel) <= RTOL
            if l:
                k = min(20, len(l))
                row["loss_first20"], row["loss_last20"] = sum(l[:k]) / k, sum(l[-k:]) / k
            row["finite"], row["falling"], row["equals_cpu"] = finite, falling, equal
            ok = (rc == 0 and len(l) == (STOP_AT or STEPS) and finite and falling is not False
                  and (equal is True if STOP_AT else equal is not False))
            row["result"] = "pass" if ok else "FAIL"
            if not ok:
                row["stderr"] = err
            report["methods"].append(row)
            write()


# Sampling on each backend against the CPU's, with the bundled models of DATASET and one seed: the noise is
# drawn on the host, so the samples must agree (a consistency model's two steps, which add noise between
# them, and a diffusion model's ODE). Euler, not Heun: Heun's correction over the few, long steps of a
# short check multiplies rounding by about sigma_i / (2 sigma_{i+1}) (80 / 0.004 for 3 NFE, whose samples
# reach +-286), so it would test the step count, not the backend.
SAMPLE_CHECKS = [("ict", ["--steps", "2"]), ("edm", ["--teacher-nfe", "4", "--solver", "euler"])]
SAMPLE_ATOL = 1e-3
CPU_SAMPLES = {}


def sample(kind, args, backend, timeout):
    """(rc, values or None, stderr tail, seconds): 8 samples of www/models/<DATASET>-<kind> as one list."""
    out = RUNS / f"sample-{backend}-{kind}.csv"
    out.unlink(missing_ok=True)
    rc, _, err, secs, _ = run([CM, "sample", "--model", f"www/models/{DATASET}-{kind}", "--n", "8", "--seed", "1",
                               *args, "--backend", backend, "--out", str(out)], timeout=min(timeout, max(left(), 1)))
    if rc != 0 or not out.exists():
        return rc, None, err, secs
    return rc, [float(x) for line in out.read_text().splitlines()[1:] for x in line.split(",")], err, secs


def check_sample_agreement(b):
    for kind, args in SAMPLE_CHECKS:
        row = {"backend": b, "model": f"{DATASET}-{kind}", "args": " ".join(args)}
        report["agreement"].append(row)
        if left() < 30:
            row["result"] = "skipped (time budget)"
            continue
        if kind not in CPU_SAMPLES:
            CPU_SAMPLES[kind] = sample(kind, args, "cpu", 120)[1]
        rc, values, err, secs = sample(kind, args, b, METHOD_TIMEOUT)
        ref = CPU_SAMPLES[kind]
        row.update(rc=rc, seconds=round(secs, 1))
        if values and ref and len(values) == len(ref):
            row["max_abs_diff"] = max(abs(v - r) for v, r in zip(values, ref))
        ok = rc == 0 and row.get("max_abs_diff", math.inf) <= SAMPLE_ATOL
        row["result"] = "pass" if ok else "FAIL"
        if not ok:
            row["stderr"] = err if rc != 0 else ("no CPU reference" if not ref else "samples differ")
        write()


# GPU_CHECK_ALLOCATION_FAILURE=1 (`gpu-check.sh --software`): the moons iCT recipe at batch 300000 with one
# hidden layer of width 2048, whose activation (2.46 GB) is over lavapipe's 2 GiB buffer limit, must end in
# one error line that names the failed allocation and step 1 (cubecl reports a failed allocation only at the
# next read of data that depends on it; cm reads after the first step, so a run stops there and not at its
# next metrics line or checkpoint), exit status 1, not a panic's report. (A GPU's limits are its own, so this
# runs only on the software device.)
ALLOCATION_FAILURE = os.environ.get("GPU_CHECK_ALLOCATION_FAILURE", "0") == "1"


def check_allocation_failure(b):
    if not ALLOCATION_FAILURE:
        return
    row = {"backend": b, "what": "batch 300000 x hidden 2048 (moons iCT)"}
    report["errors"].append(row)
    if left() < 60:
        row["result"] = "skipped (time budget)"
        return
    text = (ROOT / "configs" / "moons-ict.toml").read_text()
    for key, value in [("batch", 300000), ("hidden", 2048), ("blocks", 1)]:
        text, n = re.subn(rf"(?m)^{key}\s*=.*$", f"{key} = {value}", text)
        assert n == 1, f"configs/moons-ict.toml: no single `{key} =` line"
    recipe = RUNS / "moons-ict-too-large.toml"
    recipe.write_text(text)
    rc, _, err, secs, _ = run([CM, "train", "--config", str(recipe), "--backend", b, "--stop-at", "3",
                               "--max-memory-gb", "1000", "--out", str(RUNS / f"{b}-too-large"), "--force"],
                              timeout=min(300, max(left(), 1)), unset=("RUST_BACKTRACE",))
    errors = [line for line in err if line.startswith("error:")]
    ok = (rc == 1 and len(errors) == 1 and err[-1] == errors[0]
          and errors[0].startswith(f"error: backend `{b}` failed at step 1: a GPU allocation failed"))
    row.update(rc=rc, seconds=round(secs, 1), stderr=err, result="pass" if ok else "FAIL")
    write()


def bench_cm(recipe, backend, label):
    rc, out, err, secs, mem = run([CM, "bench", "--train", recipe, "--backend", backend, "--steps", BENCH_STEPS,
                                   "--warmup", "10"], timeout=min(180, max(left(), 1)))
    try:
        j = json.loads(out)
    except Exception:
        return {"who": f"cm {backend}", "label": label, "rc": rc, "stderr": err, "seconds": round(secs, 1)}
    return {"who": f"cm {backend}", "label": label, "steps_per_s": j["steps_per_s"], "warmup_s": j["warmup_s"],
            "peak_gpu_mib": mem, "hardware": j.get("hardware"), "seconds": round(secs, 1)}


def bench_jax(recipe, label):
    rc, out, err, secs, mem = run([os.environ.get("JAX_PYTHON", sys.executable), "bench/jax/unet_ict.py", "--recipe", recipe,
                                   "--steps", BENCH_STEPS,
                                   "--warmup", "5", "--threads", str(os.cpu_count() or 1), "--json"],
                                  timeout=min(180, max(left(), 1)), env={"XLA_PYTHON_CLIENT_PREALLOCATE": "false"})
    try:
        j = json.loads(out.strip().splitlines()[-1])
    except Exception:
        return {"who": "jax", "label": label, "rc": rc, "stderr": err}
    return {"who": "jax", "label": label, "steps_per_s": j["steps_per_s"], "warmup_s": j.get("warmup_s"),
            "flops_per_step": j.get("flops_per_step"), "device": j.get("device"), "peak_gpu_mib": mem,
            "params": j.get("params"), "seconds": round(secs, 1)}


JAX = {}


def check_speed(b):
    if not SPEED:
        return
    nets = {"small": ("small U-Net 0.3 M, 16 px, batch 64", "configs/mnist-ict-scratch.toml"),
            "7m": ("U-Net 7.0 M, 28 px, batch 128", "bench/mnist-ict-unet7m.toml")}
    for label, recipe in [nets[n] for n in NETS]:
        if left() < 40:
            report["speed"].append({"who": f"cm {b}", "label": label, "result": "skipped (time budget)"})
            continue
        if label not in JAX:
            JAX[label] = bench_jax(recipe, label)
            report["speed"].append(JAX[label])
            write()
        jax = JAX[label]
        # First use of the net on this backend: a training run logging every step (so a run cut short by
        # the budget still tells how far it got): seconds to the first step (kernel compilation and
        # autotune), then steps/s. Then `cm bench` with the kernels cached.
        rc, l, err, secs, mem, timing = train(f"speed-{label[:5]}", b, timeout=max(left() - 15, 20), recipe=recipe,
                                              steps=int(BENCH_STEPS) + 20)
        row = {"who": f"cm {b}", "label": label, "cache": "first run (cm train)", "rc": rc, "steps_logged": len(l),
               "seconds": round(secs, 1), "peak_gpu_mib": mem, **timing}
        if "steps_per_s" in timing:
            row["warmup_s"] = timing["first_step_s"]
            if "steps_per_s" in jax:
                row["cm_over_jax"] = timing["steps_per_s"] / jax["steps_per_s"]
            if jax.get("flops_per_step"):
                row["tflops"] = timing["steps_per_s"] * jax["flops_per_step"] / 1e12
        report["speed"].append(row)
        write()
        if True:
            for attempt in ["warm cache"]:
                if left() < 30:
                    report["speed"].append({"who": f"cm {b}", "label": label, "result": "skipped (time budget)"})
                    continue
                row = bench_cm(recipe, b, label)
                row["cache"] = attempt
                if "steps_per_s" in row and "steps_per_s" in jax:
                    row["cm_over_jax"] = row["steps_per_s"] / jax["steps_per_s"]
                    if jax.get("flops_per_step"):
                        row["tflops"] = row["steps_per_s"] * jax["flops_per_step"] / 1e12
                report["speed"].append(row)
                write()


def check_sampling(b):
    """Samples/s of a bundled image model (one, two and four steps, 4096 samples) on backend b."""
    model = "www/models/mnist-ict"
    if not SPEED:
        return
    if left() < 25:
        report["sampling"].append({"backend": b, "model": model, "result": "skipped (time budget)"})
        return
    rc, out, err, secs, mem = run([CM, "bench", "--model", model, "--backend", b, "--n", "4096"],
                                  timeout=min(90, max(left(), 1)))
    try:
        j = json.loads(out)
        row = {"backend": b, "model": model, "peak_gpu_mib": mem, "seconds": round(secs, 1),
               **{k.replace("_us_per_sample", "_samples_per_s"): 1e6 / v for k, v in j.items()
                  if k.endswith("_us_per_sample")}}
    except Exception:
        row = {"backend": b, "model": model, "rc": rc, "stderr": err}
    report["sampling"].append(row)
    write()


def kernel_profile(b):
    """cubecl's per-kernel profile (basic level: each kernel timed) of 10 training steps of the 7 M net:
    where the GPU time goes. A cubecl.toml in a folder of its own turns it on for that run only."""
    if PROFILE_RESERVE == 0 or left() < 20:
        return
    d = RUNS / f"profile-{b}"
    d.mkdir(parents=True, exist_ok=True)
    logf = OUT / f"kernel-profile-{b}.log"
    (d / "cubecl.toml").write_text(f'[profiling.logger]\nlevel = "basic"\nfile = "{logf}"\nappend = false\n')
    recipe = ROOT / "bench" / "mnist-ict-unet7m.toml"
    t = time.time()
    try:
        p = subprocess.run([CM, "train", "--config", str(recipe), "--steps", "1000", "--stop-at", "10", "--backend", b,
                            "--out", str(d / "run"), "--force"], cwd=d, capture_output=True, text=True,
                           timeout=max(left(), 1))
        rc = p.returncode
    except subprocess.TimeoutExpired:
        rc = "timeout"
    log(f"kernel profile on {b}: rc={rc} in {time.time() - t:.1f} s")
    if logf.exists() and logf.stat().st_size > 4_000_000:
        data = logf.read_bytes()
        logf.write_bytes(data[:1_000_000] + b"\n[... cut ...]\n" + data[-2_000_000:])
    report["profile"] = {"backend": b, "rc": rc, "log": logf.name if logf.exists() else None}
    write()


def cache_files():
    """(files, bytes) under the relayed cache folders."""
    n = size = 0
    for part in CACHE_PARTS:
        for f in (CACHE / part).rglob("*"):
            if f.is_file():
                n, size = n + 1, size + f.stat().st_size
    return n, size


def save_cache():
    """$OUT/gpu-cache.tar.xz of the kernel caches, when it fits what a returned file may weigh."""
    parts = [p for p in CACHE_PARTS if (CACHE / p).is_dir()]
    if not parts:
        report["cache_saved"] = "nothing to save"
        return
    dest = OUT / "gpu-cache.tar.xz"
    n, size = cache_files()
    try:
        subprocess.run(["tar", "-cf", str(dest), "-I", "xz -T0 -6", "-C", str(CACHE)] + parts, check=True,
                       capture_output=True, timeout=120)
    except Exception as e:
        report["cache_saved"] = f"tar failed: {e}"
        dest.unlink(missing_ok=True)
        return
    packed = dest.stat().st_size
    if packed > RELAY_MAX:
        dest.unlink()
        report["cache_saved"] = f"not saved: {n} files, {size / 2**20:.1f} MiB, {packed / 2**20:.1f} MiB packed (over 15 MiB)"
    else:
        report["cache_saved"] = f"{dest.name}: {n} files, {size / 2**20:.1f} MiB, {packed / 2**20:.1f} MiB packed"


def gpu_info():
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception as e:
        out = f"nvidia-smi failed: {e}"
        # No NVIDIA tools (gpu-check.sh --software): the Vulkan device, where vulkaninfo can tell.
        try:
            summary = subprocess.run(["vulkaninfo", "--summary"], capture_output=True, text=True, timeout=20).stdout
            names = re.findall(r"deviceName\s*=\s*(.+)", summary)
            if names:
                out = "Vulkan: " + "; ".join(n.strip() for n in names)
        except Exception:
            pass
    report["gpu"] = out
    return out


def write():
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "gpu-check.json").write_text(json.dumps(report, indent=1))
    peak = next((v for k, v in PEAK_FP32.items() if k in (report["gpu"] or "")), None)
    lines = [f"GPU: {report['gpu']}", f"elapsed {time.time() - START:.0f} s of {BUDGET:.0f} s; steps {STEPS}",
             f"kernel caches at start: {report['cache_at_start']}; saved: {report['cache_saved']}", "",
             "method x backend: result, rc, seconds, steps, finite, falling (first20 -> last20), first 3 losses vs CPU (max rel diff), peak MiB"]
    for r in report["methods"]:
        if "rc" not in r:
            lines.append(f"  {r['backend']:7} {r['method']:4} {r['result']}")
            continue
        fl = f"{r.get('loss_first20', float('nan')):.4g} -> {r.get('loss_last20', float('nan')):.4g}"
        eq = f"{r.get('max_rel_diff', float('nan')):.2e}" if "max_rel_diff" in r else "no cpu reference"
        lines.append(f"  {r['backend']:7} {r['method']:4} {r['result']:4} rc={r['rc']} {r['seconds']}s "
                     f"{r['steps_logged']} finite={r['finite']} falling={r['falling']} ({fl}) cpu-diff {eq} "
                     f"{r['peak_gpu_mib']} MiB, first step after {r.get('first_step_s')} s, {r.get('steps_per_s')} steps/s"
                     + (f"  stderr: {r['stderr']}" if "stderr" in r else ""))
    lines += ["", f"sampling vs CPU (8 samples, seed 1; bar {SAMPLE_ATOL} absolute): backend, model, result, max abs diff"]
    for r in report["agreement"]:
        lines.append(f"  {r['backend']:7} {r['model']} {r['args']}: {r['result']}"
                     + (f", max abs diff {r['max_abs_diff']:.2e}" if "max_abs_diff" in r else "")
                     + (f" in {r['seconds']} s" if "seconds" in r else "")
                     + (f"  stderr: {r['stderr']}" if "stderr" in r else ""))
    if report["errors"]:
        lines += ["", "errors: backend, what, result, stderr"]
    for r in report["errors"]:
        lines.append(f"  {r['backend']:7} {r['what']}: {r['result']}" + (f", rc={r['rc']}, stderr: {r['stderr']}" if "rc" in r else ""))
    for part in (p for p in VERDICT_PARTS if report[p]):
        verdicts = [r["result"].split()[0] for r in report[part]]
        lines.append(f"{part}: {verdicts.count('pass')} pass, {verdicts.count('FAIL')} FAIL, "
                     f"{verdicts.count('skipped')} skipped (time budget)")
    if SPEED:
        lines += speed_lines(peak)
    if report["profile"]:
        lines.append(f"kernel profile: {report['profile']}")
    lines += [""] + report["notes"]
    (OUT / "gpu-check.txt").write_text("\n".join(lines) + "\n")


def speed_lines(peak):
    lines = ["", "speed: who, net, cache, steps/s, cm/jax, warm-up s, TFLOP/s" + (f" (of {peak} FP32 peak)" if peak else "")]
    for r in report["speed"]:
        if "steps_per_s" not in r:
            lines.append(f"  {r.get('who', '')} {r['label']}: {r.get('result') or ('rc=' + str(r.get('rc')) + ' ' + str(r.get('stderr')))}")
            continue
        tf = r.get("tflops") or (r["steps_per_s"] * r["flops_per_step"] / 1e12 if r.get("flops_per_step") else None)
        lines.append(f"  {r['who']:10} {r['label']}, {r.get('cache', r.get('device', ''))}: {r['steps_per_s']:.2f} steps/s"
                     + (f", cm/jax {r['cm_over_jax']:.2f}" if "cm_over_jax" in r else "")
                     + (f", warm-up {r['warmup_s']:.1f} s" if r.get("warmup_s") is not None else "")
                     + (f", {tf:.2f} TFLOP/s" + (f" ({100 * tf / peak:.1f} %)" if peak else "") if tf else "")
                     + f", peak {r.get('peak_gpu_mib')} MiB")
    lines += ["", "sampling (bundled mnist-ict, 4096 samples): samples/s at 1 / 2 / 4 steps"]
    for r in report["sampling"]:
        if "1step_samples_per_s" in r:
            lines.append(f"  {r['backend']:7} {r['1step_samples_per_s']:.0f} / {r['2step_samples_per_s']:.0f} / "
                         f"{r['4step_samples_per_s']:.0f} samples/s, peak {r['peak_gpu_mib']} MiB")
        else:
            lines.append(f"  {r['backend']:7} {r.get('result') or ('rc=' + str(r.get('rc')) + ' ' + str(r.get('stderr')))}")
    return lines


def main():
    RUNS.mkdir(parents=True, exist_ok=True)
    print(gpu_info(), flush=True)
    n, size = cache_files()
    report["cache_at_start"] = f"{n} files, {size / 2**20:.1f} MiB" + (" (relayed from devbin/gpu-cache.tar.xz)" if
                                                                       (ROOT / "devbin" / "gpu-cache.tar.xz").exists() else "")
    try:
        checks()
    finally:
        save_cache()
        write()
    print((OUT / "gpu-check.txt").read_text())
    # A method skipped for time is not a pass: the check is incomplete.
    checked = [r for part in VERDICT_PARTS for r in report[part]]
    sys.exit(0 if checked and all(r.get("result") == "pass" for r in checked) else 1)


def checks():
    DEADLINE[0] = START + BUDGET - PROFILE_RESERVE
    cpu_references()
    # Methods on every backend first (METHODS_SHARE of the time left), then speed and sampling on
    # SPEED_BACKENDS; within a phase each backend gets an equal share of what is left when it starts.
    end = time.time() + METHODS_SHARE * (START + BUDGET - PROFILE_RESERVE - time.time())
    for i, b in enumerate(BACKENDS):
        DEADLINE[0] = time.time() + (end - time.time()) / (len(BACKENDS) - i)
        log(f"methods on {b} until +{DEADLINE[0] - START:.0f} s")
        check_methods(b)
        check_sample_agreement(b)
        check_allocation_failure(b)
    for i, b in enumerate(SPEED_BACKENDS):
        DEADLINE[0] = time.time() + (START + BUDGET - PROFILE_RESERVE - time.time()) / (len(SPEED_BACKENDS) - i)
        log(f"speed on {b} until +{DEADLINE[0] - START:.0f} s")
        check_speed(b)
        check_sampling(b)
    DEADLINE[0] = START + BUDGET
    if BACKENDS:
        kernel_profile(BACKENDS[0])


if __name__ == "__main__":
    main()
