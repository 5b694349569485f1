//! The one place where a concrete burn backend is named.

use std::sync::Mutex;

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
    /// The device for GPU 0 (or the CPU). GPU backends are checked and started here, once per
    /// process: a missing driver, loader, NVRTC or adapter is an error naming what is missing.
    pub fn device(self) -> Result<Device> {
        self.gpu(0)
    }

    /// The device of GPU `index` (CUDA ordinal, or wgpu's `index`-th discrete GPU), started once.
    fn gpu(self, index: usize) -> Result<Device> {
        if self == Backend::Cpu {
            return Ok(Device::flex());
        }
        crate::gpu::prepare(self)?;
        static STARTED: Mutex<Vec<(Backend, usize, Device)>> = Mutex::new(Vec::new());
        let mut started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((.., d)) = started.iter().find(|(b, i, _)| (*b, *i) == (self, index)) {
            return Ok(d.clone());
        }
        let device = self.start(index)?;
        crate::gpu::note_cold_cache();
        started.push((self, index, device.clone()));
        Ok(device)
    }

    fn start(self, index: usize) -> Result<Device> {
        #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
        let _ = index;
        #[cfg(feature = "wgpu")]
        let kind = || match index {
            0 => burn::tensor::DeviceKind::DefaultDevice,
            i => burn::tensor::DeviceKind::DiscreteGpu(i),
        };
        match self {
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => crate::gpu::vulkan::device(self, burn::tensor::wgpu::WgpuBackend::Auto, kind()),
            #[cfg(feature = "wgpu")]
            Backend::Vulkan => {
                crate::gpu::vulkan::device(self, burn::tensor::wgpu::WgpuBackend::Vulkan, kind())
            }
            #[cfg(feature = "cuda")]
            Backend::Cuda => crate::gpu::cuda::check(index).map(|()| Device::cuda(index)),
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
            gpu => (0..n).map(|i| gpu.gpu(i)).collect(),
        }
    }
}
