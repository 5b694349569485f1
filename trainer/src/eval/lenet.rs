//! A small LeNet-style classifier (LeCun et al. 1998, with ReLU and max-pooling): the feature extractor
//! behind our own FID/KID/precision-recall, since no Inception weights exist offline.
//!
//! `[B, C·H·W]` rows in `[-1, 1]` -> conv 3×3 (32) -> ReLU -> pool 2 -> conv 3×3 (64) -> ReLU -> pool 2 ->
//! linear (`features`) -> ReLU = the feature vector -> linear (classes) = logits.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;
use serde::{Deserialize, Serialize};

/// Architecture of [`LeNet`]; saved in every classifier card.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeNetConfig {
    /// Image channels `C`.
    pub channels: usize,
    /// `H = W`, divisible by 4.
    pub resolution: usize,
    /// Number of classes.
    pub classes: usize,
    /// Width of the feature layer (the vectors the metrics compare).
    pub features: usize,
}

impl LeNetConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=4).contains(&self.channels)
            || self.resolution < 4
            || self.resolution > 256
            || !self.resolution.is_multiple_of(4)
        {
            return Err(format!(
                "need 1-4 channels and a resolution in 4..=256 divisible by 4, got {} channels at {} px",
                self.channels, self.resolution
            ));
        }
        if !(2..=1000).contains(&self.classes) || !(2..=4096).contains(&self.features) {
            return Err(format!(
                "need 2-1000 classes and 2-4096 features, got {} classes and {} features",
                self.classes, self.features
            ));
        }
        Ok(())
    }

    /// Trainable parameters (every tensor of `init`), counted without building anything.
    pub fn parameters(&self) -> u64 {
        let q = (self.resolution / 4) as u64;
        let (c, f, k) = (self.channels as u64, self.features as u64, self.classes as u64);
        (9 * c * 32 + 32) + (9 * 32 * 64 + 64) + (64 * q * q * f + f) + (f * k + k)
    }

    pub fn init(&self, device: &Device) -> LeNet {
        let conv = |cin, cout| {
            Conv2dConfig::new([cin, cout], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        let q = self.resolution / 4;
        LeNet {
            conv_1: conv(self.channels, 32),
            conv_2: conv(32, 64),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            fc: LinearConfig::new(64 * q * q, self.features).init(device),
            head: LinearConfig::new(self.features, self.classes).init(device),
            shape: [self.channels, self.resolution, self.resolution],
        }
    }
}

#[derive(Module, Debug)]
pub struct LeNet {
    conv_1: Conv2d,
    conv_2: Conv2d,
    pool: MaxPool2d,
    fc: Linear,
    head: Linear,
    #[module(skip)]
    shape: [usize; 3],
}

impl LeNet {
    /// `x: [B, C·H·W]` -> feature vectors `[B, features]`.
    pub fn features(&self, x: Tensor<2>) -> Tensor<2> {
        let b = x.dims()[0];
        let [c, h, w] = self.shape;
        let h1 = self.pool.forward(relu(self.conv_1.forward(x.reshape([b, c, h, w]))));
        let h2 = self.pool.forward(relu(self.conv_2.forward(h1)));
        relu(self.fc.forward(h2.reshape([b as i32, -1])))
    }

    /// `[B, features]` -> logits `[B, classes]`.
    pub fn logits(&self, features: Tensor<2>) -> Tensor<2> {
        self.head.forward(features)
    }
}
