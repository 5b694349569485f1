//! `cm bench`: sampling speed of a model folder, or training speed of a recipe, on this machine.
//! Benchmarks, not tests: they report what they measure and assert nothing.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use cm_core::{Plan, TauRequest};

use super::{MAX_POINTS, at_most, gib, positive};
use crate::backend::Backend;
use crate::config::TrainConfig;
use crate::eval::{hardware, model_points};
use crate::io::load_model_dir;
use crate::train::{RunOptions, Start, train};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, required_unless_present = "train", conflicts_with = "train")]
    model: Option<PathBuf>,
    /// A training recipe: time its training step (threads: RAYON_NUM_THREADS).
    #[arg(long)]
    train: Option<PathBuf>,
    /// Training steps to time, after the warm-up.
    #[arg(long, value_parser = positive, allow_negative_numbers = true, default_value = "30")]
    steps: u64,
    /// Warm-up steps before timing (rounded up to whole 5-step windows): kernel compilation and,
    /// on GPUs, autotuning happen here; their wall time is reported as `warmup_s`.
    #[arg(long, value_parser = positive, allow_negative_numbers = true, default_value = "5")]
    warmup: u64,
    /// Split each training batch over this many devices, as `cm train --devices` (on the CPU: shards
    /// trained side by side on the cores).
    #[arg(long, value_parser = at_most(64, "devices"), allow_negative_numbers = true, default_value = "1")]
    devices: u64,
    #[arg(long, value_parser = at_most(MAX_POINTS, "points at a time"), allow_negative_numbers = true, default_value = "4096")]
    n: u64,
    /// --train: refuse a recipe whose estimated training memory is over this many GiB (as `cm train`).
    #[arg(long, value_parser = gib, allow_negative_numbers = true, default_value = "8")]
    max_memory_gb: f64,
    #[arg(long, value_enum, default_value = "cpu")]
    backend: Backend,
}

/// Times training (`--train`) or sampling (`--model`).
pub fn run(a: Args) -> Result<()> {
    match (&a.train, &a.model) {
        (Some(recipe), _) => {
            bench_train(recipe, (a.steps, a.warmup), a.devices as usize, a.backend, a.max_memory_gb)
        }
        (None, Some(model)) => bench_sampling(model, a.n as usize, a.backend),
        (None, None) => bail!("pass --model DIR or --train RECIPE"),
    }
}

/// Training speed of a recipe, measured by the training loop itself in a scratch run folder: the
/// warm-up's wall time (start-up, first-use kernel compilation and autotuning; from the run's start to
/// the end of the warm-up steps), then the median steps/s over 5-step windows after it.
fn bench_train(
    recipe: &Path,
    (steps, warmup): (u64, u64),
    devices: usize,
    backend: Backend,
    max_memory_gb: f64,
) -> Result<()> {
    let mut cfg = TrainConfig::load(recipe)?;
    cfg.check_memory(max_memory_gb)?;
    cfg.backend = backend;
    let window = 5;
    let warmup = warmup.div_ceil(window) * window;
    cfg.steps = warmup + steps.div_ceil(window) * window;
    cfg.log_every = window;
    (cfg.eval_every, cfg.sample_every, cfg.checkpoint_every) = (0, 0, 0);
    let dir = std::env::temp_dir().join(format!("cm-bench-{}", std::process::id()));
    let result = logged_windows(&cfg, &dir, devices);
    let _ = std::fs::remove_dir_all(&dir);
    let rows = result?;
    let warmup_s = rows.iter().find(|r| r.0 == warmup).map(|r| r.2).context("the warm-up was not logged")?;
    let mut rates: Vec<f64> = rows.iter().filter(|r| r.0 > warmup).map(|r| r.1).collect();
    rates.sort_by(f64::total_cmp);
    let median = rates.get(rates.len() / 2).copied().context("too few steps to time: raise --steps")?;
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
    let mut report = serde_json::json!({
        "recipe": recipe.display().to_string(),
        "method": cfg.method.name(),
        "batch": cfg.batch,
        "steps_per_s": median,
        "samples_per_s": median * cfg.batch as f64,
        "windows": rates.len(),
        "warmup_steps": warmup,
        "warmup_s": warmup_s,
        "threads": threads,
        "devices": devices,
        "backend": backend.name(),
        "hardware": hardware(),
    });
    if backend != Backend::Cpu {
        report["kernel_cache"] = crate::gpu::kernel_cache_dir().display().to_string().into();
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// Trains `cfg` into `dir` and reads back its log: (step, steps/s of the window ending there, seconds
/// since the run started).
fn logged_windows(cfg: &TrainConfig, dir: &Path, devices: usize) -> Result<Vec<(u64, f64, f64)>> {
    let opts = RunOptions { devices, ..RunOptions::new(Start::New) };
    train(cfg, dir, "cm bench", opts)?;
    let text = std::fs::read_to_string(dir.join("metrics.jsonl"))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v["step"].as_u64()?, v["steps_per_s"].as_f64()?, v["elapsed_s"].as_f64()?)))
        .collect())
}

/// Wall-clock sampling speed: 1, 2 and 4 steps of a consistency model, or Heun at 35 NFE of a
/// diffusion model, in microseconds per sample after one warm-up run.
fn bench_sampling(dir: &Path, n: usize, backend: Backend) -> Result<()> {
    let model = load_model_dir(dir, &backend.device()?)?;
    super::check_sample_memory(n as u64, model.dim(), 1)?;
    let plans: Vec<(String, Plan)> = if model.is_consistency() {
        let plan = |steps| model.consistency_plan(TauRequest::Default { steps }).map_err(anyhow::Error::msg);
        [1usize, 2, 4]
            .into_iter()
            .map(|k| Ok((format!("{k}step_us_per_sample"), plan(k)?)))
            .collect::<Result<_>>()?
    } else {
        vec![("heun35_us_per_sample".into(), Plan::heun(35))]
    };
    let mut report = serde_json::Map::new();
    for (name, plan) in plans {
        model_points(&model, &plan, n, 0)?; // warm-up
        let reps = 5;
        let t = Instant::now();
        for _ in 0..reps {
            model_points(&model, &plan, n, 0)?;
        }
        let s = t.elapsed().as_secs_f64() / reps as f64;
        report.insert(name, (s * 1e6 / n as f64).into());
    }
    report.insert("n".into(), n.into());
    report.insert("backend".into(), backend.name().into());
    report.insert("hardware".into(), hardware().into());
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
