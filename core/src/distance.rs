//! Distances `d(x, y)` between student and target outputs, per row.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// The metric `d` of the consistency loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Distance {
    /// Squared Euclidean distance `||x - y||^2` (CM).
    L2,
    /// Pseudo-Huber `sqrt(||x - y||^2 + c^2) - c`, `c = 0.00054 sqrt(D)` (iCT §3.3).
    PseudoHuber,
}

impl Distance {
    /// iCT's pseudo-Huber constant for data of dimension `dim`: `c = 0.00054 sqrt(dim)`.
    pub fn pseudo_huber_c(dim: usize) -> f64 {
        0.00054 * libm::sqrt(dim as f64)
    }

    /// `x, y: [B, D]` -> `[B]`.
    pub fn apply(self, x: Tensor<2>, y: Tensor<2>) -> Tensor<1> {
        let dim = x.dims()[1];
        let sq = (x - y).powf_scalar(2.0).sum_dim(1).squeeze_dim::<1>(1); // [B]
        match self {
            Distance::L2 => sq,
            Distance::PseudoHuber => {
                let c = Self::pseudo_huber_c(dim);
                (sq + c * c).sqrt() - c
            }
        }
    }
}
