#!/usr/bin/env python3
"""JAX/flax peer of the Rust iCT training step of a cm recipe (default configs/mnist-ict-scratch.toml).

Mirrors core/src/net/unet.rs (U-Net), core/src/net/embedding.rs (Fourier embedding),
core/src/param.rs (consistency scalings), core/src/objective/ct.rs (iCT loss), core/src/distance.rs
(pseudo-Huber) and burn's Adam (eps 1e-5) at one training step, with N = 321 Karras levels (the end
of the recipe's curriculum). Data is random in [-1, 1]; only the cost of the step matters here.

    python unet_ict.py --threads 1 --steps 30
    python unet_ict.py --threads 2 --steps 30 --json
    python unet_ict.py --recipe bench/unet-7m-ict.toml --steps 30 --json    # on a GPU where JAX has one
"""

import argparse
import math
import os
import sys


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="configs/mnist-ict-scratch.toml",
                   help="the cm recipe whose U-Net, embedding scale, level distribution, lr and batch to use")
    p.add_argument("--threads", type=int, default=1, help="CPU cores to use (1 = single-threaded XLA)")
    p.add_argument("--steps", type=int, default=30, help="timed training steps (after warm-up)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (the first one compiles)")
    p.add_argument("--batch", type=int, default=None, help="default: the recipe's")
    p.add_argument("--levels", type=int, default=None, help="Karras grid size N (default: the recipe's s1 + 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--check", action="store_true",
                   help="also run --steps steps on one fixed batch and noise draw and print the losses")
    p.add_argument("--json", action="store_true", help="print one JSON line instead of text")
    return p.parse_args()


ARGS = parse_args()


def restrict_cpu(threads):
    """Must run before jax is imported: XLA reads XLA_FLAGS and sizes its thread pools at start."""
    if threads < 1:
        sys.exit("--threads must be >= 1")
    if threads == 1:
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()
    allowed = sorted(os.sched_getaffinity(0))
    if threads > len(allowed):
        sys.exit(f"--threads {threads} but only {len(allowed)} cores are available: {allowed}")
    os.sched_setaffinity(0, allowed[:threads])


restrict_cpu(ARGS.threads)

import json  # noqa: E402
import time  # noqa: E402

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

# ---- the recipe (--recipe, a cm TOML recipe of an iCT U-Net with a Fourier embedding) ----
import tomllib  # noqa: E402

with open(ARGS.recipe, "rb") as f:
    RECIPE = tomllib.load(f)
_net, _noise, _ct = RECIPE["network"], RECIPE["noise"], RECIPE["ct"]
if _net.get("kind") != "unet" or _net.get("embedding", {}).get("kind") != "fourier" or RECIPE.get("method") != "ict":
    sys.exit(f"{ARGS.recipe}: the peer mirrors an iCT U-Net with a Fourier embedding")
CHANNELS, RESOLUTION = _net["channels"], _net["resolution"]
BASE, MULT, RES_BLOCKS = _net["base"], tuple(_net["mult"]), _net["res_blocks"]
ATTENTION, GROUPS, EMB_DIM = tuple(_net["attention"]), _net["groups"], _net["emb_dim"]
# cm's scale multiplies c_noise = ln(sigma)/4; the CM code's multiplies 1000 c_noise.
FOURIER_SCALE = _net["embedding"]["scale"] / 1000.0
SIGMA_MIN, SIGMA_MAX, SIGMA_DATA, RHO = _noise["sigma_min"], _noise["sigma_max"], _noise["sigma_data"], 7.0
P_MEAN, P_STD = _ct["index_sampling"]["p_mean"], _ct["index_sampling"]["p_std"]
LR = RECIPE["optimizer"]["lr"]
if ARGS.batch is None:
    ARGS.batch = RECIPE["batch"]
if ARGS.levels is None:
    ARGS.levels = _ct["curriculum"]["s1"] + 1
DIM = CHANNELS * RESOLUTION * RESOLUTION
GN_EPS = 1e-5  # burn GroupNormConfig default
ADAM_EPS = 1e-5  # burn AdamConfig default (optax's is 1e-8)


# ---- initialisers: burn's KaimingUniform{gain: 1/sqrt(3)} is U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for
# weights and for biases alike; zero-initialised layers are zero in both. ----
def _fan_in(shape):
    return int(np.prod(shape[:-1]))  # flax kernels are [..., in, out]


def kernel_init(key, shape, dtype=jnp.float32):
    b = 1.0 / math.sqrt(_fan_in(shape))
    return jax.random.uniform(key, shape, dtype, -b, b)


def bias_init_for(fan_in):
    def init(key, shape, dtype=jnp.float32):
        b = 1.0 / math.sqrt(fan_in)
        return jax.random.uniform(key, shape, dtype, -b, b)
    return init


zeros = nn.initializers.zeros


def conv3(cin, cout, stride=1, zero=False, name=None):
    """3x3 conv, padding 1 (unet.rs `conv`)."""
    return nn.Conv(cout, (3, 3), strides=(stride, stride), padding=((1, 1), (1, 1)),
                   kernel_init=zeros if zero else kernel_init,
                   bias_init=zeros if zero else bias_init_for(9 * cin), name=name)


def conv1(cin, cout, zero=False, name=None):
    return nn.Conv(cout, (1, 1), kernel_init=zeros if zero else kernel_init,
                   bias_init=zeros if zero else bias_init_for(cin), name=name)


def linear(cin, cout, name=None):
    return nn.Dense(cout, kernel_init=kernel_init, bias_init=bias_init_for(cin), name=name)


def group_norm(name=None):
    return nn.GroupNorm(num_groups=GROUPS, epsilon=GN_EPS, name=name)


class Attention(nn.Module):
    """Single head over H·W positions, residual, zero-initialised projection, output / sqrt(2)."""
    c: int

    @nn.compact
    def __call__(self, x):  # [B, H, W, C]
        b, h, w, c = x.shape
        qkv = conv1(c, 3 * c, name="qkv")(group_norm("norm")(x)).reshape(b, h * w, 3 * c)
        q, k, v = qkv[..., :c], qkv[..., c:2 * c], qkv[..., 2 * c:]
        weights = jax.nn.softmax(jnp.einsum("bqc,bkc->bqk", q, k) / math.sqrt(c), axis=-1)
        a = jnp.einsum("bqk,bkc->bqc", weights, v).reshape(b, h, w, c)
        return (x + conv1(c, c, zero=True, name="proj")(a)) * (1.0 / math.sqrt(2.0))


class ResBlock(nn.Module):
    cin: int
    cout: int
    attention: bool

    @nn.compact
    def __call__(self, x, temb):  # x [B, H, W, cin], temb [B, 4·base]
        c = self.cout
        a = conv3(self.cin, c, name="conv_1")(nn.silu(group_norm("norm_1")(x)))
        st = linear(temb.shape[-1], 2 * c, name="time")(nn.silu(temb))[:, None, None, :]
        scale, shift = st[..., :c], st[..., c:]
        a = nn.silu(group_norm("norm_2")(a) * (scale + 1.0) + shift)  # dropout 0 in the recipe
        a = conv3(c, c, zero=True, name="conv_2")(a)
        skip = conv1(self.cin, c, name="skip")(x) if self.cin != c else x
        y = (skip + a) * (1.0 / math.sqrt(2.0))
        return Attention(c, name="attention")(y) if self.attention else y


class UNet(nn.Module):
    """`F(x, c_noise)`; `x: [B, C·H·W]` (channel-major rows, as in Rust), `c_noise: [B]`."""

    @nn.compact
    def __call__(self, x, c_noise):
        b = x.shape[0]
        temb = 4 * BASE
        # Fourier features: fixed frequencies 2π·scale·b, b ~ N(0, 1), not parameters (embedding.rs).
        freqs = 2.0 * math.pi * FOURIER_SCALE * np.random.default_rng(ARGS.seed).standard_normal(EMB_DIM // 2)
        angle = c_noise[:, None] * jnp.asarray(freqs, jnp.float32)[None, :]
        emb = jnp.concatenate([jnp.cos(angle), jnp.sin(angle)], axis=1)
        emb = linear(temb, temb, name="time_2")(nn.silu(linear(EMB_DIM, temb, name="time_1")(emb)))

        h = x.reshape(b, CHANNELS, RESOLUTION, RESOLUTION).transpose(0, 2, 3, 1)  # NCHW -> NHWC
        h = conv3(CHANNELS, BASE, name="input")(h)
        skips, widths = [h], [BASE]
        cin, res, levels = BASE, RESOLUTION, len(MULT)
        for l, m in enumerate(MULT):
            cout = BASE * m
            for i in range(RES_BLOCKS):
                h = ResBlock(cin, cout, res in ATTENTION, name=f"down_{l}_{i}")(h, emb)
                cin = cout
                skips.append(h)
                widths.append(cin)
            if l + 1 < levels:
                h = conv3(cin, cin, stride=2, name=f"down_{l}_conv")(h)
                res //= 2
                skips.append(h)
                widths.append(cin)
        h = ResBlock(cin, cin, True, name="mid_1")(h, emb)
        h = ResBlock(cin, cin, False, name="mid_2")(h, emb)
        for l in reversed(range(levels)):
            cout = BASE * MULT[l]
            for i in range(RES_BLOCKS + 1):
                skip = skips.pop()
                assert skip.shape[-1] == widths.pop()
                h = ResBlock(cin + skip.shape[-1], cout, res in ATTENTION, name=f"up_{l}_{i}")(
                    jnp.concatenate([h, skip], axis=-1), emb)
                cin = cout
            if l > 0:
                h = jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)  # nearest ×2
                h = conv3(cin, cin, name=f"up_{l}_conv")(h)
                res *= 2
        assert not skips
        h = conv3(cin, CHANNELS, zero=True, name="output")(nn.silu(group_norm("out_norm")(h)))
        return h.transpose(0, 3, 1, 2).reshape(b, DIM)  # NHWC -> NCHW rows


def hand_count():
    """Parameter count of unet.rs's `UNetConfig::init` for the recipe, layer by layer (no flax)."""
    conv3n = lambda i, o: 9 * i * o + o
    lin = lambda i, o: i * o + o
    gn = lambda c: 2 * c
    temb = 4 * BASE

    def block(i, o, att):
        n = gn(i) + conv3n(i, o) + lin(temb, 2 * o) + gn(o) + conv3n(o, o) + (i * o + o if i != o else 0)
        return n + (gn(o) + (3 * o * o + 3 * o) + (o * o + o) if att else 0)

    total = lin(EMB_DIM, temb) + lin(temb, temb) + conv3n(CHANNELS, BASE)
    widths, cin, res = [BASE], BASE, RESOLUTION
    for l, m in enumerate(MULT):
        for _ in range(RES_BLOCKS):
            total += block(cin, BASE * m, res in ATTENTION)
            cin = BASE * m
            widths.append(cin)
        if l + 1 < len(MULT):
            total += conv3n(cin, cin)
            res //= 2
            widths.append(cin)
    total += block(cin, cin, True) + block(cin, cin, False)
    for l in reversed(range(len(MULT))):
        for _ in range(RES_BLOCKS + 1):
            total += block(cin + widths.pop(), BASE * MULT[l], res in ATTENTION)
            cin = BASE * MULT[l]
        if l > 0:
            total += conv3n(cin, cin)
            res *= 2
    return total + gn(cin) + conv3n(cin, CHANNELS)


# ---- consistency parameterisation (param.rs, Parameterisation::Consistency) ----
def consistency_fn(net, params, x, sigma):  # x [B, D], sigma [B]
    sd, s = SIGMA_DATA, sigma - SIGMA_MIN
    c_skip = sd * sd / (s * s + sd * sd)
    c_out = sd * s / jnp.sqrt(sd * sd + sigma * sigma)
    c_in = 1.0 / jnp.sqrt(sigma * sigma + sd * sd)
    c_noise = 0.25 * jnp.log(sigma)
    f = net.apply(params, x * c_in[:, None], c_noise)
    return x * c_skip[:, None] + f * c_out[:, None]


# ---- Karras grid and iCT's discretised lognormal over its intervals (schedule.rs), float64 on the host ----
def karras(n):
    lo, hi = SIGMA_MIN ** (1 / RHO), SIGMA_MAX ** (1 / RHO)
    s = [(lo + i / (n - 1) * (hi - lo)) ** RHO for i in range(n)]
    s[0], s[-1] = SIGMA_MIN, SIGMA_MAX
    return np.array(s)


def lognormal_index_cum(sigmas):
    cdf = lambda s: math.erf((math.log(s) - P_MEAN) / (math.sqrt(2.0) * P_STD))
    w = np.array([cdf(b) - cdf(a) for a, b in zip(sigmas[:-1], sigmas[1:])])
    return np.cumsum(w / w.sum())


def make_step(net, opt, n_levels, batch):
    sigmas_np = karras(n_levels)
    sigmas = jnp.asarray(sigmas_np, jnp.float32)
    cum = jnp.asarray(lognormal_index_cum(sigmas_np), jnp.float32)
    c = 0.00054 * math.sqrt(DIM)  # pseudo-Huber constant (distance.rs)

    def loss_fn(params, x0, key):
        k_idx, k_z = jax.random.split(key)
        u = jax.random.uniform(k_idx, (batch,))
        idx = jnp.minimum(jnp.searchsorted(cum, u, side="right"), n_levels - 2)  # n in 0..N-2
        s_lo, s_hi = sigmas[idx], sigmas[idx + 1]
        z = jax.random.normal(k_z, x0.shape)
        x_hi = x0 + z * s_hi[:, None]
        x_lo = x0 + z * s_lo[:, None]
        f_student = consistency_fn(net, params, x_hi, s_hi)
        f_target = jax.lax.stop_gradient(consistency_fn(net, params, x_lo, s_lo))
        sq = jnp.sum((f_student - f_target) ** 2, axis=1)
        dist = jnp.sqrt(sq + c * c) - c
        return jnp.mean(dist * (1.0 / (s_hi - s_lo)))

    @jax.jit
    def step(params, opt_state, x0, key):
        loss, grads = jax.value_and_grad(loss_fn)(params, x0, key)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def main():
    key = jax.random.PRNGKey(ARGS.seed)
    k_init, k_data, k_steps = jax.random.split(key, 3)
    net = UNet()
    x0 = jax.random.uniform(k_data, (ARGS.batch, DIM), jnp.float32, -1.0, 1.0)
    params0 = net.init(k_init, x0[:1], jnp.zeros((1,), jnp.float32))
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(params0))
    expected = hand_count()
    if n_params != expected:
        sys.exit(f"parameter count {n_params} != unet.rs hand count {expected}")
    opt = optax.adam(LR, b1=0.9, b2=0.999, eps=ADAM_EPS)
    step = make_step(net, opt, ARGS.levels, ARGS.batch)

    params, opt_state = params0, opt.init(params0)
    keys = jax.random.split(k_steps, ARGS.warmup + ARGS.steps)
    t_compile = time.perf_counter()
    for i in range(ARGS.warmup):
        params, opt_state, loss = step(params, opt_state, x0, keys[i])
    loss.block_until_ready()
    warm_s = time.perf_counter() - t_compile
    t0 = time.perf_counter()
    for i in range(ARGS.warmup, ARGS.warmup + ARGS.steps):
        params, opt_state, loss = step(params, opt_state, x0, keys[i])
    jax.block_until_ready((params, loss))
    secs = time.perf_counter() - t0
    rate = ARGS.steps / secs
    # FLOPs of one training step as XLA counts them (forward, backward, target pass, Adam): the same
    # network and step as cm's, so it also converts cm's steps/s into FLOP/s.
    try:
        cost = step.lower(params0, opt.init(params0), x0, keys[0]).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        flops = float(cost["flops"])
    except Exception:  # cost analysis is best-effort across jax versions
        flops = None

    losses = None
    if ARGS.check:  # same batch, same noise and levels every step: the loss must fall
        params, opt_state, fixed = params0, opt.init(params0), keys[0]
        losses = []
        for _ in range(ARGS.steps):
            params, opt_state, loss = step(params, opt_state, x0, fixed)
            losses.append(float(loss))
        if not all(math.isfinite(v) for v in losses) or not losses[-1] < losses[0]:
            sys.exit(f"sanity check failed: losses {losses}")

    if ARGS.json:
        line = {"threads": ARGS.threads, "batch": ARGS.batch, "steps_per_s": rate, "params": n_params,
                "warmup_s": warm_s, "flops_per_step": flops, "device": str(jax.devices()[0]),
                "jax": jax.__version__}
        if losses is not None:
            line["check_losses"] = [losses[0], losses[-1]]
        print(json.dumps(line))
    else:
        print(f"params {n_params} (unet.rs hand count {expected}); jax {jax.__version__}, "
              f"flax, optax; threads {ARGS.threads}, cores {sorted(os.sched_getaffinity(0))}")
        print(f"warm-up {ARGS.warmup} steps (with compilation) {warm_s:.1f} s")
        print(f"{ARGS.steps} steps, batch {ARGS.batch}, N {ARGS.levels}: {secs:.2f} s, {rate:.3f} steps/s")
        if losses is not None:
            print("fixed-batch losses: " + " ".join(f"{v:.4f}" for v in losses))


if __name__ == "__main__":
    main()
