//! cm patch (not upstream; see CM-PATCH.md at the crate root): group normalisation fused with a
//! per-sample affine map and an optional SiLU, forward and gradient, for f32 tensors.
//!
//! For `x` `[B, C, L]` (any trailing dimensions flattened into `L`), `G` groups of `C / G` channels,
//! per-channel `gamma`, `beta` `[C]` and per-sample, per-channel `s`, `t` `[B, C]`:
//!
//! ```text
//! mu_bg, rstd_bg = mean and 1 / sqrt(var + eps) of x over group g of sample b (biased variance)
//! x̂ = (x - mu) rstd        n = x̂ gamma_c + beta_c        z = n s_bc + t_bc        y = act(z)
//! ```
//!
//! with `act` the identity or SiLU `z sigmoid(z)`. This is a U-Net block's `GroupNorm -> SiLU` and its
//! adaptive `GroupNorm · (1 + scale) + shift -> SiLU` in one pass over the activations instead of a
//! dozen element-wise operations each way. The gradient, for `g = dL/dy` and `g_z = g act'(z)`:
//!
//! ```text
//! dt_bc = Σ_l g_z                 ds_bc = gamma_c Σ_l g_z x̂ + beta_c Σ_l g_z
//! dbeta_c = Σ_b s_bc Σ_l g_z      dgamma_c = Σ_b s_bc Σ_l g_z x̂
//! g_x̂ = g_z s_bc gamma_c          dx = rstd (g_x̂ - mean_g(g_x̂) - x̂ mean_g(g_x̂ x̂))
//! ```
//!
//! The forward pass returns `(mu, rstd)` per sample and group (`[B, G, 2]`) for the gradient, which
//! recomputes `z` from `x` rather than storing it. Sums over samples run in a fixed order, so no result
//! depends on the thread count.

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::{DType, TensorMetadata};
use burn_std::Bytes;

use crate::cm_fast::sigmoid;
use crate::{FlexTensor, Layout};

/// The shape of a fused group norm: `batch` samples of `channels` channels of `len` values each.
#[derive(Clone, Copy, Debug)]
struct Dims {
    batch: usize,
    channels: usize,
    len: usize,
    groups: usize,
}

impl Dims {
    fn new(x: &FlexTensor, groups: usize) -> Self {
        let dims = x.shape();
        assert!(dims.num_dims() >= 2, "group norm: input of rank {} (expected >= 2)", dims.num_dims());
        let (batch, channels) = (dims[0], dims[1]);
        let len = dims.iter().skip(2).product::<usize>();
        assert!(
            groups > 0 && channels % groups == 0,
            "group norm: {channels} channels are not divisible into {groups} groups"
        );
        Dims { batch, channels, len, groups }
    }

    fn per_group(&self) -> usize {
        self.channels / self.groups
    }
}

/// `x` as contiguous f32 with `n` elements.
fn f32_input(t: FlexTensor, what: &str, n: usize) -> FlexTensor {
    assert_eq!(t.dtype(), DType::F32, "group norm: {what} must be f32, got {:?}", t.dtype());
    let t = t.into_contiguous();
    assert_eq!(
        t.layout().num_elements(),
        n,
        "group norm: {what} has {} elements (expected {n})",
        t.layout().num_elements()
    );
    t
}

fn f32_tensor(data: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::new(Bytes::from_elems(data), Layout::contiguous(burn_std::Shape::from(shape)), DType::F32)
}

/// Eight-lane sums the compiler vectorises: `(Σ a_i, Σ a_i b_i)` where `a_i = f(i)`.
#[inline(always)]
fn lane_sum(xs: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for j in 0..8 {
            acc[j] += f(c[j]);
        }
    }
    let mut s = 0.0f32;
    for v in rest {
        s += f(*v);
    }
    acc.iter().sum::<f32>() + s
}

/// The per-channel affine `z = a x + k` of sample `b`, channel `c`.
#[inline(always)]
fn affine(mu: f32, rstd: f32, gamma: f32, beta: f32, s: f32, t: f32) -> (f32, f32) {
    let a = rstd * gamma * s;
    (a, (beta - mu * rstd * gamma) * s + t)
}

struct Params<'a> {
    gamma: &'a [f32],
    beta: &'a [f32],
    scale: &'a [f32],
    shift: &'a [f32],
    eps: f32,
    silu: bool,
}

/// One sample's forward pass: `y` `[C, L]` and `stats` `[G, 2]` from `x` `[C, L]`.
#[inline(always)]
fn forward_sample(d: &Dims, p: &Params, b: usize, x: &[f32], y: &mut [f32], stats: &mut [f32]) {
    let (l, cpg) = (d.len, d.per_group());
    let n = (cpg * l) as f32;
    for g in 0..d.groups {
        let xs = &x[g * cpg * l..(g + 1) * cpg * l];
        let mu = lane_sum(xs, |v| v) / n;
        let var = lane_sum(xs, |v| (v - mu) * (v - mu)) / n;
        let rstd = 1.0 / (var + p.eps).sqrt();
        stats[2 * g] = mu;
        stats[2 * g + 1] = rstd;
        for c in g * cpg..(g + 1) * cpg {
            let bc = b * d.channels + c;
            let (a, k) = affine(mu, rstd, p.gamma[c], p.beta[c], p.scale[bc], p.shift[bc]);
            let (xr, yr) = (&x[c * l..(c + 1) * l], &mut y[c * l..(c + 1) * l]);
            if p.silu {
                for (o, v) in yr.iter_mut().zip(xr) {
                    let z = a * v + k;
                    *o = z * sigmoid(z);
                }
            } else {
                for (o, v) in yr.iter_mut().zip(xr) {
                    *o = a * v + k;
                }
            }
        }
    }
}

/// One sample's gradient: `dx` `[C, L]` and the per-channel sums `sums` `[C, 2]` =
/// `(Σ_l g_z, Σ_l g_z x̂)`, from `x`, `grad` `[C, L]` and the forward pass's `stats` `[G, 2]`.
#[inline(always)]
fn backward_sample(
    d: &Dims,
    p: &Params,
    b: usize,
    x: &[f32],
    grad: &[f32],
    stats: &[f32],
    dx: &mut [f32],
    sums: &mut [f32],
) {
    let (l, cpg) = (d.len, d.per_group());
    let n = (cpg * l) as f32;
    for g in 0..d.groups {
        let (mu, rstd) = (stats[2 * g], stats[2 * g + 1]);
        // Pass 1: g_z into dx, and per channel Σ g_z, Σ g_z x̂.
        let (mut m1, mut m2) = (0.0f32, 0.0f32);
        for c in g * cpg..(g + 1) * cpg {
            let bc = b * d.channels + c;
            let (a, k) = affine(mu, rstd, p.gamma[c], p.beta[c], p.scale[bc], p.shift[bc]);
            let (xr, gr) = (&x[c * l..(c + 1) * l], &grad[c * l..(c + 1) * l]);
            let dr = &mut dx[c * l..(c + 1) * l];
            if p.silu {
                for ((o, v), gv) in dr.iter_mut().zip(xr).zip(gr) {
                    let z = a * v + k;
                    let sg = sigmoid(z);
                    *o = gv * (sg * (1.0 + z * (1.0 - sg)));
                }
            } else {
                dr.copy_from_slice(gr);
            }
            let s1 = lane_sum(dr, |v| v);
            let mut acc = [0.0f32; 8];
            let mut s2 = 0.0f32;
            let (dc, xc) = (dr.chunks_exact(8), xr.chunks_exact(8));
            for (o, v) in dc.remainder().iter().zip(xc.remainder()) {
                s2 += o * (v - mu);
            }
            for (o, v) in dc.zip(xc) {
                for j in 0..8 {
                    acc[j] += o[j] * (v[j] - mu);
                }
            }
            let s2 = (acc.iter().sum::<f32>() + s2) * rstd;
            sums[2 * c] = s1;
            sums[2 * c + 1] = s2;
            let w = p.gamma[c] * p.scale[bc];
            m1 += w * s1;
            m2 += w * s2;
        }
        let (m1, m2) = (m1 / n, m2 / n);
        // Pass 2: dx = rstd (g_z s gamma - m1 - x̂ m2).
        for c in g * cpg..(g + 1) * cpg {
            let w = p.gamma[c] * p.scale[b * d.channels + c];
            let (xr, dr) = (&x[c * l..(c + 1) * l], &mut dx[c * l..(c + 1) * l]);
            for (o, v) in dr.iter_mut().zip(xr) {
                let xh = (v - mu) * rstd;
                *o = rstd * (*o * w - m1 - xh * m2);
            }
        }
    }
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_sample_avx2(d: &Dims, p: &Params, b: usize, x: &[f32], y: &mut [f32], stats: &mut [f32]) {
    forward_sample(d, p, b, x, y, stats)
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn backward_sample_avx2(
    d: &Dims,
    p: &Params,
    b: usize,
    x: &[f32],
    grad: &[f32],
    stats: &[f32],
    dx: &mut [f32],
    sums: &mut [f32],
) {
    backward_sample(d, p, b, x, grad, stats, dx, sums)
}

fn has_avx2() -> bool {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(all(feature = "std", target_arch = "x86_64")))]
    {
        false
    }
}

/// Runs `f(b, out_b, aux_b)` for every sample, in parallel when rayon is on.
fn per_sample(
    out: &mut [f32],
    len: usize,
    aux: &mut [f32],
    aux_len: usize,
    f: impl Fn(usize, &mut [f32], &mut [f32]) + Send + Sync,
) {
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(len.max(1))
            .zip(aux.par_chunks_mut(aux_len.max(1)))
            .enumerate()
            .for_each(|(b, (o, a))| f(b, o, a));
    }
    #[cfg(not(feature = "rayon"))]
    {
        for (b, (o, a)) in out.chunks_mut(len.max(1)).zip(aux.chunks_mut(aux_len.max(1))).enumerate() {
            f(b, o, a);
        }
    }
}

/// The inputs every call shares, made contiguous f32 and checked against `x`'s shape.
struct Inputs {
    d: Dims,
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    scale: FlexTensor,
    shift: FlexTensor,
}

impl Inputs {
    fn new(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        scale: FlexTensor,
        shift: FlexTensor,
        groups: usize,
    ) -> Self {
        let d = Dims::new(&x, groups);
        let n = d.batch * d.channels * d.len;
        Inputs {
            x: f32_input(x, "x", n),
            gamma: f32_input(gamma, "gamma", d.channels),
            beta: f32_input(beta, "beta", d.channels),
            scale: f32_input(scale, "scale", d.batch * d.channels),
            shift: f32_input(shift, "shift", d.batch * d.channels),
            d,
        }
    }

    fn params(&self, epsilon: f64, silu: bool) -> Params<'_> {
        Params {
            gamma: self.gamma.storage(),
            beta: self.beta.storage(),
            scale: self.scale.storage(),
            shift: self.shift.storage(),
            eps: epsilon as f32,
            silu,
        }
    }
}

/// `y = act((x - mu) rstd gamma s + beta s + t)` and the statistics `[B, G, 2]` (`mu`, `rstd`) its
/// gradient needs. `x` `[B, C, ...]`, `gamma`/`beta` `C` elements, `scale`/`shift` `B · C` elements,
/// all f32. Panics on a shape or dtype that does not fit (the caller checks them first).
#[allow(clippy::too_many_arguments)]
pub fn group_norm_act(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    scale: FlexTensor,
    shift: FlexTensor,
    groups: usize,
    epsilon: f64,
    silu: bool,
) -> (FlexTensor, FlexTensor) {
    let shape = x.shape().to_vec();
    let inp = Inputs::new(x, gamma, beta, scale, shift, groups);
    let (d, p) = (inp.d, inp.params(epsilon, silu));
    let xs: &[f32] = inp.x.storage();
    let per = d.channels * d.len;
    let mut y = vec![0.0f32; d.batch * per];
    let mut stats = vec![0.0f32; d.batch * d.groups * 2];
    let avx2 = has_avx2();
    per_sample(&mut y, per, &mut stats, d.groups * 2, |b, yb, sb| {
        let xb = &xs[b * per..(b + 1) * per];
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        if avx2 {
            // SAFETY: the CPU has the features the function is compiled for.
            unsafe { forward_sample_avx2(&d, &p, b, xb, yb, sb) };
            return;
        }
        let _ = avx2;
        forward_sample(&d, &p, b, xb, yb, sb);
    });
    (f32_tensor(y, shape), f32_tensor(stats, vec![d.batch, d.groups, 2]))
}

/// The gradient of [`group_norm_act`] for the output gradient `grad`: `[dx, dgamma, dbeta, dscale,
/// dshift]`, shaped as `x`, `[C]`, `[C]`, `[B, C]`, `[B, C]`.
#[allow(clippy::too_many_arguments)]
pub fn group_norm_act_backward(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    scale: FlexTensor,
    shift: FlexTensor,
    stats: FlexTensor,
    grad: FlexTensor,
    groups: usize,
    silu: bool,
) -> [FlexTensor; 5] {
    let shape = x.shape().to_vec();
    let inp = Inputs::new(x, gamma, beta, scale, shift, groups);
    let (d, p) = (inp.d, inp.params(0.0, silu));
    let n = d.batch * d.channels * d.len;
    let grad = f32_input(grad, "output gradient", n);
    let stats = f32_input(stats, "statistics", d.batch * d.groups * 2);
    let (xs, gs, ss): (&[f32], &[f32], &[f32]) = (inp.x.storage(), grad.storage(), stats.storage());
    let per = d.channels * d.len;
    let mut dx = vec![0.0f32; n];
    let mut sums = vec![0.0f32; d.batch * d.channels * 2];
    let avx2 = has_avx2();
    per_sample(&mut dx, per, &mut sums, d.channels * 2, |b, dxb, sb| {
        let (xb, gb) = (&xs[b * per..(b + 1) * per], &gs[b * per..(b + 1) * per]);
        let st = &ss[b * d.groups * 2..(b + 1) * d.groups * 2];
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        if avx2 {
            // SAFETY: the CPU has the features the function is compiled for.
            unsafe { backward_sample_avx2(&d, &p, b, xb, gb, st, dxb, sb) };
            return;
        }
        let _ = avx2;
        backward_sample(&d, &p, b, xb, gb, st, dxb, sb);
    });
    let c = d.channels;
    let mut dgamma = vec![0.0f32; c];
    let mut dbeta = vec![0.0f32; c];
    let mut dscale = vec![0.0f32; d.batch * c];
    let mut dshift = vec![0.0f32; d.batch * c];
    for b in 0..d.batch {
        for ch in 0..c {
            let bc = b * c + ch;
            let (s1, s2) = (sums[2 * bc], sums[2 * bc + 1]);
            dshift[bc] = s1;
            dscale[bc] = p.gamma[ch] * s2 + p.beta[ch] * s1;
            dbeta[ch] += p.scale[bc] * s1;
            dgamma[ch] += p.scale[bc] * s2;
        }
    }
    [
        f32_tensor(dx, shape),
        f32_tensor(dgamma, vec![c]),
        f32_tensor(dbeta, vec![c]),
        f32_tensor(dscale, vec![d.batch, c]),
        f32_tensor(dshift, vec![d.batch, c]),
    ]
}
