//! An MLP denoiser for low-dimensional data (2D toys): residual blocks with a time embedding.

use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::TimeEmbedding;
use crate::jvp::{Dual, embed, linear};

/// Architecture of [`Mlp`]; saved in every model card.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpConfig {
    /// Data dimension `D` (2 for the 2D datasets).
    pub dim: usize,
    /// Width of the hidden layers.
    pub hidden: usize,
    /// Number of residual blocks.
    pub blocks: usize,
    /// Size of the time-embedding vector (even).
    pub emb_dim: usize,
    /// How `c_noise` is embedded.
    pub embedding: TimeEmbedding,
    /// Dropout rate inside each block (iCT uses dropout; the mask is shared by student and target).
    #[serde(default)]
    pub dropout: f64,
}

impl MlpConfig {
    /// Checks sizes before any tensor is made.
    pub fn validate(&self) -> Result<(), String> {
        if self.dim == 0 || self.hidden == 0 || self.emb_dim < 2 || !self.emb_dim.is_multiple_of(2) {
            return Err(format!(
                "need dim > 0, hidden > 0 and an even emb_dim >= 2, got dim = {}, hidden = {}, emb_dim = {}",
                self.dim, self.hidden, self.emb_dim
            ));
        }
        if self.hidden > 65_536 || self.blocks > 256 || self.emb_dim > 16_384 || self.dim > 65_536 {
            return Err(format!(
                "network too large: need hidden <= 65536, blocks <= 256, emb_dim <= 16384, dim <= 65536, got hidden = {}, blocks = {}, emb_dim = {}, dim = {}",
                self.hidden, self.blocks, self.emb_dim, self.dim
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        self.embedding.validate()
    }

    /// Trainable parameters (every tensor of `init`), without building anything.
    pub fn parameters(&self) -> u64 {
        let (d, h, e, b) = (self.dim as u64, self.hidden as u64, self.emb_dim as u64, self.blocks as u64);
        let lin = |i: u64, o: u64| i * o + o;
        lin(d, h) + lin(e, h) + lin(h, h) + b * 3 * lin(h, h) + lin(h, d)
    }

    pub fn init(&self, device: &Device) -> Mlp {
        let h = self.hidden;
        Mlp {
            input: LinearConfig::new(self.dim, h).init(device),
            time_1: LinearConfig::new(self.emb_dim, h).init(device),
            time_2: LinearConfig::new(h, h).init(device),
            blocks: (0..self.blocks)
                .map(|_| Block {
                    lin_1: LinearConfig::new(h, h).init(device),
                    time: LinearConfig::new(h, h).init(device),
                    lin_2: LinearConfig::new(h, h).with_initializer(Initializer::Zeros).init(device),
                })
                .collect(),
            output: LinearConfig::new(h, self.dim).with_initializer(Initializer::Zeros).init(device),
            freqs: self.embedding.frequencies(self.emb_dim),
            dropout: self.dropout,
        }
    }
}

#[derive(Module, Debug)]
pub struct Block {
    lin_1: Linear,
    time: Linear,
    lin_2: Linear,
}

/// `F(x, c_noise)`: `h = W_in x`; per block `h += W_2 drop(silu(W_1 silu(h) + W_t temb)))`; `out = W_out silu(h)`.
#[derive(Module, Debug)]
pub struct Mlp {
    input: Linear,
    time_1: Linear,
    time_2: Linear,
    blocks: Vec<Block>,
    output: Linear,
    #[module(skip)]
    freqs: Vec<f32>,
    #[module(skip)]
    dropout: f64,
}

/// Dropout keep-masks, one `[B, features]` tensor per block (`hidden` for the MLP, `C·H·W` for U-Net blocks), already scaled by `1 / (1 - p)`.
/// Passing the same masks to two forward passes gives iCT's shared dropout.
pub struct DropoutMasks(pub Vec<Tensor<2>>);

impl DropoutMasks {
    /// The same masks without autodiff, for a network run on the inner backend.
    pub fn inner(&self) -> Self {
        Self(self.0.iter().map(|m| m.clone().inner()).collect())
    }
}

impl Mlp {
    /// Dropout rate the network was built with.
    pub fn dropout(&self) -> f64 {
        self.dropout
    }

    /// Data dimension `D` (input and output width).
    pub fn data_dim(&self) -> usize {
        self.input.weight.dims()[0]
    }

    /// Features per row of each block's dropout mask (`hidden`), one per block.
    pub fn mask_sizes(&self) -> Vec<usize> {
        vec![self.input.weight.dims()[1]; self.blocks.len()]
    }

    /// `x: [B, D]`, `c_noise: [B]` or `[1]` (broadcast) -> `[B, D]`.
    pub fn forward(&self, x: Tensor<2>, c_noise: Tensor<1>, masks: Option<&DropoutMasks>) -> Tensor<2> {
        self.forward_dual(Dual::primal(x), Dual::primal(c_noise), masks).v
    }

    /// The forward pass with tangents (forward-mode JVP); without tangents it is the plain forward.
    pub fn forward_dual(&self, x: Dual<2>, c_noise: Dual<1>, masks: Option<&DropoutMasks>) -> Dual<2> {
        let temb = linear(&self.time_2, linear(&self.time_1, embed(&self.freqs, c_noise)).silu());
        let mut h = linear(&self.input, x);
        for (i, block) in self.blocks.iter().enumerate() {
            let mut a = (linear(&block.lin_1, h.clone().silu()) + linear(&block.time, temb.clone())).silu();
            if let Some(masks) = masks {
                a = a.mul_const(masks.0[i].clone());
            }
            h = h + linear(&block.lin_2, a);
        }
        linear(&self.output, h.silu())
    }
}
