//! Time embeddings of `c_noise`.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::rng::Noise;

/// How `c_noise` becomes a feature vector.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", deny_unknown_fields)]
pub enum TimeEmbedding {
    /// Random Fourier features `[cos 2π b c, sin 2π b c]`, `b ~ N(0, scale^2)` (NCSN++). CM (16) and iCT
    /// (0.02) give their scale for the time input `1000 c_noise` of the CM code; on our `c_noise = ln(σ)/4`
    /// the same features need `scale` 1000× larger (iCT: 20). The frequencies come from `seed`, so they are not stored with the weights.
    Fourier { scale: f64, seed: u64 },
    /// Transformer positional embedding `[cos w c, sin w c]`, `w_i = scale · 10000^(-i/half)` (DDPM/ADM; sCM
    /// uses it with a small scale).
    Positional { scale: f64 },
}

impl TimeEmbedding {
    /// The largest `scale` taken (CM's Fourier scale 16, on our `c_noise`, is 16000).
    pub const MAX_SCALE: f64 = 1e5;

    /// `scale` positive, finite and at most [`MAX_SCALE`](Self::MAX_SCALE).
    pub fn validate(&self) -> Result<(), String> {
        let (TimeEmbedding::Fourier { scale, .. } | TimeEmbedding::Positional { scale }) = *self;
        if !(scale > 0.0 && scale <= Self::MAX_SCALE) {
            return Err(format!("embedding.scale must be in (0, {}], got {scale}", Self::MAX_SCALE));
        }
        Ok(())
    }

    /// The `dim / 2` angular frequencies (radians per unit of `c_noise`).
    pub fn frequencies(&self, dim: usize) -> Vec<f32> {
        let half = dim / 2;
        match *self {
            TimeEmbedding::Fourier { scale, seed } => Noise::new(seed)
                .normals(0xF0, 0, half, 1)
                .into_iter()
                .map(|b| (core::f64::consts::TAU * scale * b as f64) as f32)
                .collect(),
            TimeEmbedding::Positional { scale } => {
                (0..half).map(|i| (scale * libm::pow(10_000.0, -(i as f64) / half as f64)) as f32).collect()
            }
        }
    }
}

/// `[n] c_noise -> [n, 2 · freqs.len()]` embedding `[cos(w c), sin(w c)]`.
pub fn embed(freqs: &[f32], c_noise: Tensor<1>) -> Tensor<2> {
    crate::jvp::embed(freqs, crate::jvp::Dual::primal(c_noise)).v
}
