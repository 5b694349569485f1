//! `cm train`: a recipe's overrides from the command line, then the training loop ([`crate::train`]).

use std::path::PathBuf;

use anyhow::Result;

use super::{at_most, command_line, gib, positive};
use crate::backend::Backend;
use crate::config::TrainConfig;
use crate::train::{RunOptions, Start, train};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    config: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// Override the recipe's step count.
    #[arg(long, value_parser = positive, allow_negative_numbers = true)]
    steps: Option<u64>,
    /// Override the recipe's seed.
    #[arg(long, allow_negative_numbers = true)]
    seed: Option<u64>,
    /// Override the recipe's backend.
    #[arg(long, value_enum)]
    backend: Option<Backend>,
    /// Image recipes: train at this resolution instead of the recipe's (e.g. 16 for speed).
    #[arg(long, value_parser = at_most(256, "pixels"), allow_negative_numbers = true)]
    resolution: Option<u64>,
    /// Replace a run folder that already holds a trained model.
    #[arg(long)]
    force: bool,
    /// Continue the run in --out from its newest checkpoint (bit-exact on the CPU backend).
    #[arg(long, conflicts_with = "force")]
    resume: bool,
    /// Refuse a recipe whose estimated training memory (weights, optimiser state, activations of a
    /// batch) is over this many GiB.
    #[arg(long, value_parser = gib, allow_negative_numbers = true, default_value = "8")]
    max_memory_gb: f64,
    /// Stop after this step with a checkpoint, as if interrupted there (the steps so far are the
    /// full recipe's); continue later with --resume.
    #[arg(long, value_parser = positive, allow_negative_numbers = true)]
    stop_at: Option<u64>,
    /// Split each batch over this many devices (GPUs 0..N of the backend) with burn's multi-device
    /// gradient accumulation. Every shard draws the noise of its rows of the whole batch. On the CPU
    /// the shards train side by side, each in a thread pool of its own: with one shard per core far
    /// faster than one batch over all cores (MNIST U-Net, 2 cores: 9.20-9.79 against 6.41-6.85 steps/s,
    /// README's Speed table); the same training up to float rounding.
    #[arg(long, value_parser = at_most(64, "devices"), allow_negative_numbers = true, default_value = "1")]
    devices: u64,
}

/// Loads the recipe, applies the overrides, checks its memory, trains, and prints the summary.
pub fn run(a: Args) -> Result<()> {
    let mut cfg = TrainConfig::load(&a.config)?;
    if let Some(s) = a.steps {
        cfg.steps = s;
    }
    if let Some(s) = a.seed {
        cfg.seed = s;
    }
    if let Some(b) = a.backend {
        cfg.backend = b;
    }
    if let Some(r) = a.resolution {
        cfg.set_resolution(r as usize)?;
    }
    cfg.check_memory(a.max_memory_gb)?;
    let start = match (a.resume, a.force) {
        (true, _) => Start::Resume,
        (false, true) => Start::Replace,
        (false, false) => Start::New,
    };
    let opts = RunOptions { start, devices: a.devices as usize, stop_at: a.stop_at };
    let summary = train(&cfg, &a.out, &command_line(), opts)?;
    let report = match &summary.model_dir {
        Some(dir) => serde_json::json!({"model": dir, "metrics": summary.metrics}),
        None => serde_json::json!({"model": null, "stopped_at": a.stop_at, "resume": "--resume"}),
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
