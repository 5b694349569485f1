//! Backend-independent playground state: loaded models and the sampling calls the page makes.
//! Compiles natively too, so its logic is tested without a browser.

use std::collections::BTreeMap;
use std::rc::Rc;

use burn::prelude::*;
use cm_core::edit::{Edit, interpolate};
use cm_core::rng::Noise;
use cm_core::sample::{OdeSolver, consistency_sample, ode_sample};
use cm_core::{Denoiser, ModelCard};

/// A model ready to sample.
pub struct Loaded {
    pub card: ModelCard,
    pub model: Denoiser,
}

/// All loaded models on one device.
pub struct Playground {
    pub device: Device,
    pub models: BTreeMap<String, Rc<Loaded>>,
}

impl Playground {
    pub fn new(device: Device) -> Self {
        Self { device, models: BTreeMap::new() }
    }

    /// Validates a card and its weights and keeps the model under the card's name.
    pub fn load(&mut self, card_json: &str, weights: Vec<u8>) -> Result<String, String> {
        let card = ModelCard::from_json(card_json).map_err(|e| format!("config.json: {e}"))?;
        let model = card
            .load(weights, &self.device)
            .map_err(|e| format!("model.safetensors for {}: {e}", card.name))?;
        let name = card.name.clone();
        self.models.insert(name.clone(), Rc::new(Loaded { card, model }));
        Ok(name)
    }

    pub fn get(&self, name: &str) -> Result<Rc<Loaded>, String> {
        self.models.get(name).cloned().ok_or_else(|| format!("no model named {name:?} is loaded"))
    }
}

impl Loaded {
    /// The `k`-step default taus of this model.
    pub fn default_taus(&self, k: usize) -> Vec<f64> {
        self.model.default_taus(k)
    }

    /// Consistency samples `[n, D]` (not yet read back), same rows as `cm sample` for the seed.
    pub fn sample(&self, taus: &[f64], n: usize, seed: u64, device: &Device) -> Result<Tensor<2>, String> {
        if !self.card.is_consistency() {
            return Err(format!("{} is a diffusion model: use the teacher sampler", self.card.name));
        }
        consistency_sample(&self.model, &Noise::new(seed), 0, n, taus, device)
    }

    /// The teacher's noise levels for `nfe` Heun evaluations: one per state of a trajectory.
    pub fn teacher_sigmas(&self, nfe: usize) -> Vec<f64> {
        OdeSolver::Heun.grid(nfe, &self.model.range)
    }

    /// The model's output for points `x: [n, D]` at one noise level (a consistency model's jump
    /// to the trajectory's origin, or a teacher's denoised estimate).
    pub fn denoise(&self, x: &[f32], sigma: f64, device: &Device) -> Result<Tensor<2>, String> {
        let d = self.model.dim();
        if !(x.len().is_multiple_of(d) && sigma > 0.0 && sigma.is_finite()) {
            return Err(format!(
                "need [n, {d}] points and sigma > 0, got {} values and sigma {sigma}",
                x.len()
            ));
        }
        let t = cm_core::host::rows(x, x.len() / d, d, device);
        Ok(self.model.forward(t, &[sigma]))
    }

    /// Heun PF-ODE samples at `nfe` evaluations; with `trajectory`, every intermediate state too
    /// (stacked `[steps + 1, n, D]`).
    pub fn teacher(
        &self,
        nfe: usize,
        n: usize,
        seed: u64,
        device: &Device,
        trajectory: bool,
    ) -> Result<(Tensor<2>, Vec<Tensor<2>>), String> {
        if self.card.is_consistency() {
            return Err(format!("{} is a consistency model, not a diffusion teacher", self.card.name));
        }
        let mut path = Vec::new();
        let x = ode_sample(&self.model, &Noise::new(seed), 0..n, OdeSolver::Heun, nfe, device, |x| {
            if trajectory {
                path.push(x.clone())
            }
        });
        Ok((x, path))
    }

    /// The tau list of edit `task` at `sigma` unless the user gives one: `Edit::default_taus` (the
    /// model's 4-step list below the edit's start level), the list `cm edit` uses too.
    pub fn edit_taus(&self, task: &str, sigma: f64) -> Result<Vec<f64>, String> {
        Ok(edit_for(task, &[], 2, sigma)?.default_taus(&self.model))
    }

    /// Zero-shot edit of the image `y` (`[D]`, values in `[-1, 1]`) by `task` (`inpaint` with `mask` (1 =
    /// generate), `colourise`, `super-resolution` by `factor`, `denoise` / `stroke` at `sigma`): `n` results
    /// `[n, D]`, each with its own noise rows of `seed`.
    #[allow(clippy::too_many_arguments)]
    pub fn edit(
        &self,
        task: &str,
        y: &[f32],
        mask: &[f32],
        taus: &[f64],
        sigma: f64,
        factor: usize,
        n: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Tensor<2>, String> {
        if !self.card.is_consistency() {
            return Err(format!(
                "{} is a diffusion model: editing needs a consistency model",
                self.card.name
            ));
        }
        let d = self.model.dim();
        if y.len() != d {
            return Err(format!("the image has {} values, {} expects {d}", y.len(), self.card.name));
        }
        let edit = edit_for(task, mask, factor, sigma)?;
        edit.validate(&self.model, taus)?;
        let y = cm_core::host::rows(&y.repeat(n.max(1)), n.max(1), d, device);
        Ok(edit.run(&self.model, y, taus, &Noise::new(seed), 0))
    }

    /// `n` images along the spherical path between the noises of seeds `a` and `b` (CM §6), sampled with `taus`.
    pub fn interpolate(
        &self,
        a: u64,
        b: u64,
        n: usize,
        taus: &[f64],
        device: &Device,
    ) -> Result<Tensor<2>, String> {
        if !self.card.is_consistency() {
            return Err(format!(
                "{} is a diffusion model: interpolation needs a consistency model",
                self.card.name
            ));
        }
        Ok(interpolate(&self.model, a, b, n.clamp(2, 256), taus, device))
    }
}

/// The edit a page task names (`inpaint` with `mask` (1 = generate), `colourise`, `super-resolution` by
/// `factor`, `denoise` / `stroke` at `sigma`).
fn edit_for(task: &str, mask: &[f32], factor: usize, sigma: f64) -> Result<Edit, String> {
    Ok(match task {
        "inpaint" => Edit::inpaint(mask.to_vec()),
        "colourise" => Edit::colourise(),
        "super-resolution" => Edit::super_resolution(factor),
        "denoise" => Edit::denoise(sigma),
        "stroke" => Edit::stroke(sigma),
        other => {
            return Err(format!(
                "unknown edit {other:?}: expected inpaint, colourise, super-resolution, denoise or stroke"
            ));
        }
    })
}
