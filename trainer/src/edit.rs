//! `cm edit`: zero-shot editing of images with a consistency model (CM Algorithm 4 through
//! [`cm_core::edit`]), with the metric each task has.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use cm_core::edit::{Edit, LUMA, Start, interpolate};
use cm_core::rng::Noise;
use serde_json::json;

use crate::data::read_image;
use crate::eval::host;
use crate::io::{grid_png, grid_zoom, load_model_dir, write_atomic, write_samples};

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

/// What `cm edit` was asked.
pub struct EditArgs {
    pub task: Task,
    pub input: Option<PathBuf>,
    pub mask: Option<PathBuf>,
    pub taus: Option<Vec<f64>>,
    pub sigma: Option<f64>,
    pub factor: usize,
    pub n: usize,
    pub seed: u64,
    pub out: PathBuf,
}

/// `10 log10(4 / mse)`: PSNR for values in `[-1, 1]` (peak-to-peak 2).
fn psnr(mse: f64) -> f64 {
    10.0 * (4.0 / mse.max(1e-20)).log10()
}

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

/// Runs `cm edit` on the model folder `model_dir`; returns the metrics report.
pub fn run(model_dir: &Path, args: &EditArgs, device: &Device) -> Result<serde_json::Value> {
    let (card, model) = load_model_dir(model_dir, device)?;
    if !card.is_consistency() {
        bail!(
            "{}: `{}` is a diffusion model; editing needs a consistency model",
            model_dir.display(),
            card.name
        );
    }
    let shape = model.image_shape().with_context(|| {
        format!("{}: editing needs an image model, `{}` is a 2D model", model_dir.display(), card.name)
    })?;
    let [c, r, _] = shape;
    let d = c * r * r;
    let n = args.n;
    let noise = Noise::new(args.seed);
    let taus_or = |default: Vec<f64>| args.taus.clone().unwrap_or(default);

    if args.task == Task::Interpolate {
        let rows_n = n.max(2);
        let taus = taus_or(vec![]);
        Edit { start: Start::Prior, constraint: None }.validate(&model, &taus).map_err(anyhow::Error::msg)?;
        let x = interpolate(&model, args.seed, args.seed.wrapping_add(1), rows_n, &taus, device);
        let out = host(x)?;
        write_samples(&args.out, &out, d, Some(shape))?;
        return Ok(json!({"task": "interpolate", "images": rows_n, "taus": taus}));
    }

    let input = args
        .input
        .as_ref()
        .with_context(|| format!("`cm edit {}` needs --input <image>", args.task.name()))?;
    let y = read_image(input, c, r)?;
    let sigma = |what: &str| -> Result<f64> {
        args.sigma.with_context(|| format!("`cm edit {what}` needs --sigma (the noise level, e.g. 0.5)"))
    };
    let mut mask_v: Option<Vec<f32>> = None;
    let edit = match args.task {
        Task::Inpaint => {
            let path = args.mask.as_ref().context("`cm edit inpaint` needs --mask <image> (white = fill)")?;
            let m = read_image(path, 1, r)?;
            let m: Vec<f32> = m.iter().map(|v| if *v > 0.0 { 1.0 } else { 0.0 }).collect();
            let white = m.iter().filter(|v| **v > 0.0).count();
            if white == 0 || white == m.len() {
                bail!(
                    "{}: the mask must mark some pixels white (to fill) and some black (to keep); it has {white} white of {}",
                    path.display(),
                    m.len()
                );
            }
            let full: Vec<f32> = (0..c).flat_map(|_| m.iter().copied()).collect();
            mask_v = Some(full.clone());
            Edit::inpaint(full)
        }
        Task::Colourise => Edit::colourise(),
        Task::SuperResolution => Edit::super_resolution(args.factor),
        Task::Denoise => Edit::denoise(sigma("denoise")?),
        Task::Stroke => Edit::stroke(sigma("stroke")?),
        Task::Interpolate => unreachable!("handled above"),
    };
    let taus = taus_or(edit.default_taus(&model));
    edit.validate(&model, &taus).map_err(|e| anyhow::anyhow!("cm edit {}: {e}", args.task.name()))?;

    // The reference rows: the clean input, or (denoising) the input with seeded noise of level sigma.
    let mut reference = y.repeat(n);
    if let Start::Noisy { sigma } = edit.start {
        let eps = Noise::new(args.seed).normals(0xD0, 0, n, d);
        reference.iter_mut().zip(&eps).for_each(|(v, e)| *v += sigma as f32 * e);
    }
    let y_t = cm_core::host::rows(&reference, n, d, device);
    let x = host(edit.run(&model, y_t.clone(), &taus, &noise, 0))?;

    // The degraded view shown first in the grid, and the task's metric.
    let first = &x[..d];
    let (view, metrics) = match args.task {
        Task::Inpaint => {
            let m = mask_v.expect("set for inpaint");
            let view: Vec<f32> = y.iter().zip(&m).map(|(v, k)| if *k > 0.0 { 0.0 } else { *v }).collect();
            let known = mse_where(first, &y, |i| m[i] == 0.0);
            let filled = mse_where(first, &y, |i| m[i] > 0.0);
            (
                view,
                json!({"mse_known": known, "psnr_known": psnr(known), "psnr_filled_vs_input": psnr(filled)}),
            )
        }
        Task::Colourise => {
            let plane = r * r;
            let luma =
                |v: &[f32], p: usize| (0..3).map(|ch| LUMA[ch] * v[ch * plane + p] as f64).sum::<f64>();
            let grey: Vec<f32> = (0..3).flat_map(|_| (0..plane).map(|p| luma(&y, p) as f32)).collect();
            let err = (0..plane).map(|p| (luma(first, p) - luma(&y, p)).abs()).fold(0.0, f64::max);
            (grey, json!({"luminance_max_error": err, "psnr_vs_input": psnr(mse_where(first, &y, |_| true))}))
        }
        Task::SuperResolution => {
            let k = args.factor;
            let mean = |v: &[f32]| -> Vec<f32> {
                let mut out = vec![0.0; d];
                for ch in 0..c {
                    for by in 0..r / k {
                        for bx in 0..r / k {
                            let idx = |yy: usize, xx: usize| ch * r * r + (by * k + yy) * r + bx * k + xx;
                            let m = (0..k)
                                .flat_map(|yy| (0..k).map(move |xx| (yy, xx)))
                                .map(|(yy, xx)| v[idx(yy, xx)])
                                .sum::<f32>()
                                / (k * k) as f32;
                            (0..k)
                                .flat_map(|yy| (0..k).map(move |xx| (yy, xx)))
                                .for_each(|(yy, xx)| out[idx(yy, xx)] = m);
                        }
                    }
                }
                out
            };
            let low = mean(&y);
            let err = mean(first).iter().zip(&low).map(|(a, b)| (a - b).abs() as f64).fold(0.0, f64::max);
            (
                low,
                json!({"downsampling_max_error": err, "psnr_vs_input": psnr(mse_where(first, &y, |_| true))}),
            )
        }
        Task::Denoise => {
            let noisy = reference[..d].to_vec();
            let m = json!({"psnr_noisy": psnr(mse_where(&noisy, &y, |_| true)), "psnr_denoised": psnr(mse_where(first, &y, |_| true))});
            (noisy, m)
        }
        Task::Stroke => (y.clone(), json!({"rms_change": mse_where(first, &y, |_| true).sqrt()})),
        Task::Interpolate => unreachable!("handled above"),
    };
    let is_png = args.out.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if is_png {
        let mut all = view;
        all.extend_from_slice(&x);
        write_atomic(&args.out, &grid_png(&all, shape, n + 1, grid_zoom(shape)))?;
    } else {
        write_samples(&args.out, &x, d, Some(shape))?;
    }
    Ok(json!({"task": args.task.name(), "taus": taus, "images": n, "metrics": metrics}))
}
