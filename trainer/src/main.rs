//! `cm`: train, sample, evaluate and export consistency models.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use cm_core::data2d::Dataset2d;
use cm_core::sample::OdeSolver;

use cm_trainer::backend::Backend;
use cm_trainer::classifier::{ClassifierRecipe, classifier_dir, load_classifier, train_classifier};
use cm_trainer::config::TrainConfig;
use cm_trainer::data::{ImageDataset, Split, load_images};
use cm_trainer::{eval, eval_images, io, train};

#[derive(Parser)]
#[command(name = "cm", version, about = "Consistency models: train natively, sample anywhere")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// A count that must be at least 1.
fn positive(s: &str) -> Result<u64, String> {
    match s.parse::<i128>() {
        Ok(v) if v >= 1 && v <= u64::MAX as i128 => Ok(v as u64),
        Ok(v) => Err(format!("must be a positive integer, got {v}")),
        Err(_) => Err(format!("must be a positive integer, got {s:?}")),
    }
}

/// A tau list from the command line.
#[derive(Clone, Debug)]
struct Taus(Vec<f64>);

/// A count between 1 and `max` (`what` says why there is a bound), as a clap value parser.
fn at_most(max: u64, what: &'static str) -> impl Fn(&str) -> Result<u64, String> + Clone {
    move |s| {
        let v = positive(s)?;
        if v > max {
            return Err(format!("at most {max} {what}, got {v}"));
        }
        Ok(v)
    }
}

/// Point counts for sampling: host memory holds every sample.
const MAX_POINTS: u64 = 10_000_000;
/// Point counts for `cm eval`, whose MMD and energy distance cost O(n^2).
const MAX_EVAL_POINTS: u64 = 50_000;

/// A comma-separated, strictly decreasing list of positive noise levels.
fn taus(s: &str) -> Result<Taus, String> {
    let v: Vec<f64> = s
        .split(',')
        .map(|t| t.trim().parse::<f64>().map_err(|_| format!("{t:?} is not a number")))
        .collect::<Result<_, _>>()?;
    if v.iter().any(|t| !(t.is_finite() && *t > 0.0)) {
        return Err(format!("every tau must be a positive number, got {s}"));
    }
    if v.windows(2).any(|w| w[1] >= w[0]) {
        return Err(format!("taus must be strictly decreasing, got {s}"));
    }
    Ok(Taus(v))
}

#[derive(Subcommand)]
enum Command {
    /// Train a model from a TOML recipe into a run folder.
    Train {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Override the recipe's step count.
        #[arg(long, value_parser = positive, allow_negative_numbers = true)]
        steps: Option<u64>,
        /// Override the recipe's seed.
        #[arg(long)]
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
        #[arg(long, default_value = "8")]
        max_memory_gb: f64,
        /// Stop after this step with a checkpoint, as if interrupted there (the steps so far are the
        /// full recipe's); continue later with --resume.
        #[arg(long, value_parser = positive, allow_negative_numbers = true)]
        stop_at: Option<u64>,
        /// Split each batch over this many devices (GPUs 0..N of the backend) with burn's multi-device
        /// gradient accumulation. Every shard draws the noise of its rows of the whole batch. On the CPU
        /// the shards train side by side, each in a thread pool of its own: with one shard per core far
        /// faster than one batch over all cores (MNIST U-Net, 2 cores: 5.03 against 2.89 steps/s); the
        /// same training up to float rounding.
        #[arg(long, value_parser = at_most(64, "devices"), allow_negative_numbers = true, default_value = "1")]
        devices: u64,
    },
    /// Draw samples from a model folder.
    Sample {
        #[arg(long)]
        model: PathBuf,
        /// Consistency steps (uses the default tau list for that many steps).
        #[arg(long, value_parser = positive, allow_negative_numbers = true, default_value = "1")]
        steps: u64,
        /// Explicit decreasing tau list (overrides --steps): e.g. 0.821 or 5,0.821.
        #[arg(long, value_parser = taus, allow_negative_numbers = true)]
        taus: Option<Taus>,
        /// Sample a diffusion model with this many network evaluations.
        #[arg(long, value_parser = positive, allow_negative_numbers = true)]
        teacher_nfe: Option<u64>,
        /// ODE solver for --teacher-nfe.
        #[arg(long, value_enum, default_value = "heun")]
        solver: Solver,
        #[arg(long, value_parser = at_most(MAX_POINTS, "points at a time"), allow_negative_numbers = true, default_value = "4096")]
        n: u64,
        #[arg(long, default_value = "0")]
        seed: u64,
        /// Output: .npy, .csv or .png.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: Backend,
    },
    /// Write samples of a dataset.
    Data {
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = at_most(MAX_POINTS, "points at a time"), allow_negative_numbers = true, default_value = "4096")]
        n: u64,
        #[arg(long, default_value = "0")]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Print JSON quality metrics of a model against fresh data.
    Eval {
        #[arg(long)]
        model: PathBuf,
        #[arg(long, value_parser = at_most(MAX_EVAL_POINTS, "points (the metrics are quadratic in n)"), allow_negative_numbers = true, default_value = "4096")]
        n: u64,
        #[arg(long, default_value = "1")]
        seed: u64,
        /// Teacher NFE (diffusion models).
        #[arg(long, value_parser = positive, allow_negative_numbers = true, default_value = "35")]
        teacher_nfe: u64,
        /// Also evaluate this decreasing tau list (consistency models), reported as `custom`.
        #[arg(long, value_parser = taus, allow_negative_numbers = true)]
        taus: Option<Taus>,
        /// Store the 1/2/4-step (or teacher) metrics in the model's card.
        #[arg(long)]
        write_card: bool,
        /// Image models: the LeNet classifier folder (default `classifiers/<dataset>-<resolution>`).
        #[arg(long)]
        classifier: Option<PathBuf>,
        /// Image models: where `cifar10`/`folder` data lives (default: the training recipe's `data_path`).
        #[arg(long)]
        data_path: Option<PathBuf>,
    },
    /// Train the LeNet classifier behind the image metrics (FID-LeNet, KID, precision/recall).
    Classifier {
        /// Image dataset: mnist, fashion-mnist, emoji, cifar10.
        #[arg(long)]
        dataset: String,
        #[arg(long, value_parser = at_most(256, "pixels"), allow_negative_numbers = true)]
        resolution: u64,
        #[arg(long)]
        data_path: Option<PathBuf>,
        #[arg(long, value_parser = positive, allow_negative_numbers = true, default_value = "3000")]
        steps: u64,
        #[arg(long, value_parser = at_most(4096, "images per batch"), allow_negative_numbers = true, default_value = "128")]
        batch: u64,
        #[arg(long, default_value = "0")]
        seed: u64,
        /// Output folder (default `classifiers/<dataset>-<resolution>`).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: Backend,
    },
    /// Copy a run's model (or a model folder) to a web model folder, validating it on the way.
    Export {
        /// A run folder (uses its `model/`) or a model folder.
        #[arg(long)]
        from: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Zero-shot editing of an image with a consistency model (CM Algorithm 4); prints the task's metric.
    Edit {
        /// inpaint, colourise, super-resolution, denoise, stroke or interpolate.
        #[arg(value_enum)]
        task: cm_trainer::edit::Task,
        #[arg(long)]
        model: PathBuf,
        /// The reference image (PNG/JPEG; resized to the model's resolution).
        #[arg(long)]
        input: Option<PathBuf>,
        /// Inpainting: white pixels are generated, black ones kept.
        #[arg(long)]
        mask: Option<PathBuf>,
        /// Decreasing tau list after the first step (default: the model's 4-step list below the start level).
        #[arg(long, value_parser = taus, allow_negative_numbers = true)]
        taus: Option<Taus>,
        /// Noise level of denoising (added to --input, then removed) and stroke guidance.
        #[arg(long, allow_negative_numbers = true)]
        sigma: Option<f64>,
        /// Super-resolution factor (2 or 4 for 16-32 px models).
        #[arg(long, value_parser = at_most(64, "pixels per patch side"), allow_negative_numbers = true, default_value = "2")]
        factor: u64,
        /// Results to draw (independent noise each), or interpolation frames.
        #[arg(long, value_parser = at_most(1024, "images"), allow_negative_numbers = true, default_value = "4")]
        n: u64,
        #[arg(long, default_value = "0")]
        seed: u64,
        /// `.png` (a grid: the degraded input, then the results) or `.npy` (result rows).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: Backend,
    },
    /// Measure sampling speed of a model (--model) or training speed of a recipe (--train) on this machine.
    Bench {
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
        #[arg(long, value_enum, default_value = "cpu")]
        backend: Backend,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Solver {
    Euler,
    Heun,
}

/// Keeps freed tensor memory in the process. glibc hands every freed block above its mmap threshold
/// (128 KiB at start, adapting up to 32 MiB) back to the kernel, so each training step's activations and
/// gradients (the same sizes every step) came back as fresh pages that the kernel had to zero: a third of
/// a million page faults in ten steps of the small MNIST U-Net. With the threshold at its maximum and the
/// heap trimmed only past 1 GiB of free memory, 3x fewer faults and +6.5% steps/s (`cm bench --train`,
/// 1 thread).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only changes allocator parameters; it is called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

fn main() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    keep_freed_memory();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("CM_LOG"))
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()) {
        let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
        eprintln!("error: {}", chain.join(": "));
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train {
            config,
            out,
            steps,
            seed,
            backend,
            resolution,
            force,
            resume,
            max_memory_gb,
            stop_at,
            devices,
        } => {
            let mut cfg = TrainConfig::load(&config)?;
            if let Some(s) = steps {
                cfg.steps = s;
            }
            if let Some(s) = seed {
                cfg.seed = s;
            }
            if let Some(b) = backend {
                cfg.backend = b;
            }
            if let Some(r) = resolution {
                cfg.set_resolution(r as usize)?;
            }
            cfg.check_memory(max_memory_gb)?;
            let command = std::env::args().collect::<Vec<_>>().join(" ");
            let start = match (resume, force) {
                (true, _) => train::Start::Resume,
                (false, true) => train::Start::Replace,
                (false, false) => train::Start::New,
            };
            let opts = train::RunOptions { start, devices: devices as usize, stop_at };
            let summary = train::train(&cfg, &out, &command, opts)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&match &summary.model_dir {
                    Some(dir) => serde_json::json!({"model": dir, "metrics": summary.metrics}),
                    None => serde_json::json!({"model": null, "stopped_at": stop_at, "resume": "--resume"}),
                })?
            );
        }
        Command::Sample { model, steps, taus, teacher_nfe, solver, n, seed, out, backend } => {
            let device = backend.device()?;
            let (card, model) = io::load_model_dir(&model, &device)?;
            let pts = match teacher_nfe {
                Some(nfe) => {
                    let solver = match solver {
                        Solver::Euler => OdeSolver::Euler,
                        Solver::Heun => OdeSolver::Heun,
                    };
                    eval::solver_points(&model, n as usize, seed, nfe as usize, solver)?
                }
                None => {
                    if !card.is_consistency() {
                        bail!("{} is a diffusion model: pass --teacher-nfe N (e.g. 35)", card.name);
                    }
                    let taus = taus.map(|t| t.0).unwrap_or_else(|| model.default_taus(steps as usize));
                    eval::consistency_points(&model, n as usize, seed, &taus)?
                }
            };
            io::write_samples(&out, &pts, model.dim(), model.image_shape())?;
        }
        Command::Data { name, n, seed, out } => {
            let Some(d) = Dataset2d::from_name(&name) else {
                let names: Vec<_> = Dataset2d::ALL.iter().map(|d| d.name()).collect();
                bail!("unknown dataset {name:?}, expected one of {names:?}");
            };
            io::write_points(&out, &d.sample(seed, 0, 0, n as usize), 2)?;
        }
        Command::Eval { model: dir, n, seed, teacher_nfe, taus, write_card, classifier, data_path } => {
            let device = Backend::Cpu.device()?;
            let (mut card, model) = io::load_model_dir(&dir, &device)?;
            let extra = taus.as_ref().map(|t| t.0.as_slice());
            let (metrics, json) = if let Some(set) = ImageDataset::from_name(&card.dataset) {
                let r = model.image_shape().context("an image dataset needs an image model")?[1];
                let data_path = data_path
                    .or_else(|| card.provenance.get("config")?.get("data_path")?.as_str().map(PathBuf::from));
                let test = load_images(set, Split::Test, r, data_path.as_deref())?.take(n as usize);
                let train = load_images(set, Split::Train, r, data_path.as_deref())?;
                let cdir =
                    classifier.unwrap_or_else(|| classifier_dir(Path::new("classifiers"), set.name(), r));
                let (_, lenet) = load_classifier(&cdir, &device)?;
                let report = eval_images::evaluate_images(
                    &model,
                    card.method,
                    &lenet,
                    &test,
                    &train,
                    set.name(),
                    seed,
                    teacher_nfe as usize,
                    extra,
                )?;
                (report.flat_metrics(), serde_json::to_value(&report)?)
            } else {
                let dataset = Dataset2d::from_name(&card.dataset).with_context(|| {
                    format!("the card names dataset {:?}, which cm does not know", card.dataset)
                })?;
                let report = eval::evaluate(
                    &model,
                    dataset,
                    card.method,
                    n as usize,
                    seed,
                    teacher_nfe as usize,
                    extra,
                )?;
                (report.flat_metrics(), serde_json::to_value(&report)?)
            };
            if write_card {
                card.metrics.extend(metrics);
                io::write_atomic(&dir.join(io::CARD_FILE), card.to_json().as_bytes())?;
            }
            println!("{}", serde_json::to_string_pretty(&json)?);
        }
        Command::Classifier { dataset, resolution, data_path, steps, batch, seed, out, backend } => {
            let Some(set) = ImageDataset::from_name(&dataset) else {
                let names: Vec<_> = ImageDataset::ALL.iter().map(|d| d.name()).collect();
                bail!("unknown image dataset {dataset:?}, expected one of {names:?}");
            };
            let r = resolution as usize;
            let train = load_images(set, Split::Train, r, data_path.as_deref())?;
            let test = load_images(set, Split::Test, r, data_path.as_deref())?;
            let out = out.unwrap_or_else(|| classifier_dir(Path::new("classifiers"), set.name(), r));
            let command = std::env::args().collect::<Vec<_>>().join(" ");
            let recipe = ClassifierRecipe { steps, batch: batch as usize, seed };
            let card = train_classifier(set, &train, &test, recipe, &out, &command, &backend.device()?)?;
            println!("{}", serde_json::to_string_pretty(&card)?);
        }
        Command::Export { from, out } => {
            let src = if from.join("model").is_dir() { from.join("model") } else { from };
            let (mut card, model) = io::load_model_dir(&src, &Backend::Cpu.device()?)?;
            // The folder names the model: the page lists it (and the card calls it) by that name.
            if let Some(name) = out.file_name().and_then(|n| n.to_str()) {
                card.name = name.to_string();
            }
            io::save_model_dir(&out, &card, &model)?;
            if let Some(parent) =
                out.parent().filter(|p| p.join("index.json").is_file() || p.ends_with("models"))
            {
                io::register_in_index(parent, &card.name)?;
            }
            println!("exported {} to {}", card.name, out.display());
        }
        Command::Edit { task, model, input, mask, taus, sigma, factor, n, seed, out, backend } => {
            let args = cm_trainer::edit::EditArgs {
                task,
                input,
                mask,
                taus: taus.map(|t| t.0),
                sigma,
                factor: factor as usize,
                n: n as usize,
                seed,
                out,
            };
            let report = cm_trainer::edit::run(&model, &args, &backend.device()?)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Bench { train: Some(recipe), steps, warmup, devices, backend, .. } => {
            bench_train(&recipe, steps, warmup, devices as usize, backend)?
        }
        Command::Bench { model: Some(model), n, backend, .. } => bench(&model, n as usize, backend)?,
        Command::Bench { .. } => bail!("pass --model DIR or --train RECIPE"),
    }
    Ok(())
}

/// Training speed of a recipe, measured by the training loop itself in a scratch run folder: the
/// warm-up's wall time (start-up, first-use kernel compilation and autotuning; from the run's start to
/// the end of the warm-up steps), then the median steps/s over 5-step windows after it.
fn bench_train(recipe: &Path, steps: u64, warmup: u64, devices: usize, backend: Backend) -> Result<()> {
    let mut cfg = TrainConfig::load(recipe)?;
    cfg.backend = backend;
    let window = 5;
    let warmup = warmup.div_ceil(window) * window;
    cfg.steps = warmup + steps.div_ceil(window) * window;
    cfg.log_every = window;
    (cfg.eval_every, cfg.sample_every, cfg.checkpoint_every) = (0, 0, 0);
    let dir = std::env::temp_dir().join(format!("cm-bench-{}", std::process::id()));
    let run = dir.clone();
    // (step, steps/s of the window ending there, seconds since the run started)
    let result = (|| -> Result<Vec<(u64, f64, f64)>> {
        let opts = train::RunOptions { devices, ..train::RunOptions::new(train::Start::New) };
        train::train(&cfg, &run, "cm bench", opts)?;
        let text = std::fs::read_to_string(run.join("metrics.jsonl"))?;
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| Some((v["step"].as_u64()?, v["steps_per_s"].as_f64()?, v["elapsed_s"].as_f64()?)))
            .collect())
    })();
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
        "hardware": eval::hardware(),
    });
    if backend != Backend::Cpu {
        report["kernel_cache"] = cm_trainer::gpu::kernel_cache_dir().display().to_string().into();
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// Wall-clock sampling speed (a benchmark, not a test).
fn bench(dir: &std::path::Path, n: usize, backend: Backend) -> Result<()> {
    let device = backend.device()?;
    let (card, model) = io::load_model_dir(dir, &device)?;
    let mut report = serde_json::Map::new();
    let time = |f: &mut dyn FnMut() -> Result<Vec<f32>>| -> Result<f64> {
        f()?; // warm-up
        let reps = 5;
        let t = Instant::now();
        for _ in 0..reps {
            f()?;
        }
        Ok(t.elapsed().as_secs_f64() / reps as f64)
    };
    if card.is_consistency() {
        for steps in [1usize, 2, 4] {
            let taus = model.default_taus(steps);
            let s = time(&mut || eval::consistency_points(&model, n, 0, &taus))?;
            report.insert(format!("{steps}step_us_per_sample"), (s * 1e6 / n as f64).into());
        }
    } else {
        let s = time(&mut || eval::teacher_points(&model, n, 0, 35))?;
        report.insert("heun35_us_per_sample".into(), (s * 1e6 / n as f64).into());
    }
    report.insert("n".into(), n.into());
    report.insert("backend".into(), backend.name().into());
    report.insert("hardware".into(), eval::hardware().into());
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
