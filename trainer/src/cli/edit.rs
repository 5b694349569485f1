//! `cm edit`: zero-shot editing of images with a consistency model (CM Algorithm 4 through core's
//! [`Model::edit`]), with the metric each task has.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use cm_core::edit::{Constraint, Edit, luminance};
use cm_core::loaded::Edited;
use cm_core::{Model, TauRequest, Taus};
use serde_json::json;

use super::sample::class_pick;
use super::{TauList, at_most, tau_list};
use crate::backend::Backend;
use crate::classifier::{CARD_FILE, check_reads, classifier_dir, embed_rows, load_classifier};
use crate::data::read_image;
use crate::eval::features::class_stats;
use crate::eval::lenet::LeNet;
use crate::eval::{ClassPick, host};
use crate::io::{Format, grid_png, grid_zoom, load_model_dir, write_atomic, write_samples};

/// The editing tasks of CM §6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Task {
    /// Fill the mask's white pixels (`--mask`), keep the rest of `--input`.
    Inpaint,
    /// Keep `--input`'s luminance, generate its colours (colour models).
    Colourise,
    /// Keep the means of `--factor`-sized patches of `--input`, generate the detail.
    SuperResolution,
    /// Add noise of level `--sigma` to `--input` (seeded), then remove it in one step (plus `--taus`).
    Denoise,
    /// SDEdit-style: noise the painting `--input` to `--sigma`, then map it to the data.
    Stroke,
    /// Spherical interpolation between the noises of `--seed` and `--seed + 1`, `--n` images.
    Interpolate,
}

impl Task {
    /// The command-line name (`super-resolution`, ...).
    pub fn name(self) -> String {
        use clap::ValueEnum;
        self.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default()
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// inpaint, colourise, super-resolution, denoise, stroke or interpolate.
    #[arg(value_enum)]
    task: Task,
    #[arg(long)]
    model: PathBuf,
    /// The reference image (PNG/JPEG; resized to the model's resolution).
    #[arg(long)]
    input: Option<PathBuf>,
    /// Inpainting: white pixels are generated, black ones kept.
    #[arg(long)]
    mask: Option<PathBuf>,
    /// Decreasing tau list after the first step (default: the built-in 4-step list, its levels below the
    /// start level; a card's tuned list is tuned for sampling and is not used for edits).
    #[arg(long, value_parser = tau_list, allow_negative_numbers = true)]
    taus: Option<TauList>,
    /// Noise level of denoising (added to --input, then removed) and stroke guidance.
    #[arg(long, allow_negative_numbers = true)]
    sigma: Option<f64>,
    /// Super-resolution factor (2 or 4 for 16-32 px models; default 2).
    #[arg(long, value_parser = at_most(64, "pixels per patch side"), allow_negative_numbers = true)]
    factor: Option<u64>,
    /// Results to draw (independent noise each), or interpolation frames.
    #[arg(long, value_parser = at_most(1024, "images"), allow_negative_numbers = true, default_value = "4")]
    n: u64,
    #[arg(long, allow_negative_numbers = true, default_value = "0")]
    seed: u64,
    /// Class-conditional models: generate every result as this class, by number or name (`7`, `Sneaker`:
    /// "fill this in as a 7"), `each` (result `i` as class `i mod classes`; not for interpolate, one path
    /// within one class) or `none` (the default: no class, the model's label-dropout branch).
    #[arg(long)]
    class: Option<String>,
    /// With --class: the LeNet classifier that reads each result's class (`class_accuracy` in the
    /// report; default `classifiers/<dataset>-<resolution>`, skipped when that folder has none).
    #[arg(long)]
    classifier: Option<PathBuf>,
    /// `.png` (a grid: the degraded input, then the results) or `.npy` (result rows).
    #[arg(long)]
    out: PathBuf,
    /// Also write the rows each result started from (`.npy` or `.png`): for denoising, the noisy copies
    /// of --input (the seed's noise, as on the page); for the other tasks, --input itself.
    #[arg(long)]
    save_input: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "cpu")]
    backend: Backend,
}

/// Runs the edit, writes its images, and prints the task's metrics.
pub fn run(a: Args) -> Result<()> {
    check_flags(&a)?;
    // Both outputs' formats are checked before anything is computed or written.
    for (flag, path) in [("--out", Some(&a.out)), ("--save-input", a.save_input.as_ref())] {
        if let Some(path) = path {
            Format::of(path, &[Format::Png, Format::Npy], flag)?;
        }
    }
    let device = a.backend.device()?;
    let model = load_model_dir(&a.model, &device)?;
    if !model.is_consistency() {
        bail!(
            "{}: `{}` is a diffusion model; editing needs a consistency model",
            a.model.display(),
            model.name()
        );
    }
    let shape = model.image_shape().with_context(|| {
        format!("{}: editing needs an image model, `{}` is a 2D model", a.model.display(), model.name())
    })?;
    let report = if a.task == Task::Interpolate {
        interpolate(&model, &a, &device)?
    } else {
        edit(&model, &a, shape, &device)?
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// Refuses a flag the task does not read, so that no one believes it took effect (`--sigma` on an
/// inpainting, `--input` on an interpolation).
fn check_flags(a: &Args) -> Result<()> {
    let t = a.task;
    let flags = [
        ("--input", a.input.is_some(), t != Task::Interpolate),
        ("--save-input", a.save_input.is_some(), t != Task::Interpolate),
        ("--mask", a.mask.is_some(), t == Task::Inpaint),
        ("--sigma", a.sigma.is_some(), matches!(t, Task::Denoise | Task::Stroke)),
        ("--factor", a.factor.is_some(), t == Task::SuperResolution),
    ];
    match flags.iter().find(|(_, given, read)| *given && !*read) {
        Some((flag, ..)) => bail!("{flag} has no effect on `cm edit {}`: leave it out", t.name()),
        None => Ok(()),
    }
}

/// `--n` frames between the noises of `--seed` and `--seed + 1`.
fn interpolate(model: &Model, a: &Args, device: &Device) -> Result<serde_json::Value> {
    let err = |e: String| anyhow::anyhow!("cm edit interpolate: {e}");
    let taus = model.taus(TauRequest::or_default(a.taus.clone().map(|t| t.0), 1)).map_err(err)?;
    if a.n < 2 {
        bail!("--n {}: an interpolation draws at least 2 frames (its two ends)", a.n);
    }
    let frames = a.n as usize;
    if a.class.as_deref().is_some_and(|c| c.eq_ignore_ascii_case("each")) {
        bail!("--class each: an interpolation is one path within one class; pick a class (or none)");
    }
    let classes = classes(model, a, frames)?;
    let reader = reader(model, a, classes.as_deref())?;
    let x = model
        .interpolate(a.seed, a.seed.wrapping_add(1), frames, classes.as_deref(), &taus, device)
        .map_err(err)?;
    let x = host(x)?;
    write_samples(&a.out, &x, model.dim(), model.image_shape())?;
    let mut report =
        json!({"task": "interpolate", "images": frames, "taus": taus.as_slice(), "classes": classes});
    read_classes(model, reader.as_ref(), classes.as_deref(), &x, &mut report)?;
    Ok(report)
}

/// The LeNet that reads what class each result is, where `--class` asks for one (`classes` is `Some`):
/// `--classifier`, else the model's dataset's at its resolution (`classifiers/<dataset>-<px>`) where that
/// folder has one. Loaded and checked against the model before anything is edited or written; with no
/// class asked (no `--class`, or `--class none`) nothing is loaded.
fn reader(model: &Model, a: &Args, classes: Option<&[usize]>) -> Result<Option<(PathBuf, LeNet)>> {
    let Some([_, r, _]) = model.image_shape() else { return Ok(None) };
    if classes.is_none() {
        if let Some(dir) = &a.classifier {
            bail!(
                "--classifier {}: it reads the class of each result, so it needs --class with a class (not none)",
                dir.display()
            );
        }
        return Ok(None);
    }
    let dir = match &a.classifier {
        Some(dir) => dir.clone(),
        None => {
            let dir = classifier_dir(Path::new("classifiers"), &model.card.dataset, r);
            if !dir.join(CARD_FILE).is_file() {
                eprintln!(
                    "note: no classifier at {} (read from the current folder), so class_accuracy is not measured; pass --classifier <folder>",
                    dir.display()
                );
                return Ok(None);
            }
            dir
        }
    };
    let (card, lenet) = load_classifier(&dir, &Backend::Cpu.device()?)?;
    check_reads(&dir, &card, model, Some(model.denoiser.classes()))?;
    Ok(Some((dir, lenet)))
}

/// What `reader` reads in `results` against the classes asked: how often it agrees (`class_accuracy`)
/// and what it reads (`classes_read`, by name), added to `report`.
fn read_classes(
    model: &Model,
    reader: Option<&(PathBuf, LeNet)>,
    classes: Option<&[usize]>,
    results: &[f32],
    report: &mut serde_json::Value,
) -> Result<()> {
    let (Some((dir, lenet)), Some(classes)) = (reader, classes) else { return Ok(()) };
    let (_, probs) = embed_rows(lenet, results, model.dim())?;
    let read = class_stats(&probs, model.denoiser.classes()).predicted;
    let hits = read.iter().zip(classes).filter(|(r, c)| r == c).count();
    report["class_accuracy"] = json!(hits as f64 / classes.len().max(1) as f64);
    report["classes_read"] = json!(read.iter().map(|&c| model.card.class_name(c)).collect::<Vec<_>>());
    report["classifier"] = json!(dir.display().to_string());
    Ok(())
}

/// The class of each of `n` results that `--class` asks for (none: no class).
fn classes(model: &Model, a: &Args, n: usize) -> Result<Option<Vec<usize>>> {
    let pick = match &a.class {
        None => ClassPick::Unconditional,
        Some(name) => {
            class_pick(&model.card, name).map_err(|e| anyhow::anyhow!("{}: {e}", a.model.display()))?
        }
    };
    Ok(pick.rows(model.denoiser.classes(), 0, n))
}

/// Every task but interpolation: reads `--input` (and `--mask`), runs the edit, writes the grid or rows.
fn edit(model: &Model, a: &Args, shape: [usize; 3], device: &Device) -> Result<serde_json::Value> {
    let [c, r, _] = shape;
    let input =
        a.input.as_ref().with_context(|| format!("`cm edit {}` needs --input <image>", a.task.name()))?;
    let y = read_image(input, c, r)?;
    let edit = task_edit(a, c, r)?;
    let err = |e: String| anyhow::anyhow!("cm edit {}: {e}", a.task.name());
    let taus = model.edit_taus(&edit, TauRequest::or_default(a.taus.clone().map(|t| t.0), 4)).map_err(err)?;
    let n = a.n as usize;
    let classes = classes(model, a, n)?;
    let reader = reader(model, a, classes.as_deref())?;
    let Edited { inputs, results } =
        model.edit(&edit, &y, n, classes.as_deref(), &taus, a.seed, device).map_err(err)?;
    let x = host(results)?;
    let (view, metrics) = view_and_metrics(&edit, &y, &inputs, &x[..y.len()], shape, device)?;
    if Format::of(&a.out, Format::ALL, "--out")? == Format::Png {
        let mut all = view;
        all.extend_from_slice(&x);
        write_atomic(&a.out, &grid_png(&all, shape, n + 1, grid_zoom(shape)))?;
    } else {
        write_samples(&a.out, &x, y.len(), Some(shape))?;
    }
    if let Some(path) = &a.save_input {
        write_samples(path, &inputs, y.len(), Some(shape))?;
    }
    let mut report = json!({
        "task": a.task.name(),
        "taus": Taus::as_slice(&taus),
        "images": n,
        "classes": classes,
        "metrics": metrics
    });
    read_classes(model, reader.as_ref(), classes.as_deref(), &x, &mut report)?;
    Ok(report)
}

/// The edit `--task` names, with its mask read from `--mask` (inpainting) or its `--sigma`.
fn task_edit(a: &Args, c: usize, r: usize) -> Result<Edit> {
    let sigma = |what: &str| -> Result<f64> {
        a.sigma.with_context(|| format!("`cm edit {what}` needs --sigma (the noise level, e.g. 0.5)"))
    };
    Ok(match a.task {
        Task::Inpaint => {
            let path = a.mask.as_ref().context("`cm edit inpaint` needs --mask <image> (white = fill)")?;
            let m: Vec<f32> =
                read_image(path, 1, r)?.iter().map(|v| if *v > 0.0 { 1.0 } else { 0.0 }).collect();
            let white = m.iter().filter(|v| **v > 0.0).count();
            if white == 0 || white == m.len() {
                bail!(
                    "{}: the mask must mark some pixels white (to fill) and some black (to keep); it has {white} white of {}",
                    path.display(),
                    m.len()
                );
            }
            Edit::inpaint((0..c).flat_map(|_| m.iter().copied()).collect())
        }
        Task::Colourise => Edit::colourise(),
        Task::SuperResolution => Edit::super_resolution(a.factor.unwrap_or(2) as usize),
        Task::Denoise => Edit::denoise(sigma("denoise")?),
        Task::Stroke => Edit::stroke(sigma("stroke")?),
        Task::Interpolate => bail!("interpolation has no reference image"),
    })
}

/// `10 log10(4 / mse)`: PSNR for values in `[-1, 1]` (peak-to-peak 2).
fn psnr(mse: f64) -> f64 {
    10.0 * (4.0 / mse.max(1e-20)).log10()
}

/// Mean squared difference of `a` and `b` over the indices `keep` selects.
fn mse_where(a: &[f32], b: &[f32], keep: impl Fn(usize) -> bool) -> f64 {
    let (mut s, mut n) = (0.0, 0usize);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if keep(i) {
            s += (*x as f64 - *y as f64).powi(2);
            n += 1;
        }
    }
    s / n.max(1) as f64
}

/// The degraded view shown first in the grid, and the task's metric on the first result `first`.
fn view_and_metrics(
    edit: &Edit,
    y: &[f32],
    inputs: &[f32],
    first: &[f32],
    shape: [usize; 3],
    device: &Device,
) -> Result<(Vec<f32>, serde_json::Value)> {
    let psnr_input = psnr(mse_where(first, y, |_| true));
    Ok(match &edit.constraint {
        Some(Constraint::Inpaint { mask }) => {
            let view: Vec<f32> = y.iter().zip(mask).map(|(v, k)| if *k > 0.0 { 0.0 } else { *v }).collect();
            let known = mse_where(first, y, |i| mask[i] == 0.0);
            let filled = mse_where(first, y, |i| mask[i] > 0.0);
            (
                view,
                json!({"mse_known": known, "psnr_known": psnr(known), "psnr_filled_vs_input": psnr(filled)}),
            )
        }
        Some(Constraint::Colourise) => {
            let plane = shape[1] * shape[2];
            let (grey, got) = (luminance(y, plane), luminance(first, plane));
            let err = grey.iter().zip(&got).map(|(a, b)| (a - b).abs() as f64).fold(0.0, f64::max);
            (grey.repeat(3), json!({"luminance_max_error": err, "psnr_vs_input": psnr_input}))
        }
        Some(c @ Constraint::SuperResolution { .. }) => {
            // Patch means by core's own projection (`P y` is each patch's mean, spread over the patch).
            let means = |v: &[f32]| host(c.known_part(cm_core::host::rows(v, 1, v.len(), device), shape));
            let (low, got) = (means(y)?, means(first)?);
            let err = got.iter().zip(&low).map(|(a, b)| (a - b).abs() as f64).fold(0.0, f64::max);
            (low, json!({"downsampling_max_error": err, "psnr_vs_input": psnr_input}))
        }
        None if matches!(edit.start, cm_core::edit::Start::Noisy { .. }) => {
            let noisy = inputs[..y.len()].to_vec();
            let m = json!({"psnr_noisy": psnr(mse_where(&noisy, y, |_| true)), "psnr_denoised": psnr_input});
            (noisy, m)
        }
        None => (y.to_vec(), json!({"rms_change": mse_where(first, y, |_| true).sqrt()})),
    })
}
