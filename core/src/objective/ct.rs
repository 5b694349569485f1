//! Consistency training (CM Algorithm 3; iCT §3): one loss for the CM recipe and for iCT.
//!
//! `lambda(sigma_n) d(f_theta(x0 + sigma_{n+1} z, sigma_{n+1}), f_theta-(x0 + sigma_n z, sigma_n))` with
//! `sigma` from a Karras grid of `N(k)` levels. Consistency distillation (CM Algorithm 2) is the same
//! loss with the target point made by one ODE step of a teacher, `x̂_n = Phi(x_{n+1}, sigma_{n+1} -> sigma_n)`,
//! instead of sharing the noise draw. ECT (Geng et al. 2024) is the same loss without a grid: `t` drawn
//! continuously, its pair `r` from ECT's mapping ([`crate::schedule::ect_r`]), and the data itself as
//! the target where `r` reaches `sigma_min`.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::Progress;
use crate::distance::Distance;
use crate::host::{column, vector};
use crate::model::{Denoiser, Guided};
use crate::net::DropoutMasks;
use crate::rng::Noise;
use crate::sample::{OdeSolver, normals, ode_step};
use crate::schedule::{Curriculum, cumulative, ect_r, ect_stage, karras, lognormal_index_probs};

/// How the level index `n` is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", deny_unknown_fields)]
pub enum IndexSampling {
    /// `n ~ U{1, N-1}` (CM); under ECT, which has no grid, `ln t` uniform on `[ln sigma_min, ln sigma_max]`.
    Uniform,
    /// Discretised lognormal (iCT §3.5), `P_mean = -1.1`, `P_std = 2.0` in the paper; under ECT the
    /// lognormal itself, `ln t ~ N(P_mean, P_std^2)` (ECT's constants are iCT's), kept in `[sigma_min, sigma_max]`.
    Lognormal { p_mean: f64, p_std: f64 },
}

/// The loss weight `lambda(sigma_n)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Weighting {
    /// `lambda = 1` (CM).
    Uniform,
    /// `lambda(sigma_n) = 1 / (sigma_{n+1} - sigma_n)` (iCT §3.5); ECT's `1 / (t - r)`.
    Ict,
}

/// Everything that distinguishes the CM recipe from iCT.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CtConfig {
    /// `N(k)` and the target EMA `mu(k)`.
    pub curriculum: Curriculum,
    /// Distance `d`.
    pub distance: Distance,
    /// Weighting `lambda`.
    pub weighting: Weighting,
    /// Index distribution.
    pub index_sampling: IndexSampling,
    /// Karras grid exponent `rho` (7).
    #[serde(default = "CtConfig::default_rho")]
    pub rho: f64,
}

impl CtConfig {
    fn default_rho() -> f64 {
        7.0
    }

    /// The largest discretisation a curriculum may reach: the grid, its index probabilities and the
    /// per-step level tables are O(N) host memory every step.
    pub const MAX_LEVELS: u32 = 100_000;

    /// The most ECT stages: past about 50 halvings of the gap `t - r` is below `f64` resolution.
    pub const MAX_ECT_STAGES: u32 = 48;

    /// Checks every field's range, naming the field (`ct.<name>`) and what was expected.
    pub fn validate(&self) -> Result<(), String> {
        let levels = |s0: u32, s1: u32| {
            if s0 < 1 || s1 < s0 || s1 > Self::MAX_LEVELS {
                Err(format!(
                    "field `ct.curriculum`: need 1 <= s0 <= s1 <= {}, got s0 = {s0}, s1 = {s1}",
                    Self::MAX_LEVELS
                ))
            } else {
                Ok(())
            }
        };
        match self.curriculum {
            Curriculum::Cm { s0, s1, mu0 } => {
                levels(s0, s1)?;
                if !(0.0..1.0).contains(&mu0) {
                    return Err(format!("field `ct.curriculum.mu0`: must be in [0, 1), got {mu0}"));
                }
            }
            Curriculum::Ict { s0, s1 } => levels(s0, s1)?,
            Curriculum::Ect { q, k, b, stages } => {
                if !(q > 1.0 && q.is_finite()) {
                    return Err(format!(
                        "field `ct.curriculum.q`: must be a finite number above 1 (ECT: 2), got {q}"
                    ));
                }
                if !(k >= 0.0 && k.is_finite()) {
                    return Err(format!(
                        "field `ct.curriculum.k`: must be finite and >= 0 (ECT: 8), got {k}"
                    ));
                }
                if !(b > 0.0 && b.is_finite()) {
                    return Err(format!(
                        "field `ct.curriculum.b`: must be finite and positive (ECT: 1), got {b}"
                    ));
                }
                if !(1..=Self::MAX_ECT_STAGES).contains(&stages) {
                    return Err(format!(
                        "field `ct.curriculum.stages`: need 1 <= stages <= {} (ECT: 8), got {stages}",
                        Self::MAX_ECT_STAGES
                    ));
                }
            }
            Curriculum::Fixed { n, mu } => {
                if !(2..=Self::MAX_LEVELS).contains(&n) {
                    return Err(format!(
                        "field `ct.curriculum.n`: need 2 <= n <= {}, got {n}",
                        Self::MAX_LEVELS
                    ));
                }
                if !(0.0..1.0).contains(&mu) {
                    return Err(format!("field `ct.curriculum.mu`: must be in [0, 1), got {mu}"));
                }
            }
        }
        if let IndexSampling::Lognormal { p_mean, p_std } = self.index_sampling
            && !(p_mean.is_finite() && p_std > 0.0 && p_std.is_finite())
        {
            return Err(format!(
                "field `ct.index_sampling`: need a finite p_mean and p_std > 0, got p_mean = {p_mean}, p_std = {p_std}"
            ));
        }
        if !(self.rho > 0.0 && self.rho.is_finite()) {
            return Err(format!("field `ct.rho`: must be positive (Karras: 7), got {}", self.rho));
        }
        Ok(())
    }

    /// CM's consistency training: CM curriculum, L2, uniform weights and indices, EMA target.
    pub fn cm() -> Self {
        Self {
            curriculum: Curriculum::CM,
            distance: Distance::L2,
            weighting: Weighting::Uniform,
            index_sampling: IndexSampling::Uniform,
            rho: 7.0,
        }
    }

    /// CM's consistency distillation on CIFAR-10 (CM Table 3): `N = 18`, target `mu = 0`, uniform
    /// weights and indices; L2 stands in for LPIPS (no VGG weights offline).
    pub fn cd() -> Self {
        Self {
            curriculum: Curriculum::Fixed { n: 18, mu: 0.0 },
            distance: Distance::L2,
            weighting: Weighting::Uniform,
            index_sampling: IndexSampling::Uniform,
            rho: 7.0,
        }
    }

    /// Improved consistency training: all of iCT's changes.
    pub fn ict() -> Self {
        Self {
            curriculum: Curriculum::ICT,
            distance: Distance::PseudoHuber,
            weighting: Weighting::Ict,
            index_sampling: IndexSampling::Lognormal { p_mean: -1.1, p_std: 2.0 },
            rho: 7.0,
        }
    }

    /// ECT: its mapping at the CIFAR-10 constants ([`Curriculum::ECT`]), iCT's lognormal `t`, weighting
    /// and distance (ECT's pseudo-Huber is `c = 0`, the L2 norm; iCT's small `c` is that norm where the
    /// difference is not tiny), and the target `stopgrad(theta)`.
    pub fn ect() -> Self {
        Self { curriculum: Curriculum::ECT, ..Self::ict() }
    }
}

/// Which levels a step paired: a grid's size, or ECT's stage.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Levels {
    /// `N(k)` levels of a Karras grid.
    Grid { n: usize },
    /// ECT's stage `s` of its mapping.
    Ect { stage: u32 },
}

/// One step's loss and the discretisation it used.
pub struct CtStep {
    pub loss: Tensor<1>,
    /// `N(k)`, or ECT's stage.
    pub levels: Levels,
    /// Target EMA `mu(k)` to apply after the optimiser step.
    pub mu: f64,
}

/// A diffusion teacher for consistency distillation: its denoiser (any device without autodiff), the
/// ODE solver of one step, and for a class-conditional teacher the classifier-free guidance weight of
/// its steps (`model::Guided`; 1: none), which the student learns to reproduce in one jump.
#[derive(Clone, Copy)]
pub struct Teacher<'a> {
    pub model: &'a Denoiser,
    pub solver: OdeSolver,
    pub guidance: f64,
}

/// The consistency-training loss at step `k` of `total` (`progress`). `target` is the EMA network `theta-`
/// on the inner backend, without autodiff (`student.valid()` when `mu = 0`). `x0: [B, D]`, `labels` its
/// rows' classes (one-hot, conditional models; the teacher sees them too). With a `teacher`, the target
/// point is one teacher ODE step from the student's point (CD, CM Algorithm 2).
#[allow(clippy::too_many_arguments)]
pub fn ct_loss(
    student: &Denoiser,
    target: &Denoiser,
    x0: Tensor<2>,
    labels: Option<&Tensor<2>>,
    cfg: &CtConfig,
    progress: Progress,
    noise: &Noise,
    teacher: Option<Teacher>,
) -> CtStep {
    let Progress { k, total, .. } = progress;
    let streams = progress.streams();
    let device = x0.device();
    let [b, d] = x0.dims();
    let range = &student.range;
    let (sigma_lo, sigma_hi, levels) = pairs(cfg, range, progress, noise, b);
    // ECT's data targets (`r = 0`) are read at `sigma_min` from `x0` itself, where the boundary condition
    // `f(x, sigma_min) = x` returns `x0` exactly.
    let sigma_lo_net: Vec<f64> = sigma_lo.iter().map(|&s| s.max(range.sigma_min)).collect();
    let col = |v: &[f64]| column(v, &device);
    let z = normals(noise, streams.z(), streams.first_row, b, d, &device);
    let x_hi = x0.clone() + z.clone() * col(&sigma_hi);
    // The teacher and the target run without autodiff, so they see the labels on the inner backend.
    let inner_labels = labels.map(|l| l.clone().inner());
    let x_lo = match teacher {
        None => x0 + z * col(&sigma_lo),
        // The teacher runs without autodiff; its output is a constant for the student.
        Some(t) => {
            let cond = Guided { labels: inner_labels.as_ref(), guidance: t.guidance };
            ode_step(t.model, cond, x_hi.clone().inner(), &sigma_hi, &sigma_lo_net, t.solver)
        }
    };
    let masks = student.dropout_masks(b, noise, streams, &device);
    let f_student = student.forward_masked(x_hi, &sigma_hi, labels, masks.as_ref());
    // The target runs without autodiff (no graph recorded only to be cut off); its output is a constant.
    let inner_masks = masks.as_ref().map(DropoutMasks::inner);
    let f_target = Tensor::from_inner(target.forward_masked(
        x_lo.inner(),
        &sigma_lo_net,
        inner_labels.as_ref(),
        inner_masks.as_ref(),
    ));
    let dist = cfg.distance.apply(f_student, f_target);
    let loss = match cfg.weighting {
        Weighting::Uniform => dist.mean(),
        Weighting::Ict => {
            let lambda: Vec<f64> = sigma_lo.iter().zip(&sigma_hi).map(|(lo, hi)| 1.0 / (hi - lo)).collect();
            (dist * vector(&lambda, &device)).mean()
        }
    };
    CtStep { loss, levels, mu: cfg.curriculum.mu(k, total) }
}

/// Each row's pair of levels `(sigma_lo, sigma_hi)` and the step's [`Levels`]. A grid curriculum pairs
/// neighbours `(sigma_n, sigma_{n+1})` of `N(k)` Karras levels, the index drawn by `index_sampling`; ECT
/// pairs a continuous `t` with its `r` (`0` where `r <= sigma_min`: the data is the target).
fn pairs(
    cfg: &CtConfig,
    range: &crate::NoiseRange,
    progress: Progress,
    noise: &Noise,
    b: usize,
) -> (Vec<f64>, Vec<f64>, Levels) {
    let Progress { k, total, .. } = progress;
    let streams = progress.streams();
    let (sigma_min, sigma_max) = (range.sigma_min, range.sigma_max);
    let draw = |row: usize| noise.generator(streams.level(), (streams.first_row + row) as u64);
    if let Curriculum::Ect { q, k: k_n, b: b_n, stages } = cfg.curriculum {
        let stage = ect_stage(k, total, stages);
        let t: Vec<f64> = (0..b)
            .map(|row| {
                let mut g = draw(row);
                let ln_t = match cfg.index_sampling {
                    IndexSampling::Uniform => {
                        libm::log(sigma_min) + g.uniform() * (libm::log(sigma_max) - libm::log(sigma_min))
                    }
                    IndexSampling::Lognormal { p_mean, p_std } => p_mean + p_std * g.normal(),
                };
                libm::exp(ln_t).clamp(sigma_min, sigma_max)
            })
            .collect();
        let r = t
            .iter()
            .map(|&t| {
                let r = ect_r(t, stage, q, k_n, b_n);
                if r > sigma_min { r } else { 0.0 }
            })
            .collect();
        return (r, t, Levels::Ect { stage });
    }
    let n = cfg.curriculum.n(k, total).unwrap_or(2);
    let sigmas = karras(n, sigma_min, sigma_max, cfg.rho);
    let cum = match cfg.index_sampling {
        IndexSampling::Uniform => cumulative(&vec![1.0; n - 1]),
        IndexSampling::Lognormal { p_mean, p_std } => {
            cumulative(&lognormal_index_probs(&sigmas, p_mean, p_std))
        }
    };
    let idx: Vec<usize> = (0..b).map(|row| draw(row).categorical(&cum)).collect();
    (
        idx.iter().map(|&i| sigmas[i]).collect(),
        idx.iter().map(|&i| sigmas[i + 1]).collect(),
        Levels::Grid { n },
    )
}
