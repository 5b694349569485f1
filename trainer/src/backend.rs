//! The one place where a concrete burn backend is named.

use anyhow::{Result, bail};
use burn::prelude::Device;
use serde::{Deserialize, Serialize};

/// Which burn device runs a command.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// burn's flex backend (pure Rust, SIMD, rayon): the fastest CPU backend here.
    #[default]
    Cpu,
    /// burn's wgpu backend on whichever graphics API the machine has (Vulkan, Metal, DX12; build with
    /// `--features wgpu`).
    Wgpu,
    /// burn's wgpu backend pinned to Vulkan, compiling kernels to SPIR-V (build with `--features vulkan`).
    Vulkan,
    /// burn's CUDA backend (build with `--features cuda`).
    Cuda,
}

impl Backend {
    pub fn device(self) -> Result<Device> {
        match self {
            Backend::Cpu => Ok(Device::flex()),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Ok(Device::wgpu(Default::default())),
            #[cfg(feature = "vulkan")]
            Backend::Vulkan => Ok(Device::vulkan(Default::default())),
            #[cfg(feature = "cuda")]
            Backend::Cuda => Ok(Device::cuda(0)),
            #[allow(unreachable_patterns)]
            other => bail!(
                "backend `{}` is not compiled into this cm; rebuild with `cargo build --release -p cm-trainer --features {}`",
                other.name(),
                other.name()
            ),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Wgpu => "wgpu",
            Backend::Vulkan => "vulkan",
            Backend::Cuda => "cuda",
        }
    }

    /// `n` devices for a data-parallel run (`--devices n`): GPUs `0..n` (CUDA ordinals, or wgpu's
    /// discrete GPUs). On the CPU every shard shares the one flex device, which exercises the same
    /// code path (burn's multi-device gradient accumulation) without a speed-up.
    pub fn devices(self, n: usize) -> Result<Vec<Device>> {
        if n == 0 || n > 64 {
            bail!("--devices must be between 1 and 64, got {n}");
        }
        if n == 1 {
            return Ok(vec![self.device()?]);
        }
        match self {
            Backend::Cpu => Ok(vec![Device::flex(); n]),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => {
                Ok((0..n).map(|i| Device::wgpu(burn::tensor::DeviceKind::DiscreteGpu(i))).collect())
            }
            #[cfg(feature = "vulkan")]
            Backend::Vulkan => {
                Ok((0..n).map(|i| Device::vulkan(burn::tensor::DeviceKind::DiscreteGpu(i))).collect())
            }
            #[cfg(feature = "cuda")]
            Backend::Cuda => Ok((0..n).map(Device::cuda).collect()),
            #[allow(unreachable_patterns)]
            other => other.device().map(|_| unreachable!("device() fails for backends not compiled in")),
        }
    }
}
