//! `cm train`: the training loop shared by every method, with progress, metrics, checkpoints and export.
//!
//! [`state`] holds what a run carries from step to step ([`TrainState`], which checkpoints save),
//! [`step`] one step on one device or split over several.

mod probe;
mod state;
mod step;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use cm_core::ema::{ema_decay_at, ema_update};
use cm_core::objective::{Levels, Progress};
use cm_core::rng::Noise;
use cm_core::{Denoiser, Model, ModelCard, Plan, card::CARD_FORMAT};
use indicatif::{ProgressBar, ProgressStyle};

use self::probe::Probe;
pub use self::state::TrainState;
use self::step::{Schedule, Shards, StepContext};
use crate::checkpoint;
use crate::config::TrainConfig;
use crate::data::{Source, Split};
use crate::eval;
use crate::io::{CARD_FILE, WEIGHTS_FILE, grid_png, grid_zoom, save_model_dir, scatter_png, write_atomic};

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
    /// Options for a run started as `start`, on one device, to its last step.
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
    if opts.devices > cfg.batch {
        bail!(
            "--devices {}: each device trains on a shard of the batch, and field `batch` = {} has fewer rows",
            opts.devices,
            cfg.batch
        );
    }
    let resume = opts.start == Start::Resume;
    let resolved = cfg.resolved();
    // A backend that cannot start leaves no run folder behind.
    let device = cfg.backend.device()?.autodiff();
    device.seed(cfg.seed);
    let _lock = RunLock::take(out)?;
    let checkpoints = check_folder(out, opts.start, &resolved)?;
    // What can fail before the first step (the devices, a teacher or init_from, the data, the probe's
    // trajectories) and the first step itself are tried before a new run touches the folder, so a
    // failed `--force` keeps the old run's checkpoints, metrics and recipe.
    let (mut state, teacher) = state::start(cfg, out, resume, &checkpoints, &device)?;
    let source = cfg.source(Split::Train)?;
    let probe = consistency_probe(cfg, teacher.as_ref(), &state.model)?;
    let shards = Shards::new(cfg, opts.devices, &device, teacher)?;
    let metrics_path = out.join("metrics.jsonl");
    let shape = state.model.image_shape();
    let noise = Noise::new(cfg.seed);
    let bar = ProgressBar::new(cfg.steps);
    bar.set_position(state.step);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} {msg}")
            .expect("static template"),
    );
    let window = (Instant::now(), 0u64);
    let ctx = StepContext { cfg, dim: source.dim(), ct: cfg.ct(), scm: cfg.scm(), noise: &noise };
    let metrics = None;
    let mut run = Run { ctx, out, source, shape, shards, probe, metrics_path, metrics, bar, window, started };
    let (first_step, end) = (state.step, opts.stop_at.map_or(cfg.steps, |s| s.min(cfg.steps)));
    for k in first_step..end {
        let (next, done) = run.advance(state, k)?;
        if run.metrics.is_none() {
            // The first step is read back before the run writes anything: a failure a GPU runtime
            // deferred to the first read is an error here, with the folder as it was.
            crate::gpu::check_step(&next.ema, cfg.backend, k + 1)?;
            run.begin(resume.then_some(first_step), &resolved)?;
        }
        run.report(&next, k, done)?;
        state = next;
    }
    if run.metrics.is_none() {
        run.begin(resume.then_some(first_step), &resolved)?;
    }
    run.bar.finish_and_clear();
    if first_step < end {
        checkpoint::save(out, &state)?;
    }
    run.metrics_file()?.flush()?;
    write_loss_plot(out, &run.metrics_path)?;
    if end < cfg.steps {
        return Ok(RunSummary { model_dir: None, metrics: BTreeMap::new() });
    }
    run.export(state.ema, command, &resolved)
}

/// `<run folder>/.cm-lock`, locked while a run trains there, so a second `cm train` into the same folder
/// is refused instead of interleaving its files with this one's. The OS releases the lock when the
/// process ends, however it ends (a killed run's `--resume` is not blocked). The file stays: removing it
/// would let a run that opened it just before, and one that makes it anew, both hold "the" lock.
struct RunLock {
    _file: std::fs::File,
}

impl RunLock {
    fn take(out: &Path) -> Result<Self> {
        std::fs::create_dir_all(out)
            .with_context(|| format!("cannot create run folder {}", out.display()))?;
        let path = out.join(".cm-lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "run folder {} is in use by another `cm train` (it holds {}); wait for it to finish or choose another --out",
                out.display(),
                path.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }
}

/// Checks the run folder `out` without changing it and returns the checkpoints `--resume` may continue
/// from (none for a new run): a resumed run's recipe (`resolved`) must be its `config.toml`; a new run
/// needs a folder without another run's checkpoints or model, unless `--force` replaces them.
fn check_folder(out: &Path, start: Start, resolved: &TrainConfig) -> Result<Vec<PathBuf>> {
    // The run ends by writing `model/`: found out now if that would be refused, not after training.
    crate::io::check_replaceable_dir(&out.join("model"), &[CARD_FILE, WEIGHTS_FILE], "a model folder")?;
    if start != Start::Resume {
        let has_checkpoints =
            std::fs::read_dir(out.join("checkpoints")).is_ok_and(|mut d| d.next().is_some());
        let has_model = out.join("model").exists();
        if start == Start::New && (has_checkpoints || has_model) {
            bail!(
                "run folder {} already holds {}; pass --resume to continue it, --force to replace it, or choose another --out",
                out.display(),
                if has_model { "a trained model" } else { "checkpoints of another run" }
            );
        }
        return Ok(Vec::new());
    }
    let resolved_toml = toml::to_string_pretty(resolved)?;
    let saved_path = out.join("config.toml");
    let saved = std::fs::read_to_string(&saved_path)
        .with_context(|| format!("--resume: cannot read the run's recipe {}", saved_path.display()))?;
    if let Some((i, (a, b))) = saved.lines().zip(resolved_toml.lines()).enumerate().find(|(_, (a, b))| a != b)
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
    Ok(all)
}

/// Opens `metrics.jsonl` for appending: a new run starts it afresh; a run resumed at `resumed_at` keeps only
/// the lines up to its checkpoint, so steps a killed run logged after its last checkpoint are not repeated.
fn open_metrics(path: &Path, resumed_at: Option<u64>) -> Result<std::fs::File> {
    let kept = resumed_at.map_or_else(String::new, |step| metrics_up_to(path, step));
    write_atomic(path, kept.as_bytes())?;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// What a step computed that its report needs: the loss where it was read, the learning rate, the
/// schedule, and whether a sample grid is due.
struct Done {
    loss: Option<f64>,
    lr: f64,
    schedule: Schedule,
    sample_due: bool,
}

/// What the loop reads besides the training state, and where it reports.
struct Run<'a> {
    ctx: StepContext<'a>,
    out: &'a Path,
    source: Source,
    /// The image shape of an image network.
    shape: Option<[usize; 3]>,
    shards: Shards,
    /// Image runs with a diffusion model at hand: the jumps from its trajectories, at every sample grid.
    probe: Option<Probe>,
    metrics_path: PathBuf,
    /// `metrics.jsonl`, opened by [`Run::begin`] once the first step has succeeded.
    metrics: Option<std::fs::File>,
    bar: ProgressBar,
    /// When the current steps/s window started, and its steps so far.
    window: (Instant, u64),
    started: Instant,
}

impl Run<'_> {
    /// A class-conditional run's labels after label dropout (each withheld with probability
    /// `label_dropout`, drawn from the step's own stream); none for other runs.
    fn labels(&self, labels: Vec<usize>, streams: cm_core::objective::Streams) -> Vec<Option<usize>> {
        let cfg = self.ctx.cfg;
        if cfg.network.classes() == 0 {
            return Vec::new();
        }
        let coins = self.ctx.noise.uniforms(streams.labels(), streams.first_row, labels.len(), 1);
        labels.into_iter().zip(coins).map(|(c, u)| ((u as f64) >= cfg.label_dropout).then_some(c)).collect()
    }

    /// Where the run starts writing, after its first step: a new run's folder is cleared of an old run
    /// ([`begin_new_run`]) and `metrics.jsonl` begun afresh; a run resumed at step `resumed_at` keeps
    /// the metrics lines up to it.
    fn begin(&mut self, resumed_at: Option<u64>, resolved: &TrainConfig) -> Result<()> {
        if resumed_at.is_none() {
            begin_new_run(self.out, resolved)?;
        }
        self.metrics = Some(open_metrics(&self.metrics_path, resumed_at)?);
        Ok(())
    }

    fn metrics_file(&mut self) -> Result<&mut std::fs::File> {
        self.metrics.as_mut().context("metrics.jsonl is written only once the run has begun")
    }

    /// Step `k` from `state`: the optimiser step and the target and EMA updates; refused where the loss
    /// is read (a step that logs) and is not finite.
    fn advance(&mut self, state: TrainState, k: u64) -> Result<(TrainState, Done)> {
        let cfg = self.ctx.cfg;
        let progress = Progress::new(k, cfg.steps);
        let streams = progress.streams();
        let (batch, labels) = self.source.batch(cfg.seed, streams.data(), cfg.batch);
        let labels = self.labels(labels, streams);
        let lr = cfg.optimizer.lr_at(k, cfg.steps);
        let sample_due =
            self.shape.is_some() && cfg.sample_every > 0 && (k + 1).is_multiple_of(cfg.sample_every);
        // A sample grid's step is logged too, so its probe has a line to go in.
        let log_now = (k + 1).is_multiple_of(cfg.log_every.max(1)) || k + 1 == cfg.steps || sample_due;
        let grads = self.shards.grads(&self.ctx, &state, (&batch, &labels), progress, log_now);
        let (loss, schedule) = (grads.loss, grads.schedule);
        if let Some(loss) = loss.filter(|l| !l.is_finite()) {
            let kept = if self.metrics.is_some() {
                "checkpoints so far are kept in"
            } else {
                "nothing was changed in"
            };
            bail!(
                "the loss became {loss} at step {}; try a lower optimizer.lr or a grad_clip ({kept} {})",
                k + 1,
                self.out.display()
            );
        }
        let mut state = state.apply(grads, lr);
        if let Schedule::Discrete { mu, .. } = schedule {
            state.update_target(mu);
        }
        state.ema = ema_update(state.ema, &state.model, ema_decay_at(cfg.ema_decay, cfg.ema_rampup, k));
        state.step = k + 1;
        self.window.1 += 1;
        Ok((state, Done { loss, lr, schedule, sample_due }))
    }

    /// What is due after step `k` (which gave `state`, with `done`): the metrics line, sample grid and
    /// checkpoint.
    fn report(&mut self, state: &TrainState, k: u64, done: Done) -> Result<()> {
        let cfg = self.ctx.cfg;
        if let Some(loss) = done.loss {
            self.log(k, loss, done.lr, done.schedule, &state.ema, done.sample_due)?;
        }
        self.bar.inc(1);
        if let (Some(shape), true) = (self.shape, done.sample_due) {
            let png = sample_grid(&state.ema, cfg, shape)?;
            write_atomic(&self.out.join("samples").join(format!("step-{:07}.png", k + 1)), &png)?;
        }
        if cfg.checkpoint_every > 0 && (k + 1).is_multiple_of(cfg.checkpoint_every) && k + 1 < cfg.steps {
            checkpoint::save(self.out, state)?;
            self.metrics_file()?.flush()?;
            write_loss_plot(self.out, &self.metrics_path)?;
        }
        Ok(())
    }

    /// The metrics line of step `k` (its finite `loss`, learning rate `lr` and `schedule`, a quick
    /// evaluation of the EMA `ema` where due, and the consistency probe at a sample grid's step,
    /// `probe_now`).
    fn log(
        &mut self,
        k: u64,
        loss: f64,
        lr: f64,
        schedule: Schedule,
        ema: &Denoiser,
        probe_now: bool,
    ) -> Result<()> {
        let cfg = self.ctx.cfg;
        let secs = self.window.0.elapsed().as_secs_f64();
        let rate = self.window.1 as f64 / secs.max(1e-9);
        self.window = (Instant::now(), 0);
        let elapsed = self.started.elapsed().as_secs_f64();
        let mut line = serde_json::json!(
            {"step": k + 1, "loss": loss, "steps_per_s": rate, "elapsed_s": elapsed, "lr": lr}
        );
        match schedule {
            Schedule::Discrete { levels, mu } => {
                match levels {
                    Levels::Grid { n } => line["n"] = n.into(),
                    Levels::Ect { stage } => line["stage"] = stage.into(),
                }
                line["mu"] = mu.into();
            }
            Schedule::Tangent { r } => line["r"] = r.into(),
            Schedule::None => {}
        }
        if let (Source::Toy(dataset), true) =
            (&self.source, cfg.eval_every > 0 && (k + 1).is_multiple_of(cfg.eval_every))
        {
            let inference = ema.clone();
            line["sliced_w2_1step"] = eval::quick_sliced_w2(&inference, *dataset, cfg.method)?.into();
        }
        if let (Some(probe), true) = (&self.probe, probe_now) {
            let rms = probe.measure(ema)?;
            line["jump_rms_sigma_max"] = rms[0].into();
            line["jump_rms_mean"] = (rms.iter().sum::<f64>() / rms.len() as f64).into();
        }
        writeln!(self.metrics_file()?, "{line}")?;
        self.bar.set_message(format!("loss {loss:.4}"));
        tracing::debug!(step = k + 1, loss, "step");
        Ok(())
    }

    /// Exports the evaluation EMA `ema` (on a plain, non-autodiff device) as the run's model, with its
    /// samples, evaluation and model card (`command` and the recipe `resolved` in its provenance).
    fn export(self, ema: Denoiser, command: &str, resolved: &TrainConfig) -> Result<RunSummary> {
        let (cfg, out) = (self.ctx.cfg, self.out);
        // The run's model as every caller sees one (core's `Model`): evaluated and sampled through it.
        let mut model = Model::new(bare_card(cfg), ema);
        if let Source::Images { set, .. } = &self.source
            && model.denoiser.classes() > 0
        {
            model.card.class_names = set.class_names.clone();
        }
        let (metrics, report) = match (&self.source, self.shape) {
            (Source::Toy(dataset), _) => {
                let report = eval::evaluate(&model, *dataset, 4096, cfg.seed.wrapping_add(1), 35, None)?;
                let plan = Plan::preview(model.card.method, &model.denoiser.range);
                let samples = eval::model_points(&model, &plan, 4096, cfg.seed)?;
                write_atomic(&out.join("samples.png"), &scatter_png(&samples, 512, 2.0))?;
                (report.flat_metrics(), Some(serde_json::to_value(&report)?))
            }
            (Source::Images { .. }, Some(shape)) => {
                write_atomic(&out.join("samples.png"), &sample_grid(&model.denoiser, cfg, shape)?)?;
                (BTreeMap::new(), None)
            }
            (Source::Images { .. }, None) => anyhow::bail!("an image dataset needs an image network"),
        };
        let wall = self.started.elapsed().as_secs_f64();
        let provenance = &mut model.card.provenance;
        provenance.insert("command".into(), command.into());
        provenance.insert("wall_time_s".into(), wall.into());
        provenance.insert("hardware".into(), eval::hardware().into());
        provenance.insert("backend".into(), cfg.backend.name().into());
        provenance.insert("devices".into(), self.shards.len().into());
        let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
        provenance.insert("cpu_threads".into(), threads.into());
        provenance.insert("config".into(), serde_json::to_value(resolved)?);
        if let Some(set) = cfg.image_dataset() {
            provenance.insert("data".into(), set.source().into());
        }
        model.card.metrics = metrics.clone();
        let model_dir = out.join("model");
        save_model_dir(&model_dir, &model.card, &model.denoiser)?;
        if let Some(report) = report {
            write_atomic(&out.join("eval.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
        }
        Ok(RunSummary { model_dir: Some(model_dir), metrics })
    }
}

/// Starts a new run in `out` (made by [`RunLock::take`], checked by [`check_folder`]): the old run's
/// checkpoints removed (`--force`; its model is replaced when the new one is written), the recipe
/// `resolved` written.
fn begin_new_run(out: &Path, resolved: &TrainConfig) -> Result<()> {
    let dir = out.join("checkpoints");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove the old {}", dir.display()))?;
    }
    write_atomic(&out.join("config.toml"), toml::to_string_pretty(resolved)?.as_bytes())
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

/// An 8×8 grid (a class-conditional model's: a column per class, 8 rows) of one-step samples (diffusion models: Heun at 35 NFE), seed fixed across the run so
/// successive grids show the same noise.
fn sample_grid(model: &Denoiser, cfg: &TrainConfig, shape: [usize; 3]) -> Result<Vec<u8>> {
    // A class-conditional model's samples cycle through its classes: one column per class.
    let columns = match model.classes() {
        k @ 2..=16 => k,
        _ => 8,
    };
    let pts = eval::points(model, &Plan::preview(cfg.method, &model.range), columns * 8, cfg.seed)?;
    Ok(grid_png(&pts, shape, columns, grid_zoom(shape)))
}

/// The consistency probe of a consistency-model image run that has a diffusion model at hand: the
/// distillation `teacher`, else an `init_from` model that is a diffusion model. `None` for other runs,
/// and (with a warning) where a resumed run's `init_from` folder no longer loads.
fn consistency_probe(
    cfg: &TrainConfig,
    teacher: Option<&Denoiser>,
    student: &Denoiser,
) -> Result<Option<Probe>> {
    if cfg.method.is_diffusion() || student.image_shape().is_none() || cfg.sample_every == 0 {
        return Ok(None);
    }
    let ode = match (teacher, &cfg.init_from) {
        (Some(t), _) => t.clone(),
        (None, Some(path)) => match crate::io::load_model_dir(path, &cfg.backend.device()?) {
            Ok(m) if m.card.method.is_diffusion() => m.denoiser,
            Ok(_) => return Ok(None),
            Err(e) => {
                tracing::warn!("no consistency probe: init_from {} does not load: {e:#}", path.display());
                return Ok(None);
            }
        },
        (None, None) => return Ok(None),
    };
    // A class-conditional run probes every class in turn (the sample grid's columns), along the guided
    // ODE where its teacher is distilled with guidance; a probe's model that takes other classes than
    // the student (or none) is probed with no class.
    let classes = (ode.classes() > 0 && ode.classes() == student.classes()).then_some(ode.classes());
    let guidance = match (teacher, &cfg.teacher) {
        (Some(_), Some(t)) if classes.is_some() => t.guidance,
        _ => 1.0,
    };
    Probe::new(&ode, &student.range, cfg.seed, classes, guidance).map(Some)
}

/// `loss.png` from what `metrics.jsonl` holds so far.
fn write_loss_plot(out: &Path, metrics_path: &Path) -> Result<()> {
    let metrics_text = std::fs::read_to_string(metrics_path).unwrap_or_default();
    write_atomic(&out.join("loss.png"), &crate::plot::loss_png(&metrics_text))
}

/// The card of the model a recipe trains, before its metrics and provenance are known.
fn bare_card(cfg: &TrainConfig) -> ModelCard {
    ModelCard {
        format: CARD_FORMAT.into(),
        name: format!("{}-{}", cfg.dataset, cfg.method.name()),
        dataset: cfg.dataset.clone(),
        method: cfg.method,
        model: cfg.model(),
        steps: cfg.steps,
        seed: cfg.seed,
        metrics: BTreeMap::new(),
        provenance: BTreeMap::new(),
        taus: BTreeMap::new(),
        weights_sha256: None,
        class_names: Vec::new(),
    }
}
