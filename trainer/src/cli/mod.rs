//! The `cm` command line: one module per subcommand, each holding its arguments (`Args`) and its `run`.
//! `src/main.rs` only parses and dispatches; the value parsers every subcommand shares live here.

pub mod bench;
pub mod classifier;
pub mod data;
pub mod edit;
pub mod eval;
pub mod export;
pub mod sample;
pub mod train;
pub mod trajectory;
pub mod tune;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use cm_core::Model;

use crate::backend::Backend;
use crate::classifier::{check_reads, classifier_dir, load_classifier};
use crate::data::{ImageDataset, ImageSet, Split, load_images};
use crate::eval::lenet::LeNet;

#[derive(Parser)]
#[command(name = "cm", version, about = "Consistency models: train natively, sample anywhere")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Train a model from a TOML recipe into a run folder.
    Train(train::Args),
    /// Draw samples from a model folder.
    Sample(sample::Args),
    /// Write samples of a dataset.
    Data(data::Args),
    /// Print JSON quality metrics of a model against fresh data.
    Eval(eval::Args),
    /// Search a consistency model's k-step tau list on its quality metric (FID-LeNet or sliced W2).
    Tune(tune::Args),
    /// Train the LeNet classifier behind the image metrics (FID-LeNet, KID, precision/recall).
    Classifier(classifier::Args),
    /// Copy a run's model (or a model folder) to a web model folder, validating it on the way.
    Export(export::Args),
    /// Zero-shot editing of an image with a consistency model (CM Algorithm 4); prints the task's metric.
    Edit(edit::Args),
    /// Measure sampling speed of a model (--model) or training speed of a recipe (--train) on this machine.
    Bench(bench::Args),
    /// The consistency property, measured: a consistency model's one-step jumps from states on a
    /// diffusion model's PF-ODE trajectories, against where those trajectories end.
    Trajectory(trajectory::Args),
}

impl Command {
    /// Runs the subcommand.
    pub fn run(self) -> Result<()> {
        match self {
            Command::Train(a) => train::run(a),
            Command::Sample(a) => sample::run(a),
            Command::Data(a) => data::run(a),
            Command::Eval(a) => eval::run(a),
            Command::Tune(a) => tune::run(a),
            Command::Classifier(a) => classifier::run(a),
            Command::Export(a) => export::run(a),
            Command::Edit(a) => edit::run(a),
            Command::Bench(a) => bench::run(a),
            Command::Trajectory(a) => trajectory::run(a),
        }
    }
}

/// The command line as typed, for provenance.
pub fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

/// A count that must be at least 1.
pub fn positive(s: &str) -> Result<u64, String> {
    match s.parse::<i128>() {
        Ok(v) if v >= 1 && v <= u64::MAX as i128 => Ok(v as u64),
        Ok(v) => Err(format!("must be a positive integer, got {v}")),
        Err(_) => Err(format!("must be a positive integer, got {s:?}")),
    }
}

/// A memory cap in GiB (`--max-memory-gb`): a positive, finite number (NaN would turn the cap off).
pub fn gib(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("must be a positive number of GiB, got {s:?}")),
    }
}

/// A count between 1 and `max` (`what` says why there is a bound), as a clap value parser.
pub fn at_most(max: u64, what: &'static str) -> impl Fn(&str) -> Result<u64, String> + Clone {
    move |s| {
        let v = positive(s)?;
        if v > max {
            return Err(format!("at most {max} {what}, got {v}"));
        }
        Ok(v)
    }
}

/// Point counts for sampling: host memory holds every sample.
pub const MAX_POINTS: u64 = 10_000_000;

/// The most host memory `--n` samples may take, in bytes: [`MAX_POINTS`] counts points, which for an
/// image model (3072 values each at 32 px RGB) would be over 100 GiB.
pub const MAX_SAMPLE_BYTES: u64 = 4 << 30;

/// Refuses `--n` = `n` where `copies` arrays of `n` samples of `dim` values (f32) would take more than
/// [`MAX_SAMPLE_BYTES`], before anything is allocated, saying how many samples of this model fit.
pub fn check_sample_memory(n: u64, dim: usize, copies: u64) -> anyhow::Result<()> {
    let per_sample = (dim as u64).saturating_mul(4).saturating_mul(copies.max(1));
    if n.saturating_mul(per_sample) > MAX_SAMPLE_BYTES {
        anyhow::bail!(
            "--n {n}: {n} samples of {dim} values take {:.1} GiB of memory here, over the {} GiB cm holds at a \
             time; at most {} samples of this model",
            n as f64 * per_sample as f64 / (1u64 << 30) as f64,
            MAX_SAMPLE_BYTES >> 30,
            MAX_SAMPLE_BYTES / per_sample.max(1)
        );
    }
    Ok(())
}

/// How many samples, of which seed, into which file (`cm sample`, `cm data`).
#[derive(clap::Args)]
pub struct Output {
    #[arg(long, value_parser = at_most(MAX_POINTS, "points at a time"), allow_negative_numbers = true, default_value = "4096")]
    pub n: u64,
    #[arg(long, allow_negative_numbers = true, default_value = "0")]
    pub seed: u64,
    /// Output: .npy or .csv (rows), or .png (a scatter plot of points, a grid of images).
    #[arg(long)]
    pub out: std::path::PathBuf,
}

/// A comma-separated tau list from the command line. Only the syntax is checked here: the list itself
/// is checked against the model by core's one rule (`sample::check_taus`), as on the page.
#[derive(Clone, Debug)]
pub struct TauList(pub Vec<f64>);

/// Parses a [`TauList`]: finite numbers separated by commas.
pub fn tau_list(s: &str) -> Result<TauList, String> {
    let v: Vec<f64> = s
        .split(',')
        .map(|t| t.trim().parse::<f64>().map_err(|_| format!("{t:?} is not a number")))
        .collect::<Result<_, _>>()?;
    if let Some(t) = v.iter().find(|t| !t.is_finite()) {
        return Err(format!("every tau must be a finite number, got {t} in {s}"));
    }
    Ok(TauList(v))
}

/// Where an image model's metrics come from (`cm eval`, `cm tune`): its dataset's files and the
/// dataset's LeNet classifier at the model's resolution.
#[derive(clap::Args)]
pub struct ImageSource {
    /// Image models: the LeNet classifier folder (default `classifiers/<dataset>-<resolution>`).
    #[arg(long)]
    pub classifier: Option<PathBuf>,
    /// Image models: where `cifar10`/`folder` data lives (default: the training recipe's `data_path`).
    #[arg(long)]
    pub data_path: Option<PathBuf>,
}

impl ImageSource {
    /// `split` of `set` at `model`'s resolution, from `--data-path` or the recipe's `data_path` in its card.
    pub fn images(&self, model: &Model, set: ImageDataset, split: Split) -> Result<ImageSet> {
        let card_path = || model.card.provenance.get("config")?.get("data_path")?.as_str().map(PathBuf::from);
        let data_path = self.data_path.clone().or_else(card_path);
        load_images(set, split, resolution(model)?, data_path.as_deref())
    }

    /// The classifier of `set` at `model`'s resolution, on the CPU.
    pub fn classifier(&self, model: &Model, set: ImageDataset) -> Result<LeNet> {
        let r = resolution(model)?;
        let dir = self
            .classifier
            .clone()
            .unwrap_or_else(|| classifier_dir(Path::new("classifiers"), set.name(), r));
        let (card, lenet) = load_classifier(&dir, &Backend::Cpu.device()?)?;
        check_reads(&dir, &card, model, None)?;
        Ok(lenet)
    }
}

/// An image model's side in pixels.
fn resolution(model: &Model) -> Result<usize> {
    Ok(model.image_shape().context("an image dataset needs an image model")?[1])
}
