//! Samplers. One multistep consistency loop (CM Algorithm 1) that sampling and every editing task
//! share, and Euler/Heun PF-ODE solvers (EDM Algorithm 1) for diffusion teachers.

use burn::prelude::*;

use crate::error::shown;
use crate::host::{column, rows};
use crate::model::{Denoiser, Guided};
use crate::param::NoiseRange;
use crate::rng::Noise;
use crate::schedule::karras_sampling;

/// Standard normals `[n, dim]` for rows `first..first + n` of stream `stream`, on `device`.
pub fn normals(noise: &Noise, stream: u64, first: usize, n: usize, dim: usize, device: &Device) -> Tensor<2> {
    rows(&noise.normals(stream, first, n, dim), n, dim, device)
}

/// The one rule for a list of intermediate noise levels `taus` (CM Algorithm 1), for sampling
/// (`start = sigma_max`) and editing (`start` = the edit's start level) alike, natively and in the page:
/// every `tau` a number strictly between `sigma_min` (where re-noising adds nothing and the step is
/// wasted) and `start`, the list strictly decreasing.
pub fn check_taus(taus: &[f64], range: &NoiseRange, start: f64) -> Result<(), String> {
    if let Some(t) = taus.iter().find(|&&t| !(t > range.sigma_min && t < start)) {
        let upper = if start == range.sigma_max { "sigma_max" } else { "the start level" };
        return Err(format!(
            "tau {} must lie strictly between sigma_min = {} and {upper} = {}",
            shown(*t),
            range.sigma_min,
            shown(start)
        ));
    }
    if taus.windows(2).any(|w| w[1] >= w[0]) {
        return Err(format!(
            "taus must be strictly decreasing (each tau must decrease from the one before), got {taus:?}"
        ));
    }
    Ok(())
}

/// Multistep consistency sampling (CM Algorithm 1, with CM Algorithm 4's projection).
///
/// `z: [B, D]` standard normal; `taus` a decreasing list of intermediate noise levels (empty = one
/// step); `fresh_noise(j)` returns the standard normal `[B, D]` used to re-noise before step `j + 1`;
/// `project` maps each estimate back onto the constraint set (identity for plain sampling). `labels`: the
/// class of each row for a conditional model (one-hot `[B, classes]`, [`crate::model::one_hot`]).
pub fn multistep(
    model: &Denoiser,
    labels: Option<&Tensor<2>>,
    z: Tensor<2>,
    taus: &[f64],
    fresh_noise: impl FnMut(usize) -> Tensor<2>,
    project: impl Fn(Tensor<2>) -> Tensor<2>,
) -> Tensor<2> {
    let start = z * model.prior_std();
    multistep_from(model, labels, start, model.range.sigma_max, taus, fresh_noise, project)
}

/// [`multistep`] from a given noisy point `x_start` at level `sigma_start` (CM Algorithm 4 starts from
/// `y + sigma_max z`; denoising and stroke guidance start lower): `x = project(f(x_start, sigma_start))`,
/// then the re-noise / map-back / project loop over `taus`.
pub fn multistep_from(
    model: &Denoiser,
    labels: Option<&Tensor<2>>,
    x_start: Tensor<2>,
    sigma_start: f64,
    taus: &[f64],
    mut fresh_noise: impl FnMut(usize) -> Tensor<2>,
    project: impl Fn(Tensor<2>) -> Tensor<2>,
) -> Tensor<2> {
    let range = model.range;
    let boundary = model.parameterisation.boundary_sigma(&range).unwrap_or(0.0);
    let mut x = project(model.forward_labelled(x_start, &[sigma_start], labels));
    for (j, &tau) in taus.iter().enumerate() {
        let std = libm::sqrt((tau * tau - boundary * boundary).max(0.0));
        let x_tau = x + fresh_noise(j) * std;
        x = project(model.forward_labelled(x_tau, &[tau], labels));
    }
    x
}

/// Consistency sampling of rows `first..first + n` with seed `noise`: row `i` is the same whatever
/// the batch it is drawn in. `taus` must pass [`check_taus`]; the CLI and the page both sample here.
pub fn consistency_sample(
    model: &Denoiser,
    labels: Option<&Tensor<2>>,
    noise: &Noise,
    first: usize,
    n: usize,
    taus: &[f64],
    device: &Device,
) -> Result<Tensor<2>, String> {
    check_taus(taus, &model.range, model.range.sigma_max)?;
    let dim = model.dim();
    let z = normals(noise, 0, first, n, dim, device);
    Ok(multistep(model, labels, z, taus, |j| normals(noise, 1 + j as u64, first, n, dim, device), |x| x))
}

/// First- or second-order PF-ODE solver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OdeSolver {
    Euler,
    Heun,
}

impl OdeSolver {
    /// Network evaluations of `steps` steps ending at `sigma = 0` (Heun's last step is Euler: 2 steps - 1).
    pub fn nfe(self, steps: usize) -> usize {
        match self {
            OdeSolver::Euler => steps,
            OdeSolver::Heun => (2 * steps).saturating_sub(1),
        }
    }

    /// The number of steps whose cost is `nfe` evaluations, at least 1 (35 NFE Heun = 18 steps).
    pub fn steps_for_nfe(self, nfe: usize) -> usize {
        match self {
            OdeSolver::Euler => nfe.max(1),
            OdeSolver::Heun => nfe.div_ceil(2).max(1),
        }
    }

    /// EDM's sampling grid (Karras, `rho = 7`, ending at 0) for `nfe` evaluations of this solver.
    pub fn grid(self, nfe: usize, range: &NoiseRange) -> Vec<f64> {
        karras_sampling(self.steps_for_nfe(nfe), range.sigma_min, range.sigma_max, 7.0)
    }
}

/// Solves the PF-ODE `dx/dsigma = (x - D(x, sigma)) / sigma` (EDM eq. 3, Algorithm 1) along the
/// decreasing grid `sigmas` (last entry 0), from `x = sigmas[0] z`. `on_step(x)` sees every state,
/// including the start, for drawing trajectories. `z: [B, D]` -> `[B, D]`.
pub fn solve_pf_ode(
    model: &Denoiser,
    cond: Guided,
    z: Tensor<2>,
    sigmas: &[f64],
    solver: OdeSolver,
    mut on_step: impl FnMut(&Tensor<2>),
) -> Tensor<2> {
    let mut x = z * sigmas[0];
    on_step(&x);
    for w in sigmas.windows(2) {
        x = ode_step(model, cond, x, &[w[0]], &[w[1]], solver);
        on_step(&x);
    }
    x
}

/// One Euler or Heun step of the PF-ODE `dx/dsigma = (x - D(x, sigma)) / sigma` from `sigma` to `sigma_next`
/// (one level per row, or one for all; EDM Algorithm 1, CM Algorithm 2's `Phi`). Heun falls back to
/// Euler when `sigma_next` is 0 (EDM's last step). `x: [B, D]` -> `[B, D]`.
pub fn ode_step(
    model: &Denoiser,
    cond: Guided,
    x: Tensor<2>,
    sigma: &[f64],
    sigma_next: &[f64],
    solver: OdeSolver,
) -> Tensor<2> {
    let device = x.device();
    let col = |v: &[f64]| column(v, &device);
    let step: Vec<f64> = sigma_next.iter().zip(sigma).map(|(n, s)| n - s).collect();
    let d = (x.clone() - cond.denoise(model, x.clone(), sigma)) / col(sigma);
    let x_euler = x.clone() + d.clone() * col(&step);
    if solver == OdeSolver::Heun && sigma_next.iter().all(|&s| s > 0.0) {
        let d_next = (x_euler.clone() - cond.denoise(model, x_euler, sigma_next)) / col(sigma_next);
        x + (d + d_next) * col(&step) * 0.5
    } else {
        x_euler
    }
}

/// Diffusion sampling of `rows` with seed `noise`: `solver` on its EDM grid for `nfe` evaluations,
/// from the same `z` rows as [`consistency_sample`]. `on_step` sees every state.
#[allow(clippy::too_many_arguments)]
pub fn ode_sample(
    model: &Denoiser,
    cond: Guided,
    noise: &Noise,
    rows: core::ops::Range<usize>,
    solver: OdeSolver,
    nfe: usize,
    device: &Device,
    on_step: impl FnMut(&Tensor<2>),
) -> Tensor<2> {
    let z = normals(noise, 0, rows.start, rows.len(), model.dim(), device);
    solve_pf_ode(model, cond, z, &solver.grid(nfe, &model.range), solver, on_step)
}
