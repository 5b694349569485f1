//! Raw networks `F(c_in x, c_noise)`; the preconditioning lives in [`crate::model`].
//!
//! Every network maps flat rows `[B, D]` to `[B, D]` (images are `D = C·H·W`, channel-major), so the
//! objectives and samplers never know which network they drive.

pub mod embedding;
pub mod mlp;
pub mod unet;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

pub use embedding::TimeEmbedding;

use crate::jvp::Dual;
pub use mlp::{DropoutMasks, Mlp, MlpConfig};
pub use unet::{AdaNorm, MAX_CLASSES, UNet, UNetConfig};

/// Which network, with its sizes; saved in every model card as `architecture` with a `kind` tag.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Architecture {
    /// Residual MLP for low-dimensional data (2D toys).
    Mlp(MlpConfig),
    /// U-Net for images.
    #[serde(rename = "unet")]
    UNet(UNetConfig),
}

impl Architecture {
    /// The same network with dropout off: two architectures whose weights are interchangeable (dropout is
    /// a training setting, everything else, the time embedding's frequencies included, is the function).
    pub fn without_dropout(&self) -> Architecture {
        match self {
            Architecture::Mlp(c) => Architecture::Mlp(MlpConfig { dropout: 0.0, ..c.clone() }),
            Architecture::UNet(c) => Architecture::UNet(UNetConfig { dropout: 0.0, ..c.clone() }),
        }
    }

    /// The most parameters a network may have: 1 GiB of f32 weights. A card or recipe is checked
    /// against it before anything is allocated.
    pub const MAX_PARAMETERS: u64 = 1 << 28;

    /// Checks sizes before any tensor is made, the parameter count included.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Architecture::Mlp(c) => c.validate()?,
            Architecture::UNet(c) => c.validate()?,
        }
        let n = self.parameters();
        if n > Self::MAX_PARAMETERS {
            return Err(format!(
                "the network would have {n} parameters ({:.1} GiB of weights); at most {} are allowed",
                n as f64 * 4.0 / (1u64 << 30) as f64,
                Self::MAX_PARAMETERS
            ));
        }
        Ok(())
    }

    /// Trainable parameters, counted from the config (call after the network's own checks).
    pub fn parameters(&self) -> u64 {
        match self {
            Architecture::Mlp(c) => c.parameters(),
            Architecture::UNet(c) => c.parameters(),
        }
    }

    /// Floats one row holds at the peak of a forward pass without autodiff (sampling), roughly.
    pub fn inference_floats_per_row(&self) -> u64 {
        match self {
            Architecture::Mlp(c) => 4 * c.hidden as u64 + 4 * c.dim as u64,
            Architecture::UNet(c) => c.inference_floats_per_row(),
        }
    }

    /// Floats of activation one training sample keeps for the backward pass, roughly.
    pub fn activations_per_sample(&self) -> u64 {
        match self {
            Architecture::Mlp(c) => 10 * (c.blocks as u64 + 2) * c.hidden as u64 + 4 * c.dim as u64,
            Architecture::UNet(c) => c.activations_per_sample(),
        }
    }

    pub fn init(&self, device: &Device) -> Network {
        match self {
            Architecture::Mlp(c) => Network::Mlp(c.init(device)),
            Architecture::UNet(c) => Network::UNet(c.init(device)),
        }
    }

    /// Data dimension `D`.
    pub fn dim(&self) -> usize {
        match self {
            Architecture::Mlp(c) => c.dim,
            Architecture::UNet(c) => c.dim(),
        }
    }

    /// Classes a conditional network takes (0: unconditional; the MLP has none).
    pub fn classes(&self) -> usize {
        match self {
            Architecture::Mlp(_) => 0,
            Architecture::UNet(c) => c.classes,
        }
    }

    /// `[C, H, W]` for image networks.
    pub fn image_shape(&self) -> Option<[usize; 3]> {
        match self {
            Architecture::Mlp(_) => None,
            Architecture::UNet(c) => Some([c.channels, c.resolution, c.resolution]),
        }
    }
}

/// A built network. Weights are saved without the variant name (`skip_enum_variants`), so an MLP's
/// tensors are named `net.input.weight`, not `net.Mlp.input.weight`.
// burn's Module derive needs the variants unboxed; a network is built once, so the size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Network {
    Mlp(Mlp),
    UNet(UNet),
}

impl Network {
    /// `x: [B, D]`, `c_noise: [B]` or `[1]`, `labels: [B, classes]` one-hot rows (conditional networks;
    /// ignored by the others, which have no classes) -> `[B, D]`.
    pub fn forward(
        &self,
        x: Tensor<2>,
        c_noise: Tensor<1>,
        labels: Option<&Tensor<2>>,
        masks: Option<&DropoutMasks>,
    ) -> Tensor<2> {
        match self {
            Network::Mlp(n) => n.forward(x, c_noise, masks),
            Network::UNet(n) => n.forward(x, c_noise, labels, masks),
        }
    }

    /// The forward pass with tangents: `(F, dF/dx · ẋ + dF/dc · ċ)` when `x` or `c_noise` carry one
    /// (then `c_noise` must have one entry per row). Without tangents it equals [`forward`](Self::forward).
    pub fn forward_dual(
        &self,
        x: Dual<2>,
        c_noise: Dual<1>,
        labels: Option<&Tensor<2>>,
        masks: Option<&DropoutMasks>,
    ) -> Dual<2> {
        match self {
            Network::Mlp(n) => n.forward_dual(x, c_noise, masks),
            Network::UNet(n) => n.forward_dual(x, c_noise, labels, masks),
        }
    }

    /// Classes the network is conditioned on (0: unconditional).
    pub fn classes(&self) -> usize {
        match self {
            Network::Mlp(_) => 0,
            Network::UNet(n) => n.classes(),
        }
    }

    pub fn dropout(&self) -> f64 {
        match self {
            Network::Mlp(n) => n.dropout(),
            Network::UNet(n) => n.dropout(),
        }
    }

    /// Data dimension `D`.
    pub fn data_dim(&self) -> usize {
        match self {
            Network::Mlp(n) => n.data_dim(),
            Network::UNet(n) => n.data_dim(),
        }
    }

    /// `[C, H, W]` for image networks.
    pub fn image_shape(&self) -> Option<[usize; 3]> {
        match self {
            Network::Mlp(_) => None,
            Network::UNet(n) => Some(n.image_shape()),
        }
    }

    /// Features per row of each dropout mask, in forward order.
    pub fn mask_sizes(&self) -> Vec<usize> {
        match self {
            Network::Mlp(n) => n.mask_sizes(),
            Network::UNet(n) => n.mask_sizes(),
        }
    }
}
