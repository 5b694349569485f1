//! A network wrapped into one denoiser interface: `D(x, sigma) = c_skip x + c_out F(c_in x, c_noise)`.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::host::{column, rows, vector};
use crate::net::{Architecture, DropoutMasks, Network};
use crate::param::{NoiseRange, Parameterisation, Scalings};
use crate::rng::Noise;

/// Everything needed to build a [`Denoiser`] before loading weights; part of every model card.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The raw network.
    pub architecture: Architecture,
    /// How the network's output becomes the model's output.
    pub parameterisation: Parameterisation,
    /// Noise range and data scale.
    #[serde(flatten)]
    pub range: NoiseRange,
}

impl ModelConfig {
    pub fn validate(&self) -> Result<(), String> {
        self.architecture.validate()?;
        self.range.validate()
    }

    pub fn init(&self, device: &Device) -> Denoiser {
        Denoiser {
            net: self.architecture.init(device),
            parameterisation: self.parameterisation,
            range: self.range,
        }
    }
}

/// One-hot rows `[n, classes]` for class labels: `Some(c)` sets column `c`, `None` leaves a zero row (no
/// class: what a network trained with label dropout also learns). Fails on a label outside `0..classes`.
pub fn one_hot(labels: &[Option<usize>], classes: usize, device: &Device) -> Result<Tensor<2>, String> {
    if let Some(c) = labels.iter().flatten().find(|&&c| c >= classes) {
        return Err(format!(
            "class {c} is out of range: the model has {classes} classes (0 to {})",
            classes.max(1) - 1
        ));
    }
    let mut v = vec![0f32; labels.len() * classes];
    for (i, c) in labels.iter().enumerate() {
        if let Some(c) = c {
            v[i * classes + c] = 1.0;
        }
    }
    Ok(rows(&v, labels.len(), classes, device))
}

/// The most guidance a sampler or recipe may ask for (the papers use 1-10).
pub const MAX_GUIDANCE: f64 = 100.0;

/// What a diffusion model's denoiser is asked along its PF-ODE: each row's class (one-hot, see
/// [`one_hot`]) and the classifier-free guidance weight `w` (Ho & Salimans 2022) in EDM coordinates,
/// `D_w(x, sigma, c) = D(x, sigma) + w (D(x, sigma, c) - D(x, sigma))`: `w = 1` is the plain conditional
/// denoiser, `w = 0` the unconditional one (the label-dropout branch), `w > 1` pushes away from it. The
/// score is linear in `D` (`s = (D - x) / sigma^2`), so this is the guided score of the paper.
#[derive(Clone, Copy, Debug)]
pub struct Guided<'a> {
    pub labels: Option<&'a Tensor<2>>,
    pub guidance: f64,
}

impl<'a> Guided<'a> {
    /// No class: the unconditional denoiser.
    pub const NONE: Guided<'static> = Guided { labels: None, guidance: 1.0 };

    /// The classes of `labels`, without guidance (`w = 1`).
    pub fn labels(labels: Option<&'a Tensor<2>>) -> Self {
        Self { labels, guidance: 1.0 }
    }

    /// `D_w(x, sigma, c)` of `model`: one pass where there are no labels, `w = 1` (the conditional
    /// model) or `w = 0` (the unconditional one), else two.
    pub fn denoise(&self, model: &Denoiser, x: Tensor<2>, sigma: &[f64]) -> Tensor<2> {
        match self.labels {
            Some(_) if self.guidance == 0.0 => model.forward(x, sigma),
            Some(labels) if self.guidance != 1.0 => {
                let unconditional = model.forward(x.clone(), sigma);
                let conditional = model.forward_labelled(x, sigma, Some(labels));
                unconditional.clone() + (conditional - unconditional) * self.guidance
            }
            labels => model.forward_labelled(x, sigma, labels),
        }
    }
}

/// Checks a guidance weight: finite and in `[0, MAX_GUIDANCE]`.
pub fn check_guidance(w: f64) -> Result<(), String> {
    if (0.0..=MAX_GUIDANCE).contains(&w) {
        Ok(())
    } else {
        Err(format!(
            "guidance must be a number from 0 to {MAX_GUIDANCE} (1: none, the plain conditional model), got {w}"
        ))
    }
}

/// A denoiser (EDM) or consistency function (CM, TrigFlow) in EDM coordinates.
#[derive(Module, Debug)]
pub struct Denoiser {
    pub net: Network,
    #[module(skip)]
    pub parameterisation: Parameterisation,
    #[module(skip)]
    pub range: NoiseRange,
}

impl Denoiser {
    /// Data dimension `D`.
    pub fn dim(&self) -> usize {
        self.net.data_dim()
    }

    /// Classes the model is conditioned on (0: unconditional).
    pub fn classes(&self) -> usize {
        self.net.classes()
    }

    /// `[C, H, W]` for image models, `None` for points.
    pub fn image_shape(&self) -> Option<[usize; 3]> {
        self.net.image_shape()
    }

    /// `x: [B, D]` at noise levels `sigma` (one per row, or one for all) -> `[B, D]` estimate of `x_0`
    /// (a conditional model asked for no class).
    pub fn forward(&self, x: Tensor<2>, sigma: &[f64]) -> Tensor<2> {
        self.forward_masked(x, sigma, None, None)
    }

    /// As [`forward`](Self::forward), for the classes of `labels` (`[B, classes]` one-hot rows, see
    /// [`one_hot`]; `None` or a zero row: no class).
    pub fn forward_labelled(&self, x: Tensor<2>, sigma: &[f64], labels: Option<&Tensor<2>>) -> Tensor<2> {
        self.forward_masked(x, sigma, labels, None)
    }

    /// As [`forward_labelled`](Self::forward_labelled), with dropout masks (training only).
    pub fn forward_masked(
        &self,
        x: Tensor<2>,
        sigma: &[f64],
        labels: Option<&Tensor<2>>,
        masks: Option<&DropoutMasks>,
    ) -> Tensor<2> {
        let device = x.device();
        let b = x.dims()[0];
        let sigma_at = |i: usize| if sigma.len() == 1 { sigma[0] } else { sigma[i] };
        let s: Vec<_> = (0..b).map(|i| self.parameterisation.scalings(sigma_at(i), &self.range)).collect();
        let coefficient = |c: fn(&Scalings) -> f64| s.iter().map(c).collect::<Vec<f64>>();
        let c_skip = column(&coefficient(|s| s.c_skip), &device);
        let c_out = column(&coefficient(|s| s.c_out), &device);
        let c_in = column(&coefficient(|s| s.c_in), &device);
        let c_noise = vector(&coefficient(|s| s.c_noise), &device);
        let f = self.net.forward(x.clone() * c_in, c_noise, labels, masks);
        x * c_skip + f * c_out
    }

    /// Standard deviation of the prior at `sigma_max` in EDM coordinates: `sigma_max` for EDM/CM, and
    /// `sigma_data / cos t_max = sqrt(sigma_max^2 + sigma_data^2)` for TrigFlow (sCM: `x_T = sigma_data z`).
    pub fn prior_std(&self) -> f64 {
        let r = &self.range;
        match self.parameterisation {
            Parameterisation::TrigFlow => libm::sqrt(r.sigma_max * r.sigma_max + r.sigma_data * r.sigma_data),
            _ => r.sigma_max,
        }
    }

    /// Default `tau` list for `k`-step sampling: around iCT's 0.821 for EDM-form models, around sCM's
    /// `t_mid = 1.1` (`sigma = sigma_data tan 1.1`) for TrigFlow models.
    pub fn default_taus(&self, k: usize) -> Vec<f64> {
        let r = &self.range;
        let centre = match self.parameterisation {
            Parameterisation::TrigFlow => crate::schedule::tau_trigflow(r.sigma_data),
            _ => crate::schedule::TAU_ICT,
        };
        crate::schedule::taus_around(centre, k, r.sigma_min, r.sigma_max)
    }

    /// Fresh dropout masks for `b` rows of a training step (iCT: one draw shared by student and target).
    pub fn dropout_masks(
        &self,
        b: usize,
        noise: &Noise,
        streams: crate::objective::Streams,
        device: &Device,
    ) -> Option<DropoutMasks> {
        let stream = streams.dropout();
        let p = self.net.dropout();
        if p <= 0.0 {
            return None;
        }
        let keep = 1.0 / (1.0 - p);
        let masks = (self.net.mask_sizes().into_iter().enumerate())
            .map(|(k, size)| {
                let u = noise.uniforms(
                    stream.wrapping_mul(64).wrapping_add(k as u64),
                    streams.first_row,
                    b,
                    size,
                );
                let m: Vec<f32> =
                    u.into_iter().map(|u| if (u as f64) < p { 0.0 } else { keep as f32 }).collect();
                rows(&m, b, size, device)
            })
            .collect();
        Some(DropoutMasks(masks))
    }
}
