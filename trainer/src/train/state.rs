//! The training state: what a run carries from step to step, what a checkpoint saves and `--resume`
//! restores, and how a run's first state is made.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamConfig, ModuleOptimizer};
use burn::prelude::*;
use cm_core::Denoiser;
use cm_core::card::weights_to_bytes;
use cm_core::ema::ema_update;
use cm_core::objective::AdaptiveWeight;

use crate::checkpoint;
use crate::config::{OptimKind, TrainConfig};
use crate::io::load_model_dir;
use crate::radam::RAdam;

/// Everything a run carries from one step to the next; a checkpoint saves it whole.
pub struct TrainState {
    /// Steps done.
    pub step: u64,
    /// The online network `theta`, on the autodiff training device.
    pub model: Denoiser,
    /// The evaluation EMA of `theta` (without autodiff): the exported model.
    pub ema: Denoiser,
    /// The target network `theta^-` of CT / CD with `mu > 0` (without autodiff); `None`: `stopgrad(theta)`.
    pub target: Option<Denoiser>,
    /// sCM's adaptive weight `w_phi(t)`, trained beside the model (TrigFlow methods).
    pub weight: Option<AdaptiveWeight>,
    /// The optimiser of the model and `w_phi`, with its state.
    pub optim: ModuleOptimizer,
}

impl TrainState {
    /// Step 0 of a run that starts from `model`.
    fn new(cfg: &TrainConfig, model: Denoiser, weight: Option<AdaptiveWeight>) -> Self {
        let ema = model.valid();
        Self { step: 0, model, ema, target: None, weight, optim: new_optimizer(cfg) }
    }

    /// The target network's EMA update with rate `mu`: `theta^- <- mu theta^- + (1 - mu) theta`, starting
    /// from `theta`; `mu = 0` drops it (the target is then `stopgrad(theta)` itself).
    pub(super) fn update_target(&mut self, mu: f64) {
        self.target = if mu > 0.0 {
            Some(ema_update(self.target.take().unwrap_or_else(|| self.model.valid()), &self.model, mu))
        } else {
            None
        };
    }
}

/// A run's first state on the autodiff `device` (seeded), and the distillation teacher (no autodiff):
/// a fresh network, the starting weights of `init_from` or the teacher, or, with `resume`, the newest
/// loadable of the run's `checkpoints`.
pub(super) fn start(
    cfg: &TrainConfig,
    out: &Path,
    resume: bool,
    checkpoints: &[PathBuf],
    device: &Device,
) -> Result<(TrainState, Option<Denoiser>)> {
    let model_cfg = cfg.model();
    let mut model: Denoiser = model_cfg.init(device);
    // The teacher of CD / sCD, without autodiff; optionally the student's starting point (CM).
    let teacher = match &cfg.teacher {
        Some(t) => Some(load_fitting(
            &t.path,
            "teacher.path",
            true,
            t.init_from_teacher,
            cfg,
            &cfg.backend.device()?,
        )?),
        None => None,
    };
    // The starting weights: init_from's (ECT) or the teacher's (CM's CD). On --resume the checkpoint
    // holds the weights, so the start is not read again.
    let start = match (&cfg.init_from, &cfg.teacher, &teacher) {
        _ if resume => None,
        (Some(path), _, _) => Some((
            load_fitting(path, "init_from", false, true, cfg, &cfg.backend.device()?)?,
            "init_from",
            path,
        )),
        (None, Some(t), Some(teacher)) if t.init_from_teacher => {
            Some((teacher.clone(), "teacher.init_from_teacher", &t.path))
        }
        _ => None,
    };
    if let Some((start, field, path)) = start {
        model = cm_core::card::load_denoiser(&model_cfg, weights_to_bytes(&start)?, device).map_err(|e| {
            anyhow::anyhow!("field `{field}`: {} does not fit this network: {e}", path.display())
        })?;
    }
    let weight = cfg.method.is_trigflow().then(|| AdaptiveWeight::new(device));
    let mut state = TrainState::new(cfg, model, weight);
    if resume {
        let has_weight = state.weight.is_some();
        state = newest_loadable(out, checkpoints, cfg, &model_cfg, device)?;
        if !has_weight {
            state.weight = None;
        }
    }
    Ok((state, teacher))
}

/// A fresh optimiser of the recipe.
fn new_optimizer(cfg: &TrainConfig) -> ModuleOptimizer {
    match cfg.optimizer.kind {
        OptimKind::Adam => {
            let mut adam = AdamConfig::new().with_beta_2(cfg.optimizer.beta_2 as f32);
            if let Some(c) = cfg.optimizer.grad_clip {
                adam = adam.with_grad_clipping(Some(GradientClippingConfig::Norm(c as f32)));
            }
            adam.init()
        }
        OptimKind::Radam => RAdam::new(cfg.optimizer.beta_2).init(cfg.optimizer.grad_clip),
    }
}

/// `--resume`: the newest of `checkpoints` that loads whole, with its optimiser state; damaged newer
/// ones are named and passed over. Refused when the run already reached its last step and wrote its
/// model (a run stopped between its final checkpoint and its export only writes the model).
fn newest_loadable(
    out: &Path,
    checkpoints: &[PathBuf],
    cfg: &TrainConfig,
    model_cfg: &cm_core::ModelConfig,
    device: &Device,
) -> Result<TrainState> {
    let mut errors = Vec::new();
    let loaded = checkpoints.iter().find_map(|dir| {
        let attempt = || -> Result<_> {
            let state = checkpoint::load_with_optimizer(dir, model_cfg, device, new_optimizer(cfg))?;
            if cfg.method.is_trigflow() && state.weight.is_none() {
                bail!("{}: no weight.safetensors for w_phi(t)", dir.display());
            }
            Ok(state)
        };
        attempt().map_err(|e| errors.push(format!("{e:#}"))).ok().map(|ok| (dir, ok))
    });
    let Some((dir, state)) = loaded else {
        bail!(
            "--resume: no checkpoint in {} loads: {}",
            out.join("checkpoints").display(),
            errors.join("; ")
        );
    };
    if !errors.is_empty() {
        eprintln!("warning: --resume passed over damaged checkpoints: {}", errors.join("; "));
    }
    if state.step > cfg.steps || (state.step == cfg.steps && out.join("model").join("config.json").exists()) {
        bail!("--resume: the run already reached step {} of {} and wrote its model", state.step, cfg.steps);
    }
    tracing::info!(step = state.step, checkpoint = %dir.display(), "resuming");
    Ok(state)
}

/// Loads the model folder of recipe field `field` on `device` (no autodiff) and checks that it fits the
/// recipe: a distillation teacher (`teacher`) must be a diffusion model; starting weights (`starts`:
/// `init_from`, or a teacher with `init_from_teacher`) must be the recipe's network.
fn load_fitting(
    path: &Path,
    field: &str,
    teacher: bool,
    starts: bool,
    cfg: &TrainConfig,
    device: &Device,
) -> Result<Denoiser> {
    let cm_core::Model { card, denoiser: model } =
        load_model_dir(path, device).with_context(|| format!("field `{field}` = {}", path.display()))?;
    let shown = path.display();
    if teacher && !card.method.is_diffusion() {
        bail!(
            "field `{field}`: {shown} is a `{}` model; a teacher must be a diffusion model (edm or trigflow)",
            card.method.name()
        );
    }
    if card.dataset != cfg.dataset {
        bail!(
            "field `{field}`: {shown} was trained on `{}`, this recipe trains on `{}`",
            card.dataset,
            cfg.dataset
        );
    }
    if model.dim() != cfg.network.dim() {
        bail!(
            "field `{field}`: {shown} has data dimension {}, this recipe's network {}",
            model.dim(),
            cfg.network.dim()
        );
    }
    if card.model.range != cfg.noise {
        bail!("field `{field}`: {shown} has noise range {:?}, this recipe {:?}", card.model.range, cfg.noise);
    }
    // A class-conditional student learns each class from a teacher that sees the same class.
    let (theirs, ours) = (card.model.architecture.classes(), cfg.network.classes());
    if teacher && theirs != ours {
        bail!(
            "field `{field}`: {shown} is conditioned on {theirs} classes, this recipe's network on {ours} \
             (`network.classes`): a teacher and its student take the same classes"
        );
    }
    // Starting weights must be the recipe's network: same sizes and the same time-embedding
    // frequencies (those are computed from the config, not stored, so a mismatch would load silently).
    if starts && theirs != ours {
        bail!(
            "field `{field}`: {shown} is conditioned on {theirs} classes, this recipe's network on {ours} \
             (`network.classes`): starting weights must be the recipe's network"
        );
    }
    if starts && card.model.architecture.without_dropout() != cfg.network.without_dropout() {
        let why = if teacher { " (init_from_teacher)" } else { "" };
        bail!(
            "field `{field}`{why}: {shown} is another network than this recipe's [network] (sizes or time \
             embedding differ; only dropout may): {}",
            serde_json::to_string(&card.model.architecture).unwrap_or_default()
        );
    }
    Ok(model)
}
