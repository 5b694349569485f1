//! `cm train`: the training loop shared by every method, with progress, metrics, checkpoints and export.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, MultiGradientsParams};
use burn::prelude::*;
use cm_core::card::weights_to_bytes;
use cm_core::ema::{ema_decay_at, ema_update};
use cm_core::host::rows;
use cm_core::objective::{
    AdaptiveWeight, CtConfig, Progress, ScmConfig, Teacher, ct_loss, edm_loss, scm_loss,
    trigflow_diffusion_loss,
};
use cm_core::rng::Noise;
use cm_core::{Denoiser, Method, ModelCard, card::CARD_FORMAT};
use indicatif::{ProgressBar, ProgressStyle};

use crate::checkpoint;
use crate::config::{OptimKind, TrainConfig};
use crate::data::{Source, Split};
use crate::eval;
use crate::io::{grid_png, grid_zoom, load_model_dir, save_model_dir, scatter_png, write_atomic};
use crate::radam::RAdam;

/// What a run reports: the exported model (none when it stopped early, `--stop-at`) and its metrics.
pub struct RunSummary {
    pub model_dir: Option<PathBuf>,
    pub metrics: BTreeMap<String, f64>,
}

/// How to run a recipe, besides the recipe itself.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    pub start: Start,
    /// Devices the batch is split over (`--devices`).
    pub devices: usize,
    /// Stop after this step with a checkpoint, as if interrupted there (`--stop-at`): the run so far is
    /// exactly the full recipe's (the curriculum and learning rate follow the recipe's `steps`), and
    /// `--resume` continues it.
    pub stop_at: Option<u64>,
}

impl RunOptions {
    pub fn new(start: Start) -> Self {
        Self { start, devices: 1, stop_at: None }
    }
}

/// How a run treats what its folder already holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// A new run: refused where the folder holds another run's checkpoints or model.
    New,
    /// A new run in place of whatever the folder holds (`--force`): the old checkpoints are removed
    /// first, the old model is replaced when the new one is written.
    Replace,
    /// Continue from the newest loadable checkpoint (`--resume`); the recipe must be the run's own
    /// `config.toml`. A run whose last checkpoint is its final step only writes its model.
    Resume,
}

/// Trains `cfg` into the run folder `out` as `opts` say.
pub fn train(cfg: &TrainConfig, out: &Path, command: &str, opts: RunOptions) -> Result<RunSummary> {
    let started = Instant::now();
    let resume = opts.start == Start::Resume;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create run folder {}", out.display()))?;
    let resolved = cfg.resolved();
    let resolved_toml = toml::to_string_pretty(&resolved)?;
    let checkpoints = if resume {
        let saved_path = out.join("config.toml");
        let saved = std::fs::read_to_string(&saved_path)
            .with_context(|| format!("--resume: cannot read the run's recipe {}", saved_path.display()))?;
        if let Some((i, (a, b))) =
            saved.lines().zip(resolved_toml.lines()).enumerate().find(|(_, (a, b))| a != b)
        {
            bail!(
                "--resume: the recipe differs from the run's {} at line {}: `{b}` here, `{a}` in the run",
                saved_path.display(),
                i + 1
            );
        }
        if saved.lines().count() != resolved_toml.lines().count() {
            bail!("--resume: the recipe differs from the run's {}", saved_path.display());
        }
        let all = checkpoint::newest_first(out);
        if all.is_empty() {
            bail!("--resume: no complete checkpoint in {}", out.join("checkpoints").display());
        }
        all
    } else {
        clear_for_new_run(out, opts.start)?;
        write_atomic(&out.join("config.toml"), resolved_toml.as_bytes())?;
        Vec::new()
    };

    let device = cfg.backend.device()?.autodiff();
    device.seed(cfg.seed);
    let model_cfg = cfg.model();
    let mut model: Denoiser = model_cfg.init(&device);
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
        model =
            cm_core::card::load_denoiser(&model_cfg, weights_to_bytes(&start)?, &device).map_err(|e| {
                anyhow::anyhow!("field `{field}`: {} does not fit this network: {e}", path.display())
            })?;
    }
    // sCM's adaptive weight w_phi(t), trained beside the model (TrigFlow methods).
    let mut weight: Option<AdaptiveWeight> = cfg.method.is_trigflow().then(|| AdaptiveWeight::new(&device));
    // Target network theta- (CM recipe: EMA with mu(k); iCT: mu = 0, i.e. theta itself) and evaluation EMA.
    let mut target: Option<Denoiser> = None;
    let mut ema: Denoiser = model.valid();
    let mut first_step = 0;
    let mut optim = new_optimizer(cfg);
    if resume {
        let (r, loaded) = newest_loadable(out, &checkpoints, cfg, &model_cfg, &device)?;
        (first_step, model, ema, target, optim) = (r.step, r.model, r.ema, r.target, loaded);
        if weight.is_some() {
            weight = r.weight;
        }
    }
    // metrics.jsonl: a new run starts it afresh; a resumed run keeps only the lines up to its checkpoint,
    // so steps a killed run logged after its last checkpoint are not repeated.
    let metrics_path = out.join("metrics.jsonl");
    let kept = if resume { metrics_up_to(&metrics_path, first_step) } else { String::new() };
    write_atomic(&metrics_path, kept.as_bytes())?;
    let mut metrics_file = std::fs::OpenOptions::new()
        .append(true)
        .open(&metrics_path)
        .with_context(|| format!("cannot write {}", metrics_path.display()))?;
    let source = cfg.source(Split::Train)?;
    let dim = source.dim();
    let shape = model.image_shape();
    let noise = Noise::new(cfg.seed);

    let bar = ProgressBar::new(cfg.steps);
    bar.set_position(first_step);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} {msg}")
            .expect("static template"),
    );
    let mut window = (Instant::now(), 0u64);
    let step_ctx = StepContext { cfg, ct: cfg.ct(), scm: cfg.scm(), noise: &noise };
    // Data parallelism (`--devices N`): each device gets a copy of the model, the teacher and the
    // target, and a contiguous shard of the batch; burn's MultiGradientsParams sums the gradients.
    let devices = cfg.backend.devices(opts.devices)?;
    let shard_teachers: Vec<Option<Denoiser>> =
        devices.iter().map(|d| teacher.clone().map(|t| t.fork(&d.clone().inner()))).collect();
    let shard_pools = cpu_shard_pools(cfg.backend, devices.len())?;
    let end = opts.stop_at.map_or(cfg.steps, |s| s.min(cfg.steps));
    for k in first_step..end {
        let progress = Progress::new(k, cfg.steps);
        let streams = progress.streams();
        let batch = source.batch(cfg.seed, streams.data(), cfg.batch);
        let lr = cfg.optimizer.lr_at(k, cfg.steps);
        let log_now = (k + 1) % cfg.log_every.max(1) == 0 || k + 1 == cfg.steps;
        let (loss_value, schedule);
        if devices.len() == 1 {
            let x0 = rows(&batch, cfg.batch, dim, &device);
            let (loss, s) =
                step_ctx.loss(&model, weight.as_ref(), target.as_ref(), teacher.as_ref(), x0, progress);
            loss_value = log_now.then(|| loss.clone().into_scalar::<f32>() as f64);
            schedule = s;
            let mut grads = loss.backward();
            let model_grads = GradientsParams::from_module(&mut grads, &model);
            model = optim.step(lr, model, model_grads);
            if let Some(w) = weight.take() {
                let w_grads = GradientsParams::from_module(&mut grads, &w);
                weight = Some(optim.step(lr, w, w_grads));
            }
        } else {
            let shards = std::thread::scope(|scope| {
                let handles: Vec<_> = (devices.iter().zip(&shard_teachers).enumerate())
                    .map(|(i, (dev, teach))| {
                        let rows = cfg.batch * i / devices.len()..cfg.batch * (i + 1) / devices.len();
                        let part = &batch[rows.start * dim..rows.end * dim];
                        let x0 = cm_core::host::rows(part, rows.len(), dim, dev);
                        let m = model.clone().fork(dev);
                        let w = weight.clone().map(|w| w.fork(dev));
                        let t = target.clone().map(|t| t.fork(&dev.clone().inner()));
                        let teach = teach.clone();
                        let (ctx, share) = (&step_ctx, rows.len() as f64 / cfg.batch as f64);
                        let pool = shard_pools.get(i);
                        scope.spawn(move || {
                            let step = || {
                                let shard = progress.shard(rows.start);
                                let (loss, schedule) =
                                    ctx.loss(&m, w.as_ref(), t.as_ref(), teach.as_ref(), x0, shard);
                                // Each shard's mean, weighted by its share of the batch: the sum is the batch mean.
                                let loss = loss * share;
                                let value = loss.clone().into_scalar::<f32>() as f64;
                                let mut grads = loss.backward();
                                let gm = GradientsParams::from_module(&mut grads, &m);
                                let gw = w.as_ref().map(|w| GradientsParams::from_module(&mut grads, w));
                                (gm, gw, value, schedule)
                            };
                            match pool {
                                Some(pool) => pool.install(step),
                                None => step(),
                            }
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().expect("a training shard panicked")).collect::<Vec<_>>()
            });
            schedule = shards[0].3;
            loss_value = log_now.then(|| shards.iter().map(|s| s.2).sum());
            let mut model_grads = MultiGradientsParams::default();
            let mut weight_grads = MultiGradientsParams::default();
            for ((gm, gw, ..), dev) in shards.into_iter().zip(&devices) {
                model_grads.grads.push((gm, dev.clone()));
                if let Some(gw) = gw {
                    weight_grads.grads.push((gw, dev.clone()));
                }
            }
            model = optim.step_multi(lr, model, model_grads);
            if let Some(w) = weight.take() {
                weight = Some(optim.step_multi(lr, w, weight_grads));
            }
        }
        if let Schedule::Discrete { mu, .. } = schedule {
            target = if mu > 0.0 {
                Some(ema_update(target.take().unwrap_or_else(|| model.valid()), &model, mu))
            } else {
                None
            };
        }
        ema = ema_update(ema, &model, ema_decay_at(cfg.ema_decay, cfg.ema_rampup, k));
        window.1 += 1;

        if let Some(loss_value) = loss_value {
            if !loss_value.is_finite() {
                anyhow::bail!(
                    "the loss became {loss_value} at step {}; try a lower optimizer.lr or a grad_clip (checkpoints so far are kept in {})",
                    k + 1,
                    out.display()
                );
            }
            let secs = window.0.elapsed().as_secs_f64();
            let rate = window.1 as f64 / secs.max(1e-9);
            window = (Instant::now(), 0);
            let elapsed = started.elapsed().as_secs_f64();
            let mut line = serde_json::json!(
                {"step": k + 1, "loss": loss_value, "steps_per_s": rate, "elapsed_s": elapsed, "lr": lr}
            );
            match schedule {
                Schedule::Discrete { n, mu } => {
                    line["n"] = n.into();
                    line["mu"] = mu.into();
                }
                Schedule::Tangent { r } => line["r"] = r.into(),
                Schedule::None => {}
            }
            if let (Source::Toy(dataset), true) =
                (&source, cfg.eval_every > 0 && (k + 1) % cfg.eval_every == 0)
            {
                let inference = ema.clone();
                line["sliced_w2_1step"] = eval::quick_sliced_w2(&inference, *dataset, cfg.method)?.into();
            }
            writeln!(metrics_file, "{line}")?;
            bar.set_message(format!("loss {loss_value:.4}"));
            tracing::debug!(step = k + 1, loss = loss_value, "step");
        }
        bar.inc(1);
        if let (Some(shape), true) = (shape, cfg.sample_every > 0 && (k + 1) % cfg.sample_every == 0) {
            let png = sample_grid(&ema, cfg, shape)?;
            write_atomic(&out.join("samples").join(format!("step-{:07}.png", k + 1)), &png)?;
        }
        if cfg.checkpoint_every > 0 && (k + 1) % cfg.checkpoint_every == 0 && k + 1 < cfg.steps {
            write_checkpoint(out, k + 1, &model, &ema, target.as_ref(), weight.as_ref(), &optim)?;
            metrics_file.flush()?;
            write_loss_plot(out, &metrics_path)?;
        }
    }
    bar.finish_and_clear();
    if first_step < end {
        write_checkpoint(out, end, &model, &ema, target.as_ref(), weight.as_ref(), &optim)?;
    }
    drop(metrics_file);
    write_loss_plot(out, &metrics_path)?;
    if end < cfg.steps {
        return Ok(RunSummary { model_dir: None, metrics: BTreeMap::new() });
    }

    // Export: the evaluation EMA, on a plain (non-autodiff) device.
    let inference = ema;
    let (metrics, report) = match (&source, shape) {
        (Source::Toy(dataset), _) => {
            let report =
                eval::evaluate(&inference, *dataset, cfg.method, 4096, cfg.seed.wrapping_add(1), 35, None)?;
            let samples = if cfg.method.is_diffusion() {
                eval::teacher_points(&inference, 4096, cfg.seed, 35)?
            } else {
                eval::consistency_points(&inference, 4096, cfg.seed, &[])?
            };
            write_atomic(&out.join("samples.png"), &scatter_png(&samples, 512, 2.0))?;
            (report.flat_metrics(), Some(serde_json::to_value(&report)?))
        }
        (Source::Images { .. }, Some(shape)) => {
            write_atomic(&out.join("samples.png"), &sample_grid(&inference, cfg, shape)?)?;
            (BTreeMap::new(), None)
        }
        (Source::Images { .. }, None) => anyhow::bail!("an image dataset needs an image network"),
    };
    let wall = started.elapsed().as_secs_f64();
    let mut provenance = BTreeMap::new();
    provenance.insert("command".into(), command.into());
    provenance.insert("wall_time_s".into(), wall.into());
    provenance.insert("hardware".into(), eval::hardware().into());
    provenance.insert("backend".into(), cfg.backend.name().into());
    provenance.insert("devices".into(), devices.len().into());
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
    provenance.insert("cpu_threads".into(), threads.into());
    provenance.insert("config".into(), serde_json::to_value(&resolved)?);
    let card = ModelCard {
        format: CARD_FORMAT.into(),
        name: format!("{}-{}", cfg.dataset, cfg.method.name()),
        dataset: cfg.dataset.clone(),
        method: cfg.method,
        model: model_cfg,
        steps: cfg.steps,
        seed: cfg.seed,
        metrics: metrics.clone(),
        provenance,
        weights_sha256: None,
    };
    let model_dir = out.join("model");
    save_model_dir(&model_dir, &card, &inference)?;
    if let Some(report) = report {
        write_atomic(&out.join("eval.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
    }
    Ok(RunSummary { model_dir: Some(model_dir), metrics })
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
) -> Result<(checkpoint::Resumed, ModuleOptimizer)> {
    let mut errors = Vec::new();
    let loaded = checkpoints.iter().find_map(|dir| {
        let attempt = || -> Result<_> {
            let (r, optim) = checkpoint::load_with_optimizer(dir, model_cfg, device, new_optimizer(cfg))?;
            if cfg.method.is_trigflow() && r.weight.is_none() {
                bail!("{}: no weight.safetensors for w_phi(t)", dir.display());
            }
            Ok((r, optim))
        };
        attempt().map_err(|e| errors.push(format!("{e:#}"))).ok().map(|ok| (dir, ok))
    });
    let Some((dir, (r, optim))) = loaded else {
        bail!(
            "--resume: no checkpoint in {} loads: {}",
            out.join("checkpoints").display(),
            errors.join("; ")
        );
    };
    if !errors.is_empty() {
        eprintln!("warning: --resume passed over damaged checkpoints: {}", errors.join("; "));
    }
    if r.step > cfg.steps || (r.step == cfg.steps && out.join("model").join("config.json").exists()) {
        bail!("--resume: the run already reached step {} of {} and wrote its model", r.step, cfg.steps);
    }
    tracing::info!(step = r.step, checkpoint = %dir.display(), "resuming");
    Ok((r, optim))
}

/// Makes the run folder ready for a new run: refused (`Start::New`) where it holds checkpoints or a
/// model of an earlier run, which a later `--resume` would otherwise continue; `Start::Replace` removes
/// the old checkpoints.
fn clear_for_new_run(out: &Path, start: Start) -> Result<()> {
    let dir = out.join("checkpoints");
    let has_checkpoints = std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some());
    let has_model = out.join("model").exists();
    if start == Start::New && (has_checkpoints || has_model) {
        bail!(
            "run folder {} already holds {}; pass --resume to continue it, --force to replace it, or choose another --out",
            out.display(),
            if has_model { "a trained model" } else { "checkpoints of another run" }
        );
    }
    if has_checkpoints {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove the old {}", dir.display()))?;
    }
    Ok(())
}

/// The lines of `metrics.jsonl` for steps up to `step` (empty when the file is missing).
fn metrics_up_to(path: &Path, step: u64) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| s <= step)
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// What a step's loss reports besides the loss: the schedule values that steer the step and are logged.
#[derive(Clone, Copy, Debug)]
enum Schedule {
    /// EDM and TrigFlow diffusion: none.
    None,
    /// Discrete consistency (CT, iCT, CD): the discretisation `N(k)` and the target network's EMA rate
    /// `mu(k)` (`theta^- <- mu theta^- + (1 - mu) theta`; 0: the target is `stopgrad(theta)`).
    Discrete { n: usize, mu: f64 },
    /// sCT / sCD: the tangent warm-up factor `r = min(1, k / H)`.
    Tangent { r: f64 },
}

/// What every step's loss needs besides the networks.
struct StepContext<'a> {
    cfg: &'a TrainConfig,
    ct: CtConfig,
    scm: ScmConfig,
    noise: &'a Noise,
}

impl StepContext<'_> {
    /// The method's loss on `x0` (rows `progress.first_row..` of step `progress.k`), with its schedule.
    fn loss(
        &self,
        model: &Denoiser,
        weight: Option<&AdaptiveWeight>,
        target: Option<&Denoiser>,
        teacher: Option<&Denoiser>,
        x0: Tensor<2>,
        progress: Progress,
    ) -> (Tensor<1>, Schedule) {
        let (cfg, noise) = (self.cfg, self.noise);
        let w = || weight.expect("TrigFlow methods have w_phi");
        match cfg.method {
            Method::Edm => (edm_loss(model, x0, &cfg.edm, noise, progress.streams()), Schedule::None),
            Method::Ct | Method::Ict | Method::Cd => {
                // mu = 0 (iCT): the target is the student itself, without autodiff.
                let valid;
                let t = match target {
                    Some(t) => t,
                    None => {
                        valid = model.valid();
                        &valid
                    }
                };
                let solver = cfg.teacher.as_ref().map(|t| t.solver);
                let teach = teacher.zip(solver).map(|(model, solver)| Teacher { model, solver });
                let step = ct_loss(model, t, x0, &self.ct, progress, noise, teach);
                (step.loss, Schedule::Discrete { n: step.n, mu: step.mu })
            }
            Method::Trigflow => {
                (trigflow_diffusion_loss(model, w(), x0, &self.scm, progress, noise), Schedule::None)
            }
            Method::Sct | Method::Scd => {
                let step = scm_loss(model, &model.valid(), w(), x0, &self.scm, progress, noise, teacher);
                (step.loss, Schedule::Tangent { r: step.r })
            }
        }
    }
}

/// An 8×8 grid of one-step samples (diffusion models: Heun at 35 NFE), seed fixed across the run so
/// successive grids show the same noise.
fn sample_grid(model: &Denoiser, cfg: &TrainConfig, shape: [usize; 3]) -> Result<Vec<u8>> {
    let n = 64;
    let pts = if cfg.method.is_diffusion() {
        eval::teacher_points(model, n, cfg.seed, 35)?
    } else {
        eval::consistency_points(model, n, cfg.seed, &[])?
    };
    Ok(grid_png(&pts, shape, 8, grid_zoom(shape)))
}

/// `loss.png` from what `metrics.jsonl` holds so far.
fn write_loss_plot(out: &Path, metrics_path: &Path) -> Result<()> {
    let metrics_text = std::fs::read_to_string(metrics_path).unwrap_or_default();
    write_atomic(&out.join("loss.png"), &crate::plot::loss_png(&metrics_text))
}

/// The checkpoint of step `step` (see [`checkpoint`]).
fn write_checkpoint(
    out: &Path,
    step: u64,
    model: &Denoiser,
    ema: &Denoiser,
    target: Option<&Denoiser>,
    weight: Option<&AdaptiveWeight>,
    optim: &ModuleOptimizer,
) -> Result<()> {
    let bytes = optim.into_bytes().map_err(|e| anyhow::anyhow!("cannot serialise the optimiser: {e:?}"))?;
    checkpoint::save(out, step, model, ema, target, weight, &bytes)
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
    let (card, model) =
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
    // Starting weights must be the recipe's network: same sizes and the same time-embedding
    // frequencies (those are computed from the config, not stored, so a mismatch would load silently).
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

/// On the CPU, each of `shards` > 1 batch shards runs its operations in a rayon pool of its own (the
/// machine's threads shared out, at least one each), so the shards train side by side without waiting
/// on one shared pool. Empty for one shard and for GPUs.
fn cpu_shard_pools(backend: crate::backend::Backend, shards: usize) -> Result<Vec<rayon::ThreadPool>> {
    if backend != crate::backend::Backend::Cpu || shards < 2 {
        return Ok(Vec::new());
    }
    let threads = (rayon::current_num_threads() / shards).max(1);
    (0..shards)
        .map(|i| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(move |t| format!("cm-shard-{i}-{t}"))
                .build()
                .context("cannot start a thread pool for a CPU shard")
        })
        .collect()
}
