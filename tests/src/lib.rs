//! Shared helpers for cm's cross-crate tests.

use burn::prelude::*;

/// Reads a `[n, d]` tensor back to host floats.
pub fn host(t: Tensor<2>) -> Vec<f32> {
    cm_core::host::to_host(t).expect("f32 tensor")
}

/// Largest absolute difference between two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Replaces every parameter with draws from `N(0, std^2)` (the device's seeded RNG): zero-initialised
/// output layers would otherwise make a network `F = 0` and a property test vacuous.
pub struct Randomise(pub f64);

impl burn::module::ModuleMapper for Randomise {
    fn map_float<const D: usize>(
        &mut self,
        p: burn::module::Param<Tensor<D>>,
    ) -> burn::module::Param<Tensor<D>> {
        let std = self.0;
        p.map(|t| Tensor::random(t.shape(), burn::tensor::Distribution::Normal(0.0, std), &t.device()))
    }
}

/// The small test U-Net: 8×8 images, two levels (8 and 16 channels), one block each, 4 groups, a 16-wide
/// positional time embedding; attention at 4 px when `attention`.
pub fn small_unet(
    channels: usize,
    attention: bool,
    dropout: f64,
    ada_norm: cm_core::net::AdaNorm,
) -> cm_core::net::UNetConfig {
    cm_core::net::UNetConfig {
        channels,
        resolution: 8,
        base: 8,
        mult: vec![1, 2],
        res_blocks: 1,
        attention: if attention { vec![4] } else { vec![] },
        groups: 4,
        emb_dim: 16,
        embedding: cm_core::net::TimeEmbedding::Positional { scale: 1.0 },
        dropout,
        ada_norm,
        classes: 0,
    }
}
