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
    /// burn's wgpu backend (Vulkan, Metal, DX12 or WebGPU; build with `--features wgpu`).
    Wgpu,
    /// burn's CUDA backend (build with `--features cuda`).
    Cuda,
}

impl Backend {
    pub fn device(self) -> Result<Device> {
        match self {
            Backend::Cpu => Ok(Device::flex()),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Ok(Device::wgpu(Default::default())),
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
            Backend::Cuda => "cuda",
        }
    }
}
