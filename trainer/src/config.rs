//! Training recipes: TOML files in `configs/`, parsed strictly, resolved, and saved beside each run.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cm_core::data2d::Dataset2d;
use cm_core::net::Architecture;
use cm_core::objective::{CtConfig, EdmConfig, ScmConfig};
use cm_core::sample::OdeSolver;
use cm_core::schedule::Curriculum;
use cm_core::{Method, ModelConfig, NoiseRange};
use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::data::{ImageDataset, Source, Split, dataset_names, load_images};

/// Which optimiser.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimKind {
    /// Adam (Kingma & Ba 2015), burn's; EDM and CM.
    #[default]
    Adam,
    /// RAdam (Liu et al. 2020), ours (`radam.rs`); iCT.
    Radam,
}

/// Optimiser settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    /// `adam` (default) or `radam`.
    #[serde(default)]
    pub kind: OptimKind,
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warm-up length in steps (0 = none).
    #[serde(default)]
    pub warmup_steps: u64,
    /// Clip each parameter tensor's gradient to this L2 norm (burn's per-tensor clipping; none if absent).
    #[serde(default)]
    pub grad_clip: Option<f64>,
    /// Adam's / RAdam's `beta_2`.
    #[serde(default = "OptimConfig::default_beta_2")]
    pub beta_2: f64,
    /// Learning-rate schedule after warm-up: `constant` (the papers') or `cosine` (to 0 at the end).
    #[serde(default)]
    pub decay: LrDecay,
}

/// Learning-rate schedule after warm-up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LrDecay {
    #[default]
    Constant,
    /// `lr (1 + cos(pi p)) / 2` with `p` the fraction of post-warm-up steps done.
    Cosine,
}

impl OptimConfig {
    fn default_beta_2() -> f64 {
        0.999
    }

    /// Learning rate at step `k` of `total` (linear warm-up, then the decay schedule).
    pub fn lr_at(&self, k: u64, total: u64) -> f64 {
        if k < self.warmup_steps {
            return self.lr * (k + 1) as f64 / self.warmup_steps as f64;
        }
        match self.decay {
            LrDecay::Constant => self.lr,
            LrDecay::Cosine => {
                let span = total.saturating_sub(self.warmup_steps).max(1) as f64;
                let p = ((k - self.warmup_steps) as f64 / span).min(1.0);
                self.lr * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
            }
        }
    }
}

/// One training recipe. Every field is documented because the file is the user interface.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Dataset name: `moons`, `swiss-roll`, `8gaussians`, `checkerboard` (2D, MLP network) or `mnist`,
    /// `fashion-mnist`, `emoji` (four vendors), `emoji-open` (Google and Twitter), `cifar10`, `folder` (images, U-Net; resolution from `network.resolution`).
    pub dataset: String,
    /// Folder of `cifar10`/`folder` data, or a replacement for a packaged set's cache folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_path: Option<PathBuf>,
    /// Mirror training images left-right with probability 1/2 (CIFAR-style augmentation).
    #[serde(default)]
    pub flip: bool,
    /// Class-conditional networks (`network.classes` = the dataset's classes): the probability that a
    /// training row's class is withheld (a zero one-hot row), so the model also samples with no class
    /// asked (EDM's label dropout). 0 = always the row's class.
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub label_dropout: f64,
    /// `edm` (EDM diffusion teacher), `ct` (CM recipe), `ict`, `ect` (easy consistency tuning: iCT's
    /// loss with ECT's pairs, `ct.curriculum = { kind = "ect", ... }`), `cd` (distillation, CM Algorithm 2),
    /// `trigflow` (TrigFlow diffusion teacher), `sct` or `scd` (continuous-time, sCM Algorithm 1).
    pub method: Method,
    /// Training steps `K`.
    pub steps: u64,
    /// Batch size.
    pub batch: usize,
    /// Seed of every random draw (weights, data, noise, dropout).
    #[serde(default)]
    pub seed: u64,
    /// `cpu` (burn flex), `wgpu`, `vulkan`, `cuda` (the GPU ones where cm is built with their feature).
    #[serde(default)]
    pub backend: Backend,
    /// Evaluation EMA decay of the exported weights (iCT: 0.99993 on CIFAR-10; shorter runs want less).
    pub ema_decay: f64,
    /// EDM's EMA ramp-up ratio (0.05 in EDM): the evaluation EMA's half-life is at most this fraction of
    /// the steps done, so a short run's average is not dominated by its initial weights (random, or the
    /// `init_from` model). Off by default.
    #[serde(default)]
    pub ema_rampup: Option<f64>,
    /// Log loss to `metrics.jsonl` every this many steps.
    #[serde(default = "TrainConfig::default_log_every")]
    pub log_every: u64,
    /// Evaluate one-step quality (sliced W2 on 1024 points) every this many steps (0 = only at the end).
    #[serde(default)]
    pub eval_every: u64,
    /// Write a checkpoint every this many steps (0 = only at the end).
    #[serde(default)]
    pub checkpoint_every: u64,
    /// Images: write a grid of one-step (teacher: Heun 35 NFE) samples every this many steps (0 = only at
    /// the end), to `samples/step-XXXXXXX.png`. A consistency run with a diffusion model at hand (its
    /// `[teacher]`, or an `init_from` diffusion model) also logs its jumps from that model's trajectories
    /// then (`jump_rms_sigma_max`, `jump_rms_mean` in `metrics.jsonl`; `cm trajectory`'s measure).
    #[serde(default)]
    pub sample_every: u64,
    pub optimizer: OptimConfig,
    /// The network: `kind = "mlp"` (2D) or `kind = "unet"` (images).
    pub network: Architecture,
    /// `sigma_min`, `sigma_max`, `sigma_data`.
    #[serde(default)]
    pub noise: NoiseRange,
    /// EDM teacher training (method `edm`).
    #[serde(default)]
    pub edm: EdmConfig,
    /// Discrete-time consistency training and distillation (methods `ct`, `ict`, `cd`); defaults to the
    /// method's paper recipe (CD: N = 18, mu = 0, L2).
    #[serde(default)]
    pub ct: Option<CtConfig>,
    /// Continuous-time settings (methods `trigflow`, `sct`, `scd`); defaults to sCM's CIFAR-10 values.
    #[serde(default)]
    pub scm: Option<ScmConfig>,
    /// The diffusion teacher that `cd` and `scd` distil.
    #[serde(default)]
    pub teacher: Option<TeacherConfig>,
    /// Start the network from this model folder's weights (same dataset, network and noise range), e.g.
    /// consistency training initialised from a diffusion model (ECT, Geng et al. 2024). Unlike `[teacher]`,
    /// the model takes no part in the loss.
    #[serde(default)]
    pub init_from: Option<PathBuf>,
}

/// The teacher of a distillation recipe.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeacherConfig {
    /// Model folder (`config.json` + `model.safetensors`) of a diffusion model (`edm` or `trigflow`)
    /// trained on the same dataset, e.g. `www/models/moons-edm`.
    pub path: PathBuf,
    /// ODE solver of CD's teacher step (`euler` or `heun`; CM used Heun).
    #[serde(default = "TeacherConfig::default_solver")]
    pub solver: OdeSolver,
    /// Start the student from the teacher's weights (CM does for CD); needs the same network.
    #[serde(default)]
    pub init_from_teacher: bool,
    /// Class-conditional teachers: classifier-free guidance weight `w` of the teacher's ODE
    /// (`D_w = D + w (D_c - D)`; 1: none), distilled into the student, which then samples guided in one
    /// jump (as sCM and LCM distil guided teachers). Needs `network.classes` and label dropout in the
    /// teacher's own training (its no-class branch).
    #[serde(default = "TeacherConfig::default_guidance", skip_serializing_if = "is_one")]
    pub guidance: f64,
}

impl TeacherConfig {
    fn default_solver() -> OdeSolver {
        OdeSolver::Heun
    }

    fn default_guidance() -> f64 {
        1.0
    }
}

fn is_one(v: &f64) -> bool {
    *v == 1.0
}

/// The dataset `name` exists and `network` fits it (an MLP of `dim = 2` on 2D points, a U-Net of the
/// set's channels); the image set where it is one. Recipes and model cards are checked by it alike;
/// `field` names the network where it is wrong (a recipe's `network`, a card's `model.architecture`).
pub fn check_dataset_network(
    name: &str,
    network: &Architecture,
    field: &str,
) -> Result<Option<ImageDataset>> {
    match (Dataset2d::from_name(name), ImageDataset::from_name(name), network) {
        (None, None, _) => {
            bail!("field `dataset`: unknown dataset {name:?}, expected one of {:?}", dataset_names())
        }
        (Some(_), _, Architecture::Mlp(m)) if m.dim == 2 => Ok(None),
        (Some(_), _, _) => bail!("field `{field}`: 2D dataset {name:?} needs kind = \"mlp\" with dim = 2"),
        (_, Some(set), Architecture::UNet(u)) if u.channels != set.channels() => bail!(
            "field `{field}.channels`: dataset {name:?} has {} channel(s), the network takes {}",
            set.channels(),
            u.channels
        ),
        (_, Some(set), Architecture::UNet(_)) => Ok(Some(set)),
        (_, Some(_), _) => bail!("field `{field}`: image dataset {name:?} needs kind = \"unet\""),
    }
}

impl TrainConfig {
    fn default_log_every() -> u64 {
        50
    }

    /// Reads and validates a recipe file; unknown fields are errors that name the field.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = crate::io::read_limited(path, crate::io::MAX_TEXT_FILE)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let text =
            String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 text", path.display()))?;
        let cfg: TrainConfig = toml::from_str(&text).map_err(|e| {
            let at = e.span().map(|s| {
                let line = text[..s.start].matches('\n').count() + 1;
                let src = text.lines().nth(line - 1).unwrap_or("").trim();
                format!(" at line {line} (`{src}`)")
            });
            anyhow::anyhow!("{}{}: {}", path.display(), at.unwrap_or_default(), e.message())
        })?;
        cfg.validate().with_context(|| format!("invalid config {}", path.display()))?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        self.validate_data()?;
        self.validate_numbers()?;
        self.validate_sections()
    }

    /// The dataset exists and the network fits it (an MLP on 2D points, a U-Net of its channels).
    fn validate_data(&self) -> Result<()> {
        if let Some(set) = check_dataset_network(&self.dataset, &self.network, "network")?
            && set.needs_path()
            && self.data_path.is_none()
        {
            bail!("field `data_path`: dataset {:?} is read from a folder you give", self.dataset);
        }
        Ok(())
    }

    /// Step count, batch, EMA and optimiser settings in range; the sections' own checks.
    fn validate_numbers(&self) -> Result<()> {
        if self.steps == 0 {
            bail!("field `steps`: must be at least 1");
        }
        if self.batch == 0 || self.batch > 1 << 20 {
            bail!("field `batch`: must be between 1 and 1048576, got {}", self.batch);
        }
        if !(0.0..1.0).contains(&self.label_dropout) {
            bail!("field `label_dropout`: must be a probability in [0, 1), got {}", self.label_dropout);
        }
        if self.label_dropout > 0.0 && self.network.classes() == 0 {
            bail!(
                "field `label_dropout`: only a class-conditional network (`network.classes` > 0) takes labels"
            );
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            bail!("field `ema_decay`: must be in [0, 1), got {}", self.ema_decay);
        }
        if let Some(r) = self.ema_rampup
            && !(r > 0.0 && r.is_finite())
        {
            bail!("field `ema_rampup`: must be a positive ratio (EDM: 0.05), got {r}");
        }
        if !(self.optimizer.lr > 0.0 && self.optimizer.lr.is_finite()) {
            bail!("field `optimizer.lr`: must be positive, got {}", self.optimizer.lr);
        }
        if let Some(c) = self.optimizer.grad_clip
            && !(c > 0.0 && c.is_finite())
        {
            bail!("field `optimizer.grad_clip`: must be a positive norm, got {c}");
        }
        if !(self.optimizer.beta_2 > 0.0 && self.optimizer.beta_2 < 1.0) {
            bail!("field `optimizer.beta_2`: must be in (0, 1), got {}", self.optimizer.beta_2);
        }
        if let Some(ct) = &self.ct {
            ct.validate().map_err(anyhow::Error::msg)?;
        }
        self.edm.validate().map_err(anyhow::Error::msg)?;
        self.network.validate().map_err(|e| anyhow::anyhow!("field `network`: {e}"))?;
        self.noise.validate().map_err(|e| anyhow::anyhow!("field `noise`: {e}"))?;
        Ok(())
    }

    /// The method's sections (`ct`, `scm`, `teacher`, `init_from`) present exactly when it uses them.
    fn validate_sections(&self) -> Result<()> {
        let m = self.method.name();
        if !self.method.is_discrete_consistency() && self.ct.is_some() {
            bail!("field `ct`: given for method `{m}`, which does not use it (ct, ict, ect and cd do)");
        }
        match (self.method == Method::Ect, matches!(self.ct().curriculum, Curriculum::Ect { .. })) {
            (true, false) => bail!(
                "field `ct.curriculum`: method `ect` pairs levels by ECT's mapping; use curriculum = {{ kind = \"ect\", \
                 q = 2.0, k = 8.0, b = 1.0, stages = 8 }}"
            ),
            (false, true) => bail!(
                "field `ct.curriculum`: the `ect` curriculum belongs to method `ect` (so the model card says \
                 how it was made), got method `{m}`"
            ),
            _ => {}
        }
        if !self.method.is_trigflow() && self.scm.is_some() {
            bail!("field `scm`: given for method `{m}`, which does not use it (trigflow, sct and scd do)");
        }
        match (&self.teacher, self.method.needs_teacher()) {
            (None, true) => bail!(
                "field `teacher`: method `{m}` distils a teacher; add [teacher] path = \"<model folder>\""
            ),
            (Some(_), false) => bail!(
                "field `teacher`: method `{m}` has no teacher (cd and scd do); to start from a model's \
                 weights, use init_from = \"<model folder>\""
            ),
            _ => {}
        }
        if self.init_from.is_some() && self.teacher.as_ref().is_some_and(|t| t.init_from_teacher) {
            bail!("field `init_from`: given together with teacher.init_from_teacher; keep one of the two");
        }
        if let Some(t) = &self.teacher {
            cm_core::model::check_guidance(t.guidance)
                .map_err(|e| anyhow::anyhow!("field `teacher.guidance`: {e}"))?;
            if t.guidance != 1.0 && self.network.classes() == 0 {
                bail!(
                    "field `teacher.guidance`: guidance needs a class-conditional network (`network.classes` > 0)"
                );
            }
        }
        // sCM's values: p_mean = -1.0, p_std = 1.4 (the proposal of ln(sigma)), tangent_c = 0.1.
        if let Some(scm) = &self.scm
            && !((0.0..=10.0).contains(&scm.p_mean.abs())
                && scm.p_std > 0.0
                && scm.p_std <= 10.0
                && scm.tangent_c > 0.0
                && scm.tangent_c.is_finite())
        {
            bail!(
                "field `scm`: need |p_mean| <= 10, 0 < p_std <= 10 and a finite tangent_c > 0, got p_mean = {}, \
                 p_std = {}, tangent_c = {}",
                scm.p_mean,
                scm.p_std,
                scm.tangent_c
            );
        }
        if let Some(cm_core::objective::JvpMode::FiniteDifference { h }) = self.scm.map(|s| s.jvp)
            && !(h > 0.0 && h < 1.0)
        {
            bail!("field `scm.jvp.h`: must be in (0, 1), got {h}");
        }
        Ok(())
    }

    /// Memory a training step needs, roughly, in bytes: weights, EMA, target and Adam's two moments,
    /// and the batch's activations (twice for the target pass, three times with sCM's JVP tangent).
    pub fn memory_estimate(&self) -> u64 {
        let params = self.network.parameters();
        let passes = if self.method.is_trigflow() { 3 } else { 2 };
        let activations = (self.batch as u64).saturating_mul(self.network.activations_per_sample());
        4u64.saturating_mul(params.saturating_mul(5).saturating_add(activations.saturating_mul(passes)))
    }

    /// Refuses a recipe whose [`memory_estimate`](Self::memory_estimate) is over `max_gib` GiB, before
    /// anything is allocated (`cm train --max-memory-gb` raises the cap).
    pub fn check_memory(&self, max_gib: f64) -> Result<()> {
        let need = self.memory_estimate() as f64 / (1u64 << 30) as f64;
        if need > max_gib {
            bail!(
                "field `batch` = {} with this network needs about {need:.1} GiB to train, over the {max_gib} GiB cap: \
                 lower the batch or the network, or raise the cap with --max-memory-gb",
                self.batch
            );
        }
        Ok(())
    }

    /// The 2D dataset, if this is a 2D recipe.
    pub fn dataset_2d(&self) -> Option<Dataset2d> {
        Dataset2d::from_name(&self.dataset)
    }

    /// The image dataset, if this is an image recipe.
    pub fn image_dataset(&self) -> Option<ImageDataset> {
        ImageDataset::from_name(&self.dataset)
    }

    /// Image resolution (U-Net recipes).
    pub fn resolution(&self) -> Option<usize> {
        self.network.image_shape().map(|s| s[1])
    }

    /// Sets the image resolution (`--resolution`), checked again by [`validate`](Self::validate).
    pub fn set_resolution(&mut self, r: usize) -> Result<()> {
        match &mut self.network {
            Architecture::UNet(u) => u.resolution = r,
            Architecture::Mlp(_) => bail!("--resolution applies to image recipes only"),
        }
        self.validate()
    }

    /// Loads `split` of the training data (images are read from disk here).
    pub fn source(&self, split: Split) -> Result<Source> {
        if let Some(d) = self.dataset_2d() {
            return Ok(Source::Toy(d));
        }
        let set = self.image_dataset().expect("validated");
        let r = self.resolution().expect("validated: image recipes have a U-Net");
        let images = load_images(set, split, r, self.data_path.as_deref())?;
        let classes = self.network.classes();
        if classes > 0 && classes != images.classes {
            bail!(
                "field `network.classes`: the network is conditioned on {classes} classes, but dataset {:?} has {}",
                self.dataset,
                if images.classes == 0 {
                    "no labels".to_string()
                } else {
                    format!("{} classes", images.classes)
                }
            );
        }
        Ok(Source::Images { set: images, flip: self.flip })
    }

    /// The consistency-training recipe: the file's, or the paper's for the method.
    pub fn ct(&self) -> CtConfig {
        self.ct.unwrap_or(match self.method {
            Method::Ct => CtConfig::cm(),
            Method::Cd => CtConfig::cd(),
            Method::Ect => CtConfig::ect(),
            _ => CtConfig::ict(),
        })
    }

    /// The continuous-time recipe: the file's, or sCM's defaults.
    pub fn scm(&self) -> ScmConfig {
        self.scm.unwrap_or_default()
    }

    pub fn model(&self) -> ModelConfig {
        ModelConfig {
            architecture: self.network.clone(),
            parameterisation: self.method.parameterisation(),
            range: self.noise,
        }
    }

    /// The resolved recipe as TOML (defaults filled in), saved beside the run.
    pub fn resolved(&self) -> Self {
        let mut c = self.clone();
        if c.method.is_discrete_consistency() {
            c.ct = Some(c.ct());
        }
        if c.method.is_trigflow() {
            c.scm = Some(c.scm());
        }
        c
    }
}

fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_committed_recipe_loads() {
        // configs/ (bundled models) and bench/ (benchmark nets)
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut n = 0;
        let recipes = ["configs", "bench"].into_iter().flat_map(|d| std::fs::read_dir(root.join(d)).unwrap());
        for entry in recipes {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let cfg = TrainConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                let stem = path.file_stem().unwrap().to_str().unwrap();
                let base = format!("{}-{}", cfg.dataset, cfg.method.name());
                assert!(
                    stem == base || stem.strip_prefix(&base).is_some_and(|v| v.starts_with('-')),
                    "{stem}.toml: file name must be <dataset>-<method>[-<variant>], i.e. {base}…"
                );
                n += 1;
            }
        }
        assert!(n >= 3);
    }

    #[test]
    fn learning_rate_warms_up_then_decays() {
        let mut o = OptimConfig {
            kind: OptimKind::Adam,
            lr: 1.0,
            warmup_steps: 10,
            grad_clip: None,
            beta_2: 0.999,
            decay: LrDecay::Constant,
        };
        assert_eq!(o.lr_at(0, 100), 0.1);
        assert_eq!(o.lr_at(9, 100), 1.0);
        assert_eq!(o.lr_at(99, 100), 1.0);
        o.decay = LrDecay::Cosine;
        assert_eq!(o.lr_at(10, 100), 1.0);
        assert!((o.lr_at(55, 100) - 0.5).abs() < 1e-12);
        assert!(o.lr_at(100, 100).abs() < 1e-12);
    }
}
