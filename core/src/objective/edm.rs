//! EDM diffusion training (Karras et al. 2022, §5 and Table 1): the teacher.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::Streams;
use crate::host::{column, vector};
use crate::model::Denoiser;
use crate::rng::Noise;
use crate::sample::normals;

/// EDM's training noise distribution `ln sigma ~ N(P_mean, P_std^2)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdmConfig {
    /// `P_mean` (EDM: -1.2).
    #[serde(default = "EdmConfig::default_p_mean")]
    pub p_mean: f64,
    /// `P_std` (EDM: 1.2).
    #[serde(default = "EdmConfig::default_p_std")]
    pub p_std: f64,
}

impl EdmConfig {
    fn default_p_mean() -> f64 {
        -1.2
    }
    fn default_p_std() -> f64 {
        1.2
    }

    /// Checks the lognormal's parameters, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.p_mean.is_finite() && self.p_std > 0.0 && self.p_std.is_finite()) {
            return Err(format!(
                "field `edm`: need a finite p_mean and p_std > 0, got p_mean = {}, p_std = {}",
                self.p_mean, self.p_std
            ));
        }
        Ok(())
    }
}

impl Default for EdmConfig {
    fn default() -> Self {
        Self { p_mean: Self::default_p_mean(), p_std: Self::default_p_std() }
    }
}

/// EDM loss `E[lambda(sigma) ||D(x0 + sigma z, sigma) - x0||^2]`, `lambda = (sigma^2 + sd^2)/(sigma sd)^2`,
/// averaged over rows and dimensions. `x0: [B, D]` -> scalar `[1]`.
pub fn edm_loss(
    model: &Denoiser,
    x0: Tensor<2>,
    labels: Option<&Tensor<2>>,
    cfg: &EdmConfig,
    noise: &Noise,
    streams: Streams,
) -> Tensor<1> {
    let device = x0.device();
    let [b, d] = x0.dims();
    let sd = model.range.sigma_data;
    let sigma: Vec<f64> = noise
        .normals(streams.level(), streams.first_row, b, 1)
        .into_iter()
        .map(|n| libm::exp(cfg.p_mean + cfg.p_std * n as f64))
        .collect();
    let z = normals(noise, streams.z(), streams.first_row, b, d, &device);
    let sig = column(&sigma, &device);
    let lambda: Vec<f64> = sigma.iter().map(|&s| (s * s + sd * sd) / (s * sd).powi(2)).collect();
    let lambda = vector(&lambda, &device);
    let y = x0.clone() + z * sig;
    let masks = model.dropout_masks(b, noise, streams, &device);
    let denoised = model.forward_masked(y, &sigma, labels, masks.as_ref());
    let per_row = (denoised - x0).powf_scalar(2.0).mean_dim(1).squeeze_dim::<1>(1);
    (per_row * lambda).mean()
}
