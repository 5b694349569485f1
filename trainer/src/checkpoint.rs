//! Checkpoints that `cm train --resume` continues from bit-exactly (on the CPU backend).
//!
//! `checkpoints/step-XXXXXXX/` holds the online weights, the evaluation EMA, the CT target (CM recipe),
//! the optimiser state (burn's burnpack bytes, keyed by parameter id) and `state.json` with the step and
//! the parameter ids in visiting order, so a resumed model gets the ids the optimiser state refers to.
//! Every randomness in a step is keyed by the step index, so nothing else needs saving. The folder is
//! written as `step-XXXXXXX.partial` and renamed, so a crash never leaves a half checkpoint.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::module::{ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use burn::tensor::Bytes;
use cm_core::card::{load_denoiser, load_weights, weights_to_bytes};
use cm_core::objective::AdaptiveWeight;
use cm_core::{Denoiser, ModelConfig};
use serde::{Deserialize, Serialize};

use crate::io::write_atomic;
use crate::train::TrainState;

/// `state.json`.
#[derive(Serialize, Deserialize)]
struct State {
    step: u64,
    param_ids: Vec<u64>,
    has_target: bool,
    /// Parameter ids of sCM's adaptive weight `w_phi(t)` (TrigFlow methods), saved as `weight.safetensors`.
    #[serde(default)]
    weight_ids: Option<Vec<u64>>,
    /// SHA-256 of every other file of the checkpoint, checked before any is parsed (a flipped bit in
    /// `optimizer.bpk` would otherwise reach burn's parser, which panics). Absent in older checkpoints.
    #[serde(default)]
    sha256: std::collections::BTreeMap<String, String>,
}

/// A checkpoint's networks as loaded, before its optimiser state is parsed.
struct Networks {
    step: u64,
    model: Denoiser,
    ema: Denoiser,
    target: Option<Denoiser>,
    weight: Option<AdaptiveWeight>,
}

/// Collects the parameter ids of a module in visiting order.
struct Ids(Vec<u64>);
impl ModuleVisitor for Ids {
    /// Records `param`'s id.
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.id.val());
    }
}

/// Gives a module's parameters, in visiting order, the ids it yields.
struct SetIds(std::vec::IntoIter<u64>);
impl ModuleMapper for SetIds {
    /// `param` with the next id.
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (_, value, mapper) = param.consume();
        let id = self.0.next().expect("checked: one id per parameter");
        Param::from_mapped_value(ParamId::from(id), value, mapper)
    }
}

/// The checkpoint folder of `step` in the run folder `out`.
fn step_dir(out: &Path, step: u64) -> PathBuf {
    out.join("checkpoints").join(folder_name(step))
}

/// `step-0000012` for step 12.
fn folder_name(step: u64) -> String {
    format!("step-{step:07}")
}

/// Writes the checkpoint of `state` (of its step `state.step`) into the run folder `out`.
pub fn save(out: &Path, state: &TrainState) -> Result<()> {
    let optimizer =
        state.optim.into_bytes().map_err(|e| anyhow::anyhow!("cannot serialise the optimiser: {e:?}"))?;
    let TrainState { step, ref model, ref ema, ref target, ref weight, .. } = *state;
    let dir = step_dir(out, step);
    let mut files =
        vec![("model.safetensors", weights_to_bytes(model)?), ("ema.safetensors", weights_to_bytes(ema)?)];
    if let Some(t) = target {
        files.push(("target.safetensors", weights_to_bytes(t)?));
    }
    if let Some(w) = weight {
        files.push(("weight.safetensors", weights_to_bytes(w)?));
    }
    // The loss reaches the host only at log steps, so a step between them can turn the weights to NaN
    // unseen: a checkpoint is written only from finite weights.
    for (name, bytes) in &files {
        cm_core::card::ensure_finite(bytes).map_err(|e| {
            anyhow::anyhow!(
                "the weights became non-finite by step {step}, so its checkpoint is not saved ({name}: {e}); \
                 try a lower optimizer.lr or a grad_clip (earlier checkpoints are kept in {})",
                out.join("checkpoints").display()
            )
        })?;
    }
    files.push(("optimizer.bpk", optimizer.to_vec()));
    let partial = dir.with_extension("partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial).with_context(|| format!("cannot remove {}", partial.display()))?;
    }
    for (name, bytes) in &files {
        write_atomic(&partial.join(name), bytes)?;
    }
    let mut ids = Ids(Vec::new());
    model.visit(&mut ids);
    let weight_ids = weight.as_ref().map(|w| {
        let mut ids = Ids(Vec::new());
        w.visit(&mut ids);
        ids.0
    });
    let sha256 =
        files.iter().map(|(name, bytes)| (name.to_string(), cm_core::card::sha256_hex(bytes))).collect();
    let state = State { step, param_ids: ids.0, has_target: target.is_some(), weight_ids, sha256 };
    write_atomic(&partial.join("state.json"), serde_json::to_string(&state)?.as_bytes())?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot replace {}", dir.display()))?;
    }
    std::fs::rename(&partial, &dir).with_context(|| format!("cannot move checkpoint to {}", dir.display()))
}

/// The complete checkpoints in the run folder `out`, newest first.
pub fn newest_first(out: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(out.join("checkpoints")) else { return Vec::new() };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("step-") && !n.contains('.'))
                && p.join("state.json").is_file()
        })
        .collect();
    dirs.sort();
    dirs.reverse();
    dirs
}

/// Loads the checkpoint folder `dir` for `config` on `device` (the autodiff training device), with its
/// optimiser state parsed into `optim` (a fresh optimiser of the recipe).
///
/// The state file is checked against `state.json`'s SHA-256 first; a state file that passes and still
/// does not parse is an error too: burn's parser panics on some damaged inputs, and that panic is
/// caught here (quietly) and reported as this file's error.
pub fn load_with_optimizer(
    dir: &Path,
    config: &ModelConfig,
    device: &Device,
    optim: ModuleOptimizer,
) -> Result<TrainState> {
    let (Networks { step, model, ema, target, weight }, optimizer) = load_networks(dir, config, device)?;
    let path = dir.join("optimizer.bpk");
    let bytes = Bytes::from_bytes_vec(optimizer);
    let optim = quietly(move || optim.from_bytes(bytes))
        .map_err(|panic| anyhow::anyhow!("{}: not an optimiser state ({panic})", path.display()))?
        .map_err(|e| anyhow::anyhow!("{}: {e:?}", path.display()))?;
    Ok(TrainState { step, model, ema, target, weight, optim })
}

/// Runs `f`, turning a panic into an error message without printing it.
fn quietly<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    result.map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the parser panicked".into())
    })
}

/// The networks of the checkpoint folder `dir` for `config` on `device`, and its optimiser state's bytes
/// (checked against `state.json`, not parsed).
fn load_networks(dir: &Path, config: &ModelConfig, device: &Device) -> Result<(Networks, Vec<u8>)> {
    let state_path = dir.join("state.json");
    let state: State =
        serde_json::from_slice(&crate::io::read_limited(&state_path, crate::io::MAX_TEXT_FILE)?)
            .with_context(|| format!("{}: not a checkpoint state", state_path.display()))?;
    // The step is not covered by the checksums: it must be the one the folder is named after.
    let named = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if named != folder_name(state.step) {
        bail!(
            "{}: gives step {}, but the checkpoint's folder is {named}: the file is damaged",
            state_path.display(),
            state.step
        );
    }
    let read = |name: &str| -> Result<Vec<u8>> {
        let p = dir.join(name);
        let bytes = std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
        if let Some(want) = state.sha256.get(name) {
            cm_core::card::check_sha256(&bytes, want)
                .map_err(|e| anyhow::anyhow!("{}: {e} (state.json): the file is damaged", p.display()))?;
        }
        Ok(bytes)
    };
    let weights = |name: &str| -> Result<Denoiser> {
        load_denoiser(config, read(name)?, device)
            .map_err(|e| anyhow::anyhow!("{}: {e}", dir.join(name).display()))
    };
    let model = weights("model.safetensors")?;
    let mut ids = Ids(Vec::new());
    model.visit(&mut ids);
    if ids.0.len() != state.param_ids.len() {
        bail!(
            "{}: {} parameter ids for a model with {} parameters",
            state_path.display(),
            state.param_ids.len(),
            ids.0.len()
        );
    }
    let model = model.map(&mut SetIds(state.param_ids.into_iter()));
    let ema = weights("ema.safetensors")?.valid();
    let target = if state.has_target { Some(weights("target.safetensors")?.valid()) } else { None };
    let weight = match state.weight_ids {
        Some(ids) => {
            let w = load_weights(AdaptiveWeight::new(device), read("weight.safetensors")?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", dir.join("weight.safetensors").display()))?;
            let mut have = Ids(Vec::new());
            w.visit(&mut have);
            if have.0.len() != ids.len() {
                bail!("{}: {} weight ids for {} parameters", state_path.display(), ids.len(), have.0.len());
            }
            Some(w.map(&mut SetIds(ids.into_iter())))
        }
        None => None,
    };
    Ok((Networks { step: state.step, model, ema, target, weight }, read("optimizer.bpk")?))
}
