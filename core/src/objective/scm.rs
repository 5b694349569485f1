//! Continuous-time consistency models in TrigFlow (sCM: Lu & Song 2025, Algorithm 1): sCT, sCD, and
//! TrigFlow diffusion training, with the learned adaptive weighting `w_phi(t)`.
//!
//! TrigFlow: `x_t = cos t x0 + sin t z`, `z ~ N(0, sigma_data^2 I)`, `t in [0, pi/2]`; the consistency
//! function `f(x_t, t) = cos t x_t - sin t sigma_data F(x_t / sigma_data, t)`. Our [`Denoiser`] with the
//! `TrigFlow` parameterisation is exactly this in EDM coordinates (`sigma = sigma_data tan t`,
//! `x_sigma = x_t / cos t`), so the samplers need nothing new.

use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::Progress;
use crate::host::{column, vector};
use crate::jvp::Dual;
use crate::model::{Denoiser, Guided};
use crate::net::DropoutMasks;
use crate::net::embedding::embed;
use crate::param::{Parameterisation, trigflow_sigma, trigflow_t};
use crate::rng::Noise;
use crate::sample::normals;

/// How the tangent `cos t sin t dF^-/dt` is computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", deny_unknown_fields)]
pub enum JvpMode {
    /// Forward-mode JVP through every layer ([`crate::jvp`]).
    #[default]
    Exact,
    /// Central finite difference with step `h` along the tangent direction: a checked fallback
    /// (two extra forward passes, `O(h^2)` error plus round-off).
    FiniteDifference { h: f64 },
}

/// sCT / sCD / TrigFlow-diffusion settings (sCM §4-5, CIFAR-10 values as defaults).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScmConfig {
    /// Proposal `tan t = e^tau / sigma_data`, `tau ~ N(p_mean, p_std^2)` (sCT CIFAR-10: -1.0).
    #[serde(default = "ScmConfig::default_p_mean")]
    pub p_mean: f64,
    /// (sCT CIFAR-10: 1.4).
    #[serde(default = "ScmConfig::default_p_std")]
    pub p_std: f64,
    /// Tangent warm-up `r = min(1, step / H)` over `H` steps (sCM: 10k; 0 = none).
    #[serde(default)]
    pub tangent_warmup: u64,
    /// Tangent normalisation `g / (||g|| + c)` (sCM: `c = 0.1`).
    #[serde(default = "ScmConfig::default_tangent_c")]
    pub tangent_c: f64,
    /// Exact forward-mode JVP (default) or the finite-difference fallback.
    #[serde(default)]
    pub jvp: JvpMode,
}

impl ScmConfig {
    fn default_p_mean() -> f64 {
        -1.0
    }
    fn default_p_std() -> f64 {
        1.4
    }
    fn default_tangent_c() -> f64 {
        0.1
    }
}

impl Default for ScmConfig {
    fn default() -> Self {
        Self {
            p_mean: Self::default_p_mean(),
            p_std: Self::default_p_std(),
            tangent_warmup: 0,
            tangent_c: Self::default_tangent_c(),
            jvp: JvpMode::Exact,
        }
    }
}

/// Features of the adaptive weight's time embedding.
const WEIGHT_EMB: usize = 32;

/// The learned adaptive weighting `w_phi(t)` (sCM §4.2, after EDM2's uncertainty weighting): a linear
/// map of a positional embedding of `t`, zero at initialisation. Trained with the model, not exported.
#[derive(Module, Debug)]
pub struct AdaptiveWeight {
    linear: Linear,
    #[module(skip)]
    freqs: Vec<f32>,
}

impl AdaptiveWeight {
    pub fn new(device: &Device) -> Self {
        // Frequencies 10 · 10000^(-i/16): from 10 rad per unit of t down to ~0.002.
        let freqs = crate::net::TimeEmbedding::Positional { scale: 10.0 }.frequencies(WEIGHT_EMB);
        Self {
            linear: LinearConfig::new(WEIGHT_EMB, 1).with_initializer(Initializer::Zeros).init(device),
            freqs,
        }
    }

    /// `t: [B]` -> `w_phi(t): [B]`.
    pub fn forward(&self, t: Tensor<1>) -> Tensor<1> {
        let b = t.dims()[0];
        self.linear.forward(embed(&self.freqs, t)).reshape([b])
    }
}

/// TrigFlow time of the proposal `tan t = e^tau / sigma_data` (sCM §4.3).
pub fn proposal_t(tau: f64, sigma_data: f64) -> f64 {
    trigflow_t(libm::exp(tau), sigma_data)
}

/// The PF-ODE velocity `dx_t/dt` of any diffusion model in TrigFlow coordinates: with its denoiser
/// `D(x_sigma, sigma)` at `sigma = sigma_data tan t`, `x_sigma = x_t / cos t`,
/// `dx_t/dt = (cos t x_t - D) / sin t`. For an EDM teacher this is exactly `-sigma_data F_edm(x_t / sigma_data,
/// c_noise(sigma))` (EDM's `c_in x_sigma = x_t / sigma_data`), the exact EDM -> TrigFlow conversion; for a
/// TrigFlow model it is `sigma_data F`. `x_t: [B, D]`, `t` per row, all in `(0, pi/2)`. `D` is `cond`'s:
/// the rows' classes, with classifier-free guidance where `cond` asks (`model::Guided`).
pub fn trigflow_velocity(teacher: &Denoiser, cond: Guided, x_t: Tensor<2>, t: &[f64]) -> Tensor<2> {
    let device = x_t.device();
    let sd = teacher.range.sigma_data;
    let cos: Vec<f64> = t.iter().map(|&t| libm::cos(t)).collect();
    let sin: Vec<f64> = t.iter().map(|&t| libm::sin(t)).collect();
    let sigma: Vec<f64> = t.iter().map(|&t| trigflow_sigma(t, sd)).collect();
    let cos = column(&cos, &device);
    let x_sigma = x_t.clone() / cos.clone();
    let d = cond.denoise(teacher, x_sigma, &sigma);
    (x_t * cos - d) / column(&sin, &device)
}

/// `(F, cos t sin t dF/dt)` of the raw network at `(x_t / sigma_data, t)` along
/// `(cos t sin t dx_t/dt / sigma_data, cos t sin t)` (sCM Algorithm 1), exactly or by central differences.
#[allow(clippy::too_many_arguments)]
pub fn network_tangent(
    model: &Denoiser,
    x_in: Tensor<2>,
    x_dot: Tensor<2>,
    t: Tensor<1>,
    t_dot: Tensor<1>,
    labels: Option<&Tensor<2>>,
    masks: Option<&DropoutMasks>,
    mode: JvpMode,
) -> (Tensor<2>, Tensor<2>) {
    match mode {
        JvpMode::Exact => {
            let out = model.net.forward_dual(Dual::new(x_in, x_dot), Dual::new(t, t_dot), labels, masks);
            let tangent = out.t.expect("tangents in, tangent out");
            (out.v, tangent)
        }
        JvpMode::FiniteDifference { h } => {
            let f = model.net.forward(x_in.clone(), t.clone(), labels, masks);
            let plus = model.net.forward(
                x_in.clone() + x_dot.clone() * h,
                t.clone() + t_dot.clone() * h,
                labels,
                masks,
            );
            let minus = model.net.forward(x_in - x_dot * h, t - t_dot * h, labels, masks);
            (f, (plus - minus) / (2.0 * h))
        }
    }
}

/// One sCM step's loss and the tangent warm-up factor it used.
pub struct ScmStep {
    pub loss: Tensor<1>,
    /// Tangent warm-up `r`.
    pub r: f64,
}

/// One training point of TrigFlow: per-row `t` with `cos t`, `sin t`, and `x_t = cos t x0 + sin t z`,
/// `z ~ N(0, sigma_data^2 I)`.
struct TrigflowPoint {
    t: Vec<f64>,
    cos: Vec<f64>,
    sin: Vec<f64>,
    x_t: Tensor<2>,
    z: Tensor<2>,
}

/// Draws `t` per row from the proposal, then the point on its TrigFlow path.
fn trigflow_point(
    x0: &Tensor<2>,
    cfg: &ScmConfig,
    sigma_data: f64,
    progress: Progress,
    noise: &Noise,
) -> TrigflowPoint {
    let device = x0.device();
    let [b, d] = x0.dims();
    let streams = progress.streams();
    let t: Vec<f64> = noise
        .normals(streams.level(), streams.first_row, b, 1)
        .into_iter()
        .map(|n| proposal_t(cfg.p_mean + cfg.p_std * n as f64, sigma_data))
        .collect();
    let z = normals(noise, streams.z(), streams.first_row, b, d, &device) * sigma_data;
    let cos: Vec<f64> = t.iter().map(|&t| libm::cos(t)).collect();
    let sin: Vec<f64> = t.iter().map(|&t| libm::sin(t)).collect();
    let x_t = x0.clone() * column(&cos, &device) + z.clone() * column(&sin, &device);
    TrigflowPoint { t, cos, sin, x_t, z }
}

/// The sCT (no `teacher`) or sCD (`teacher` given, any diffusion model) loss of sCM Algorithm 1:
/// `e^{w(t)} / D ||F_theta(x_t / sd, t) - F^- - g||^2 - w(t)`, with
/// `g = -cos^2 t (sd F^- - dx_t/dt) - r cos t sin t (x_t + sd dF^-/dt)` normalised by `||g|| + c`.
/// `student` (TrigFlow parameterisation) carries gradients; `target` is the same weights without
/// autodiff (`student.valid()`), through which the JVP runs; `teacher` (with its guidance weight, see
/// `model::Guided`) runs without autodiff and sees the rows' `labels`.
#[allow(clippy::too_many_arguments)]
pub fn scm_loss(
    student: &Denoiser,
    target: &Denoiser,
    weight: &AdaptiveWeight,
    x0: Tensor<2>,
    labels: Option<&Tensor<2>>,
    cfg: &ScmConfig,
    progress: Progress,
    noise: &Noise,
    teacher: Option<(&Denoiser, f64)>,
) -> ScmStep {
    assert_eq!(student.parameterisation, Parameterisation::TrigFlow, "sCM trains TrigFlow models");
    let device = x0.device();
    let [b, d] = x0.dims();
    let sd = student.range.sigma_data;
    let TrigflowPoint { t, cos: cos_v, sin: sin_v, x_t, z } = trigflow_point(&x0, cfg, sd, progress, noise);
    let cs_v: Vec<f64> = cos_v.iter().zip(&sin_v).map(|(c, s)| c * s).collect();
    let (cos, sin) = (column(&cos_v, &device), column(&sin_v, &device));
    let cs = column(&cs_v, &device);
    let x_t_const = x_t.clone().inner();
    let inner_labels = labels.map(|l| l.clone().inner());
    let dxdt = match teacher {
        None => (z * cos.clone() - x0 * sin).inner(),
        Some((teacher, guidance)) => {
            let cond = Guided { labels: inner_labels.as_ref(), guidance };
            trigflow_velocity(teacher, cond, x_t_const.clone(), &t)
        }
    };
    let masks = student.dropout_masks(b, noise, progress.streams(), &device);
    let inner_masks = masks.as_ref().map(DropoutMasks::inner);
    let t_vec = vector(&t, &device);
    let cs_inner = cs.clone().inner();
    let (f_minus, jvp) = network_tangent(
        target,
        x_t_const.clone() / sd,
        dxdt.clone() * cs_inner.clone() / sd,
        t_vec.clone().inner(),
        vector(&cs_v, &device).inner(),
        inner_labels.as_ref(),
        inner_masks.as_ref(),
        cfg.jvp,
    );
    let r =
        if cfg.tangent_warmup == 0 { 1.0 } else { (progress.k as f64 / cfg.tangent_warmup as f64).min(1.0) };
    let cos_inner = cos.inner();
    let g = (f_minus.clone() * sd - dxdt) * cos_inner.clone() * cos_inner * -1.0
        - (x_t_const.clone() * cs_inner + jvp * sd) * r;
    let g_norm = g.clone().powf_scalar(2.0).sum_dim(1).sqrt(); // [B, 1]
    let g = g / (g_norm + cfg.tangent_c);
    let f_theta = student.net.forward(x_t / sd, t_vec.clone(), labels, masks.as_ref());
    let w = weight.forward(t_vec);
    let per_row = (f_theta - f_minus - g).powf_scalar(2.0).sum_dim(1).reshape([b]) / d as f64;
    let loss = (w.clone().exp() * per_row - w).mean();
    ScmStep { loss, r }
}

/// TrigFlow diffusion training (sCM §3, with the same adaptive weighting): regress the velocity,
/// `e^{w(t)} / D ||F_theta(x_t / sd, t) - v_t / sd||^2 - w(t)`, `v_t = cos t z - sin t x0`.
pub fn trigflow_diffusion_loss(
    model: &Denoiser,
    weight: &AdaptiveWeight,
    x0: Tensor<2>,
    labels: Option<&Tensor<2>>,
    cfg: &ScmConfig,
    progress: Progress,
    noise: &Noise,
) -> Tensor<1> {
    assert_eq!(
        model.parameterisation,
        Parameterisation::TrigFlow,
        "TrigFlow diffusion trains TrigFlow models"
    );
    let device = x0.device();
    let [b, d] = x0.dims();
    let sd = model.range.sigma_data;
    let TrigflowPoint { t, cos, sin, x_t, z } = trigflow_point(&x0, cfg, sd, progress, noise);
    let v = z * column(&cos, &device) - x0 * column(&sin, &device);
    let masks = model.dropout_masks(b, noise, progress.streams(), &device);
    let t_vec = vector(&t, &device);
    let f = model.net.forward(x_t / sd, t_vec.clone(), labels, masks.as_ref());
    let w = weight.forward(t_vec);
    let per_row = (f - v / sd).powf_scalar(2.0).sum_dim(1).reshape([b]) / d as f64;
    (w.clone().exp() * per_row - w).mean()
}
