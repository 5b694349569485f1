//! Forward-mode differentiation: a value with an optional tangent, pushed through every layer our networks use.
//!
//! sCM (Lu & Song 2025, Algorithm 1) needs the Jacobian-vector product `(F, dF/dx · ẋ + dF/dc · ċ)` of the
//! target network. burn has reverse-mode autodiff only, so each layer here propagates `(value, tangent)`
//! pairs by its own derivative rule (linear, convolution, group norm, SiLU, softmax attention, time
//! embeddings, adaptive norms, pixel norm). The networks' ordinary forward pass *is* this code with no
//! tangent (`t = None`), so there is one forward implementation per network and the JVP cannot drift
//! from it. Checked against central finite differences in f64 (`tests/tests/jvp.rs`).

use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, Linear};
use burn::prelude::*;
use burn::tensor::activation::{sigmoid, softmax};

/// A value `v` and, when differentiating, its tangent `t` (same shape) along one input direction.
#[derive(Clone, Debug)]
pub struct Dual<const D: usize> {
    pub v: Tensor<D>,
    pub t: Option<Tensor<D>>,
}

impl<const D: usize> Dual<D> {
    /// A value with no tangent (a constant, or a plain forward pass).
    pub fn primal(v: Tensor<D>) -> Self {
        Self { v, t: None }
    }

    pub fn new(v: Tensor<D>, t: Tensor<D>) -> Self {
        Self { v, t: Some(t) }
    }

    /// Applies a linear map `f` to both value and tangent (reshapes, slices, transposes, sums).
    pub fn linear_map<const E: usize>(self, f: impl Fn(Tensor<D>) -> Tensor<E>) -> Dual<E> {
        Dual { t: self.t.map(&f), v: f(self.v) }
    }

    /// Multiplies by a constant tensor (broadcasting as burn does).
    pub fn mul_const(self, c: Tensor<D>) -> Self {
        Self { t: self.t.map(|t| t * c.clone()), v: self.v * c }
    }

    pub fn mul_scalar(self, c: f64) -> Self {
        self.linear_map(|x| x * c)
    }

    /// Adds a constant (no tangent change).
    pub fn add_scalar(self, c: f64) -> Self {
        Self { v: self.v + c, t: self.t }
    }

    /// `silu(x) = x sigmoid(x)`, `silu'(x) = sigmoid(x) (1 + x (1 - sigmoid(x)))`.
    pub fn silu(self) -> Self {
        match self.t {
            None => Self::primal(burn::tensor::activation::silu(self.v)),
            Some(t) => {
                let s = sigmoid(self.v.clone());
                let d = s.clone() * (self.v.clone() * (s.clone().neg() + 1.0) + 1.0);
                Self { v: self.v * s, t: Some(t * d) }
            }
        }
    }

    /// `cos` and `sin` of the value with their tangents `-sin · t`, `cos · t`.
    pub fn cos_sin(self) -> (Self, Self) {
        let (c, s) = (self.v.clone().cos(), self.v.sin());
        match self.t {
            None => (Self::primal(c), Self::primal(s)),
            Some(t) => (Self::new(c.clone(), s.clone().neg() * t.clone()), Self::new(s, c * t)),
        }
    }

    /// Softmax along `dim`: `p' = p ⊙ (t - Σ p t)`.
    pub fn softmax(self, dim: usize) -> Self {
        let p = softmax(self.v, dim);
        let t = self.t.map(|t| {
            let inner = (p.clone() * t.clone()).sum_dim(dim);
            p.clone() * (t - inner)
        });
        Self { v: p, t }
    }

    /// The tangent, or zeros when there is none.
    pub fn tangent_or_zeros(&self) -> Tensor<D> {
        self.t.clone().unwrap_or_else(|| self.v.zeros_like())
    }
}

impl<const D: usize> core::ops::Add for Dual<D> {
    type Output = Self;
    fn add(self, other: Self) -> Self {
        let t = match (self.t, other.t) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        Self { v: self.v + other.v, t }
    }
}

/// Product rule: `(a b)' = a' b + a b'`.
impl<const D: usize> core::ops::Mul for Dual<D> {
    type Output = Self;
    fn mul(self, other: Self) -> Self {
        let t = match (&self.t, &other.t) {
            (Some(a), Some(b)) => Some(a.clone() * other.v.clone() + self.v.clone() * b.clone()),
            (Some(a), None) => Some(a.clone() * other.v.clone()),
            (None, Some(b)) => Some(self.v.clone() * b.clone()),
            (None, None) => None,
        };
        Self { v: self.v * other.v, t }
    }
}

/// Concatenation along `dim`; a part without tangent contributes zeros.
pub fn cat<const D: usize>(parts: Vec<Dual<D>>, dim: usize) -> Dual<D> {
    let any = parts.iter().any(|p| p.t.is_some());
    let t = any.then(|| Tensor::cat(parts.iter().map(Dual::tangent_or_zeros).collect(), dim));
    Dual { v: Tensor::cat(parts.into_iter().map(|p| p.v).collect(), dim), t }
}

/// Batched matrix product, product rule.
pub fn matmul(a: Dual<3>, b: Dual<3>) -> Dual<3> {
    let t = match (&a.t, &b.t) {
        (Some(ta), Some(tb)) => Some(ta.clone().matmul(b.v.clone()) + a.v.clone().matmul(tb.clone())),
        (Some(ta), None) => Some(ta.clone().matmul(b.v.clone())),
        (None, Some(tb)) => Some(a.v.clone().matmul(tb.clone())),
        (None, None) => None,
    };
    Dual { v: a.v.matmul(b.v), t }
}

/// `x W + b`; tangent `ẋ W`.
pub fn linear(layer: &Linear, x: Dual<2>) -> Dual<2> {
    let t = x.t.map(|t| t.matmul(layer.weight.val()));
    Dual { v: layer.forward(x.v), t }
}

/// Convolution; tangent: the same convolution without bias.
pub fn conv2d(layer: &Conv2d, x: Dual<4>) -> Dual<4> {
    let t = x.t.map(|t| Conv2d { bias: None, ..layer.clone() }.forward(t));
    Dual { v: layer.forward(x.v), t }
}

/// Group norm `y = gamma x̂ + beta`, `x̂ = (x - mean) / s`, `s = sqrt(var + eps)` per sample and group;
/// tangent `gamma (u̇ - x̂ mean(x̂ u̇)) / s` with `u̇ = ẋ - mean(ẋ)`.
pub fn group_norm(layer: &GroupNorm, x: Dual<4>) -> Dual<4> {
    let t = x.t.map(|t| {
        let [b, c, h, w] = x.v.dims();
        let g = layer.num_groups;
        let n = c / g * h * w;
        let xv = x.v.clone().reshape([b, g, n]);
        let u = xv.clone() - xv.clone().mean_dim(2);
        let s = (u.clone().powf_scalar(2.0).mean_dim(2) + layer.epsilon).sqrt();
        let x_hat = u / s.clone();
        let tv = t.reshape([b, g, n]);
        let u_dot = tv.clone() - tv.mean_dim(2);
        let dx_hat = (u_dot.clone() - x_hat.clone() * (x_hat * u_dot).mean_dim(2)) / s;
        let dx_hat = dx_hat.reshape([b, c, h, w]);
        match &layer.gamma {
            Some(gamma) => dx_hat * gamma.val().reshape([1, c, 1, 1]),
            None => dx_hat,
        }
    });
    Dual { v: layer.forward(x.v), t }
}

/// `act(GroupNorm(x) · s + t)` with `st = (s, t)` `[B, C]` per sample and channel (`None`: `s = 1`,
/// `t = 0`) and `act` SiLU when `silu`, else the identity. Without tangents this is the fused operation
/// of [`crate::fused`]; with them, the same composition as [`group_norm`], `*`, `+` and [`Dual::silu`].
pub fn group_norm_act(layer: &GroupNorm, x: Dual<4>, st: Option<(Dual<2>, Dual<2>)>, silu: bool) -> Dual<4> {
    let primal = x.t.is_none() && st.as_ref().is_none_or(|(s, t)| s.t.is_none() && t.t.is_none());
    if primal {
        return Dual::primal(crate::fused::group_norm_act(layer, x.v, st.map(|(s, t)| (s.v, t.v)), silu));
    }
    let [b, c, _, _] = x.v.dims();
    let mut y = group_norm(layer, x);
    if let Some((s, t)) = st {
        let to_4d = |t: Tensor<2>| t.reshape([b, c, 1, 1]);
        y = y * s.linear_map(to_4d) + t.linear_map(to_4d);
    }
    if silu { y.silu() } else { y }
}

/// Pixel norm over the feature axis of `[B, C]` rows: `x / sqrt(mean(x^2) + eps)` (StyleGAN; sCM's
/// adaptive double normalisation applies it to the time-conditioned scale and shift).
pub fn pixel_norm(x: Dual<2>, eps: f64) -> Dual<2> {
    let r = (x.v.clone().powf_scalar(2.0).mean_dim(1) + eps).sqrt(); // [B, 1]
    let t = x.t.map(|t| {
        let m = (x.v.clone() * t.clone()).mean_dim(1);
        t / r.clone() - x.v.clone() * m / r.clone().powf_scalar(3.0)
    });
    Dual { v: x.v / r, t }
}

/// `[n] c -> [n, 2 · freqs.len()]` embedding `[cos(w c), sin(w c)]`, with tangent.
pub fn embed(freqs: &[f32], c: Dual<1>) -> Dual<2> {
    let device = c.v.device();
    let half = freqs.len();
    let w = Tensor::<1>::from_floats(freqs, &device).reshape([1, half]);
    let n = c.v.dims()[0];
    let angle = c.linear_map(|x| x.reshape([n, 1]).mul(w.clone()));
    let (cos, sin) = angle.cos_sin();
    cat(vec![cos, sin], 1)
}
