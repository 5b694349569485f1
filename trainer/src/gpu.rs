//! Starting a GPU backend: what burn needs on the machine before it touches a GPU, checked first so
//! that a missing piece is one error line naming the backend and the piece, never a panic in a
//! runtime thread.
//!
//! - Vulkan (`--backend wgpu` / `vulkan`): GPU containers often ship the NVIDIA driver without a
//!   Vulkan loader, and with an ICD file naming `libGLX_nvidia.so.0`, which cannot create an
//!   instance without a display. [`prepare`] loads a loader from the cm cache where the system has
//!   none (`scripts/setup.sh --gpu` fetches Debian's `libvulkan1` there) and, on a machine without a
//!   display, points the loader at NVIDIA's EGL ICD instead.
//! - CUDA: the driver library, NVRTC (kernels are compiled as CUDA C++; see
//!   `vendor/cubecl-cuda/CM-PATCH.md`), the driver starting, and the GPU ordinal are checked in turn.
//! - The persistent kernel and autotune cache lives in `<cm cache>/cubecl`, so a second run skips
//!   the first run's kernel compilation (cubecl keeps compiled kernels only when asked; cm asks,
//!   unless `CM_KERNEL_CACHE=0`) and autotuning wherever it is started from.
//! - Whatever still fails inside a GPU runtime (out of memory, a lost device) panics in one of its
//!   threads; [`prepare`] installs a hook that turns that into one error line and exit status 1.

use std::path::PathBuf;

use anyhow::Result;

use crate::backend::Backend;

/// Where `scripts/setup.sh --gpu` puts the Vulkan loader, and where cm looks for it.
pub fn vulkan_dir() -> PathBuf {
    crate::io::cache_dir().join("vulkan")
}

/// cubecl's persistent store of compiled kernels and autotune results.
pub fn kernel_cache_dir() -> PathBuf {
    crate::io::cache_dir().join("cubecl")
}

/// Gets the machine ready for `backend` once per process: the GPU runtime's cache folder, the
/// panic hook, and for Vulkan the loader and ICD. Call it before any other thread starts (it may
/// set `VK_ICD_FILENAMES`); later calls do nothing.
pub fn prepare(backend: Backend) -> Result<()> {
    if backend == Backend::Cpu {
        return Ok(());
    }
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| prepare_once(backend).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn prepare_once(backend: Backend) -> Result<()> {
    install_panic_hook(backend);
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    set_kernel_cache();
    #[cfg(feature = "wgpu")]
    if matches!(backend, Backend::Wgpu | Backend::Vulkan) {
        vulkan::prepare(backend)?;
    }
    Ok(())
}

/// A panic inside a GPU runtime (cubecl's device threads panic on out-of-memory, a lost device or
/// a driver error) ends the process with one line and exit status 1, instead of exit 101 with a
/// thread dump, or a main thread waiting forever on a dead one.
fn install_panic_hook(backend: Backend) {
    let name = backend.name();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::env::var_os("RUST_BACKTRACE").is_some() {
            previous(info);
        }
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("(no message)");
        let place = info.location().map(|l| format!(" (at {}:{})", l.file(), l.line())).unwrap_or_default();
        eprintln!(
            "error: backend `{name}` failed: {}{place}; set RUST_BACKTRACE=1 for the runtime's own report",
            runtime_failure(message)
        );
        std::process::exit(1);
    }));
}

/// Reads one number that depends on every parameter of `model` (the sum of each one's first
/// element), so that a failure the GPU runtime deferred while computing them surfaces now, as an
/// error naming `backend` and `step`. cubecl reports a failed allocation only when data that depends
/// on it is read: without this, a run that logs every few hundred steps would train on garbage
/// until its next metrics line or checkpoint (on lavapipe, the first read was the checkpoint's
/// optimiser state). Called after a run's first step; on the CPU it costs a few microseconds.
pub fn check_step(model: &impl burn::module::Module, backend: Backend, step: u64) -> Result<()> {
    use burn::module::{ModuleVisitor, Param};
    use burn::prelude::Tensor;
    struct Firsts(Option<Tensor<1>>);
    impl ModuleVisitor for Firsts {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let first = param.val().inner().flatten::<1>(0, D - 1).slice(0..1);
            self.0 = Some(self.0.take().map_or(first.clone(), |sum| sum + first));
        }
    }
    let mut firsts = Firsts(None);
    model.visit(&mut firsts);
    let Some(sum) = firsts.0 else { return Ok(()) };
    match sum.try_into_scalar::<f32>() {
        Ok(_) => Ok(()),
        Err(e) => {
            // The error's own first line only says that reading failed: the cause is the news.
            let message = format!("{e:?}");
            let (_, cause) = first_and_cause(&message);
            anyhow::bail!(
                "backend `{}` failed at step {step}: {}{cause}",
                backend.name(),
                allocation_hint(&message)
            )
        }
    }
}

/// What a GPU runtime's panic message says went wrong, on one line. cubecl defers a failed
/// allocation to whoever next reads the data, so the panic's first line is often the reader's
/// (`Error while reading data: …`) and the cause is the innermost of its nested `Caused by:`
/// sections (`can't allocate buffer of size: …`): that one is named too, and a failed allocation
/// is called what it is, with what to change.
fn runtime_failure(message: &str) -> String {
    let (first, cause) = first_and_cause(message);
    let hint = allocation_hint(message);
    if cause == first { format!("{hint}{first}") } else { format!("{hint}{cause}; reported as: {first}") }
}

/// A runtime error's first line and the innermost of its nested `Caused by:` sections (the first
/// line where there is none).
fn first_and_cause(message: &str) -> (&str, &str) {
    let mut lines = message.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("");
    let mut cause = first;
    while let Some(line) = lines.next() {
        if line == "Caused by:" {
            cause = lines.next().unwrap_or(cause);
        }
    }
    (first, cause)
}

/// What to say first where `message` reports a failed allocation (nothing otherwise).
fn allocation_hint(message: &str) -> &'static str {
    let lower = message.to_lowercase();
    let allocation = ["out of memory", "outofmemory", "out_of_memory", "can't allocate", "cannot allocate"]
        .iter()
        .any(|p| lower.contains(p));
    if allocation {
        "a GPU allocation failed (out of GPU memory, or a buffer over the device's limit): lower `batch` \
         (or the network size) in the recipe. "
    } else {
        ""
    }
}

/// Points cubecl's persistent store (compiled kernels, autotune results) at `<cm cache>/cubecl`
/// unless a `cubecl.toml` chose a folder. By default it would follow the working directory
/// (`target/environment` of the nearest Cargo workspace), so the same binary started elsewhere
/// would autotune again.
///
/// It also turns on cubecl's store of compiled kernels (CUDA's PTX, Vulkan's SPIR-V), which cubecl
/// leaves off by default: without it only the autotune decisions persist and every run compiles
/// every kernel again (NVRTC took 0.1 s for the smallest kernel and 0.5-3.6 s for each matrix
/// multiply on an H200, `scripts/gpu-check.sh`'s kernel profile). `CM_KERNEL_CACHE=0` keeps it off.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn set_kernel_cache() {
    use cubecl_runtime::config::cache::CacheConfig;
    use cubecl_runtime::config::{CubeClRuntimeConfig, RuntimeConfig};
    let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
    config.compilation.cache = std::env::var("CM_KERNEL_CACHE").map_or(true, |v| v != "0");
    if matches!(config.environment.path, CacheConfig::Target) {
        let dir = kernel_cache_dir();
        if std::fs::read_dir(&dir).map_or(true, |mut entries| entries.next().is_none()) {
            let _ = COLD_CACHE.set(dir.clone());
        }
        config.environment.path = CacheConfig::Directory(dir);
    }
    // Refused (and harmless) when something already read the configuration.
    let _ = CubeClRuntimeConfig::try_set(config);
}

/// The kernel cache folder, where it was empty when the GPU backend was prepared.
static COLD_CACHE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Once a GPU device has started on an empty kernel cache, says that the first steps compile and
/// autotune kernels. Without it a first run looks hung: measured on an H200 (scripts/gpu-check.sh),
/// CUDA had not finished the first step of the 0.3 M-parameter U-Net after 156 s of NVRTC
/// compilation. Not before the device starts, so a backend that cannot start fails with its one
/// error line alone.
pub fn note_cold_cache() {
    static SAID: std::sync::Once = std::sync::Once::new();
    if let Some(dir) = COLD_CACHE.get() {
        SAID.call_once(|| {
            eprintln!(
                "note: the GPU kernels are compiled and autotuned on first use (minutes for a U-Net on \
                 CUDA) and kept in {}, so later runs start in seconds",
                dir.display()
            )
        });
    }
}

/// The GPU a backend runs on, as its driver names it (recorded in run cards and benchmarks).
static DEVICE_NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();

pub fn device_name() -> Option<&'static str> {
    DEVICE_NAME.get().map(String::as_str)
}

#[cfg(feature = "wgpu")]
pub mod vulkan {
    //! The Vulkan loader and ICD for `--backend wgpu|vulkan`.

    use std::path::{Path, PathBuf};

    use anyhow::{Context, Result, anyhow, bail};
    use burn::prelude::Device;
    use burn::tensor::DeviceKind;
    use burn::tensor::wgpu::{WgpuBackend, wgpu};

    use crate::backend::Backend;

    const LOADER: &str = "libvulkan.so.1";
    const NVIDIA_GLX: &str = "libGLX_nvidia.so.0";
    const NVIDIA_EGL: &str = "libEGL_nvidia.so.0";
    const ICD_DIRS: [&str; 3] =
        ["/etc/vulkan/icd.d", "/usr/share/vulkan/icd.d", "/usr/local/share/vulkan/icd.d"];

    pub(super) fn prepare(backend: Backend) -> Result<()> {
        if cfg!(target_os = "linux") {
            load_loader(backend)?;
            if let Some(icd) = egl_icd_if_headless()? {
                tracing::info!(icd = %icd.display(), "no display: using NVIDIA's EGL Vulkan ICD");
                use_icd(&icd);
            }
        }
        Ok(())
    }

    /// Makes `libvulkan.so.1` loadable: the system's, else one under the cm cache (or
    /// `$CM_VULKAN_LOADER`). A library loaded by path answers later `dlopen("libvulkan.so.1")`
    /// calls by its soname, so wgpu finds it without `LD_LIBRARY_PATH`.
    fn load_loader(backend: Backend) -> Result<()> {
        // SAFETY: loading the Vulkan loader runs only its initialisers, which have no preconditions.
        if unsafe { libloading::Library::new(LOADER) }.is_ok() {
            return Ok(());
        }
        let candidates: Vec<PathBuf> = std::env::var_os("CM_VULKAN_LOADER")
            .map(PathBuf::from)
            .into_iter()
            .chain([super::vulkan_dir().join(LOADER)])
            .collect();
        for path in &candidates {
            if path.is_file() {
                // SAFETY: as above; the handle is kept for the life of the process.
                let lib = unsafe { libloading::Library::new(path) }.with_context(|| {
                    format!("backend `{}`: cannot load {}", backend.name(), path.display())
                })?;
                std::mem::forget(lib);
                tracing::info!(loader = %path.display(), "Vulkan loader from the cm cache");
                return Ok(());
            }
        }
        bail!(
            "backend `{}`: no Vulkan loader ({LOADER} is not installed and not in {}); run `bash scripts/setup.sh --gpu` (fetches Debian's libvulkan1) or install libvulkan1",
            backend.name(),
            super::vulkan_dir().display()
        )
    }

    /// On a machine without a display whose NVIDIA ICD names the GLX library (which cannot create a
    /// Vulkan instance there), writes and returns an ICD file naming the EGL library. `None` where the
    /// user chose ICDs (`VK_ICD_FILENAMES`, `VK_DRIVER_FILES`), a display exists, or no such ICD is found.
    fn egl_icd_if_headless() -> Result<Option<PathBuf>> {
        let set = |v: &str| std::env::var_os(v).is_some_and(|s| !s.is_empty());
        if set("VK_ICD_FILENAMES") || set("VK_DRIVER_FILES") || set("DISPLAY") || set("WAYLAND_DISPLAY") {
            return Ok(None);
        }
        let Some(api_version) = ICD_DIRS.iter().find_map(|d| nvidia_glx_icd(Path::new(d))) else {
            return Ok(None);
        };
        // SAFETY: NVIDIA's EGL library only registers itself when loaded.
        if unsafe { libloading::Library::new(NVIDIA_EGL) }.is_err() {
            return Ok(None);
        }
        let path = super::vulkan_dir().join("nvidia_egl_icd.json");
        let json = serde_json::json!({
            "file_format_version": "1.0.1",
            "ICD": {"library_path": NVIDIA_EGL, "api_version": api_version}
        });
        crate::io::write_atomic(&path, serde_json::to_string_pretty(&json)?.as_bytes())?;
        Ok(Some(path))
    }

    /// The `api_version` of an ICD file in `dir` that names NVIDIA's GLX library.
    fn nvidia_glx_icd(dir: &Path) -> Option<String> {
        let entries = std::fs::read_dir(dir).ok()?;
        entries.filter_map(|e| e.ok()).find_map(|e| {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "json") || e.metadata().ok()?.len() > 64 * 1024 {
                return None;
            }
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
            let lib = v["ICD"]["library_path"].as_str()?;
            (Path::new(lib).file_name()? == NVIDIA_GLX)
                .then(|| v["ICD"]["api_version"].as_str().unwrap_or("1.3.0").to_string())
        })
    }

    fn use_icd(icd: &Path) {
        // SAFETY: `prepare` runs before cm starts any thread (see `gpu::prepare`); the Vulkan loader
        // reads the variable when an instance is created.
        unsafe { std::env::set_var("VK_ICD_FILENAMES", icd) };
    }

    /// Acquires a wgpu device on `api` and says which adapter it got; an error (not a panic) names
    /// the backend and what is missing.
    pub fn device(backend: Backend, api: WgpuBackend, kind: DeviceKind) -> Result<Device> {
        let (device, setup) =
            Device::wgpu_options().graphics_api(api).device_kind(kind).init_with_setup().map_err(|e| {
                anyhow!(
                    "backend `{}`: no usable GPU adapter ({}); check the GPU driver and `vulkaninfo`, or pick another --backend",
                    backend.name(),
                    e.to_string().lines().next().unwrap_or("")
                )
            })?;
        let info = setup.adapter.get_info();
        let name = format!("{} ({:?}, {:?})", info.name, info.backend, info.device_type);
        // A software adapter (llvmpipe, lavapipe, SwiftShader) is what a machine without a GPU offers:
        // far slower than flex (measured ~30x on lavapipe), and on GL it fails to compile cubecl's
        // subgroup kernels. Refused unless asked for.
        if info.device_type == wgpu::DeviceType::Cpu && std::env::var_os("CM_ALLOW_SOFTWARE_GPU").is_none() {
            bail!(
                "backend `{}`: the only adapter is a software one, {name}, far slower than --backend cpu; \
                 set CM_ALLOW_SOFTWARE_GPU=1 to use it anyway",
                backend.name()
            );
        }
        eprintln!("cm: backend {} on {name}", backend.name());
        let _ = super::DEVICE_NAME.set(name);
        Ok(device)
    }
}

#[cfg(feature = "cuda")]
pub mod cuda {
    //! Checks for `--backend cuda`, each with its own message.

    use anyhow::{Result, anyhow, bail};
    use cudarc::driver::result as driver;

    /// Folders NVRTC is looked for in when the dynamic linker does not find it.
    fn nvrtc_dirs() -> Vec<std::path::PathBuf> {
        let mut dirs: Vec<std::path::PathBuf> = ["CUDA_HOME", "CUDA_PATH"]
            .iter()
            .filter_map(std::env::var_os)
            .map(|d| std::path::PathBuf::from(d).join("lib64"))
            .collect();
        dirs.push("/usr/local/cuda/lib64".into());
        dirs.push("/usr/local/cuda/targets/x86_64-linux/lib".into());
        dirs
    }

    /// Loads NVRTC by path from the CUDA toolkit's usual folders when it is not on the linker's path,
    /// so cubecl's later load by soname finds it.
    fn preload_nvrtc() {
        // SAFETY: checks whether NVRTC loads; its initialisers have no preconditions.
        if unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return;
        }
        for dir in nvrtc_dirs() {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            let mut libs: Vec<_> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    name.starts_with("libnvrtc.so.") && !name.contains("builtins")
                })
                .collect();
            libs.sort();
            // The shortest name is the soname link (libnvrtc.so.13), not a versioned file.
            libs.sort_by_key(|p| p.as_os_str().len());
            if let Some(lib) = libs.first() {
                // SAFETY: as above; the handle is kept for the life of the process.
                if let Ok(l) = unsafe { libloading::Library::new(lib) } {
                    std::mem::forget(l);
                    tracing::info!(nvrtc = %lib.display(), "NVRTC loaded from the CUDA toolkit");
                    return;
                }
            }
        }
    }

    /// The driver library, NVRTC, the driver starting and GPU `index` existing, in that order.
    pub fn check(index: usize) -> Result<()> {
        // SAFETY: only tries to load the driver library.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            bail!(
                "backend `cuda`: the NVIDIA driver library (libcuda.so.1) was not found: this machine has no NVIDIA driver; use --backend cpu"
            );
        }
        preload_nvrtc();
        // SAFETY: only tries to load NVRTC.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            bail!(
                "backend `cuda`: NVRTC (libnvrtc.so, in the CUDA toolkit) was not found in the linker path or {}: install the CUDA toolkit or add its lib64 folder to LD_LIBRARY_PATH",
                nvrtc_dirs().iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
            );
        }
        driver::init().map_err(|e| anyhow!("backend `cuda`: the NVIDIA driver did not start: {e}"))?;
        let count =
            driver::device::get_count().map_err(|e| anyhow!("backend `cuda`: cannot count GPUs: {e}"))?;
        if index >= count.max(0) as usize {
            bail!("backend `cuda`: GPU {index} was asked for and this machine has {count}");
        }
        let dev =
            driver::device::get(index as i32).map_err(|e| anyhow!("backend `cuda`: GPU {index}: {e}"))?;
        let name = driver::device::get_name(dev).unwrap_or_else(|_| format!("CUDA GPU {index}"));
        // SAFETY: `dev` is a valid device handle returned by the driver just above.
        let mem = unsafe { driver::device::total_mem(dev) }.unwrap_or(0);
        let name = format!("{name} ({:.0} GiB)", mem as f64 / (1u64 << 30) as f64);
        eprintln!("cm: backend cuda on {name}");
        let _ = super::DEVICE_NAME.set(name);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::runtime_failure;

    /// The panic message of `cm train --backend vulkan` on Mesa's lavapipe (2026-11-29) with a moons
    /// recipe at batch 300000 and hidden 2048: one activation over lavapipe's 2 GiB allocation limit,
    /// reported at the next read of the data (Adam's state, in the checkpoint).
    const LAVAPIPE_ALLOCATION: &str = "Error while reading data: use `try_into_data` instead to catch the error at runtime: An error happened during execution
Caused by:
  Several failures at once
Caused by:
  The bytes were never written (failure #173, still claiming 15 buffer(s))
  skipped `ElemwiseFuse`: it needed memory ManagedMemoryId { value: 384 }, which carried the failure
Caused by:
  An IO error happened
Caused by:
  can't allocate buffer of size: 2457600000
No backtrace available";

    #[test]
    fn a_deferred_allocation_failure_is_named_with_its_cause() {
        let line = runtime_failure(LAVAPIPE_ALLOCATION);
        assert!(!line.contains('\n'), "{line}");
        assert!(line.starts_with("a GPU allocation failed"), "{line}");
        assert!(line.contains("lower `batch`"), "{line}");
        assert!(
            line.contains("can't allocate buffer of size: 2457600000; reported as: Error while reading data"),
            "{line}"
        );
    }

    #[test]
    fn other_failures_keep_their_first_line_without_a_memory_hint() {
        assert_eq!(runtime_failure("device lost\nNo backtrace available"), "device lost");
        let nested = runtime_failure("Error while reading data\nCaused by:\n  The device was lost");
        assert_eq!(nested, "The device was lost; reported as: Error while reading data");
        // A word that merely contains "oom" is not a memory failure.
        assert_eq!(runtime_failure("no room in the zoom queue"), "no room in the zoom queue");
        assert!(runtime_failure("CUDA_ERROR_OUT_OF_MEMORY").starts_with("a GPU allocation failed"));
    }
}
