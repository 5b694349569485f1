//! Zero-shot editing with a consistency model (CM Algorithm 4 and §6): every task is the one
//! multistep loop ([`crate::sample::multistep_from`]) with a projection onto what is known of the reference.
//!
//! With an orthogonal `A` and a mask `Omega` in `A`-space (1 = generate), CM's projection
//! `A^-1[(A y)(1 - Omega) + (A x) Omega]` is `x + P (y - x)`, `P` the orthogonal projector onto the known
//! coordinates. So each task only says what `P` is: the known pixels (inpainting), the luminance axis
//! of each pixel's colour (colourisation), the mean of each `k × k` patch (super-resolution).
//! Rows are images flattened channel-major, `[B, C·H·W]`.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::model::Denoiser;
use crate::param::NoiseRange;
use crate::rng::Noise;
use crate::sample::{multistep, multistep_from, normals};

/// ITU-R BT.601 luma weights of `(R, G, B)`: colourisation keeps `Y = 0.299 R + 0.587 G + 0.114 B`.
pub const LUMA: [f64; 3] = [0.299, 0.587, 0.114];

/// The noise stream of a denoising edit's input (`y + sigma eps`, one row of `eps` per result).
pub const DENOISE_STREAM: u64 = 0xD0;

/// The luminance plane `Y` of a planar RGB image (`[3 * plane]` values, any scale).
pub fn luminance(rgb: &[f32], plane: usize) -> Vec<f32> {
    (0..plane).map(|i| (0..3).map(|ch| LUMA[ch] * rgb[ch * plane + i] as f64).sum::<f64>() as f32).collect()
}

/// An image as a model row: RGBA8 pixels (`[h * w * 4]`, row-major), composited on white, mapped to
/// `[-1, 1]` and laid out channel-major; a 1-channel model takes the luminance. The page's uploads go
/// through here; `cm` reads files through the same map after resizing.
pub fn image_row(rgba: &[u8], channels: usize) -> Result<Vec<f32>, String> {
    if !rgba.len().is_multiple_of(4) {
        return Err(format!("RGBA pixels come in fours, got {} bytes", rgba.len()));
    }
    let plane = rgba.len() / 4;
    let mut rgb = vec![0f32; 3 * plane];
    for (i, p) in rgba.chunks_exact(4).enumerate() {
        for (ch, v) in on_white(p).into_iter().enumerate() {
            rgb[ch * plane + i] = unit(v);
        }
    }
    channels_of(rgb, plane, channels)
}

/// One RGBA8 pixel composited on white: its `(R, G, B)` intensities, rounded, in `[0, 255]`.
pub fn on_white(p: &[u8]) -> [f32; 3] {
    let a = p[3] as f32 / 255.0;
    [0, 1, 2].map(|ch| (p[ch] as f32 * a + 255.0 * (1.0 - a)).round())
}

/// A planar RGB image (`[3 * plane]` model values) as a row of a `channels`-channel model: itself for
/// colour models, its BT.601 luminance for grey ones.
pub fn channels_of(rgb: Vec<f32>, plane: usize, channels: usize) -> Result<Vec<f32>, String> {
    match channels {
        3 => Ok(rgb),
        1 => Ok(luminance(&rgb, plane)),
        c => Err(format!("cannot make an image row for a {c}-channel model (1 or 3)")),
    }
}

/// An 8-bit intensity (possibly filtered, so any value in `[0, 255]`) as a model value in `[-1, 1]`.
pub fn unit(v: f32) -> f32 {
    v / 127.5 - 1.0
}

/// What is known about the result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Constraint {
    /// Pixels where `mask` is 0 are known (`mask`: one value per element of a row, 1 = generate).
    Inpaint { mask: Vec<f32> },
    /// Each pixel's luminance is known (colour images).
    Colourise,
    /// Each `factor × factor` patch's mean is known (`H`, `W` divisible by `factor`).
    SuperResolution { factor: usize },
}

impl Constraint {
    /// Checks the constraint against an image shape `[C, H, W]`.
    pub fn validate(&self, shape: [usize; 3]) -> Result<(), String> {
        let [c, h, w] = shape;
        match self {
            Constraint::Inpaint { mask } if mask.len() != c * h * w => Err(format!(
                "the mask has {} values, the image {}x{}x{} = {}",
                mask.len(),
                c,
                h,
                w,
                c * h * w
            )),
            Constraint::Colourise if c != 3 => {
                Err(format!("colourisation needs a colour (3-channel) model, this one has {c} channel(s)"))
            }
            Constraint::SuperResolution { factor } if *factor < 2 || h % factor != 0 || w % factor != 0 => {
                Err(format!(
                    "super-resolution factor {factor} must be at least 2 and divide the image size {h}x{w}"
                ))
            }
            _ => Ok(()),
        }
    }

    /// `P d`: the part of `d: [B, D]` along the known coordinates.
    pub fn known_part(&self, d: Tensor<2>, shape: [usize; 3]) -> Tensor<2> {
        let [c, h, w] = shape;
        let [b, dim] = d.dims();
        let device = d.device();
        match self {
            Constraint::Inpaint { mask } => {
                let known: Vec<f32> = mask.iter().map(|m| 1.0 - m).collect();
                d * Tensor::<1>::from_floats(known.as_slice(), &device).reshape([1, dim])
            }
            Constraint::Colourise => {
                // q = LUMA / |LUMA|; P d = q (q . d) per pixel.
                let norm = LUMA.iter().map(|v| v * v).sum::<f64>().sqrt();
                let q: Vec<f32> = LUMA.iter().map(|v| (v / norm) as f32).collect();
                let q = Tensor::<1>::from_floats(q.as_slice(), &device).reshape([1, 3, 1]);
                let d = d.reshape([b, c, h * w]);
                let coef = (d * q.clone()).sum_dim(1); // [B, 1, HW]
                (q * coef).reshape([b, dim])
            }
            Constraint::SuperResolution { factor: k } => {
                let k = *k;
                let d = d.reshape([b, c, h / k, k, w / k, k]);
                let mean = d.mean_dim(3).mean_dim(5); // [B, C, H/k, 1, W/k, 1]
                mean.expand([b, c, h / k, k, w / k, k]).reshape([b, dim])
            }
        }
    }

    /// CM Algorithm 4's projection: keep the known coordinates of `y`, the rest of `x`.
    pub fn project(&self, x: Tensor<2>, y: &Tensor<2>, shape: [usize; 3]) -> Tensor<2> {
        x.clone() + self.known_part(y.clone() - x, shape)
    }
}

/// Where an edit starts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Start {
    /// From `P y + sigma_max z` (CM Algorithm 4: the known part of the reference, fully noised).
    Prior,
    /// From the reference itself, taken to carry Gaussian noise of level `sigma` (denoising).
    Noisy { sigma: f64 },
    /// From the reference noised to `sigma` (SDEdit-style stroke guidance).
    Renoise { sigma: f64 },
}

impl Start {
    /// The noise level the edit starts from: `sigma_max` from the prior, else the given `sigma`.
    pub fn level(self, range: &NoiseRange) -> f64 {
        match self {
            Start::Prior => range.sigma_max,
            Start::Noisy { sigma } | Start::Renoise { sigma } => sigma,
        }
    }
}

/// One editing task: a start and an optional constraint.
#[derive(Clone, Debug, PartialEq)]
pub struct Edit {
    pub start: Start,
    pub constraint: Option<Constraint>,
}

impl Edit {
    pub fn inpaint(mask: Vec<f32>) -> Self {
        Self { start: Start::Prior, constraint: Some(Constraint::Inpaint { mask }) }
    }
    pub fn colourise() -> Self {
        Self { start: Start::Prior, constraint: Some(Constraint::Colourise) }
    }
    pub fn super_resolution(factor: usize) -> Self {
        Self { start: Start::Prior, constraint: Some(Constraint::SuperResolution { factor }) }
    }
    pub fn denoise(sigma: f64) -> Self {
        Self { start: Start::Noisy { sigma }, constraint: None }
    }
    pub fn stroke(sigma: f64) -> Self {
        Self { start: Start::Renoise { sigma }, constraint: None }
    }

    /// Checks the edit against a model: image shape, noise levels inside its range, `taus` below the start.
    pub fn validate(&self, model: &Denoiser, taus: &[f64]) -> Result<(), String> {
        let shape = model.image_shape().ok_or("editing needs an image model")?;
        if let Some(c) = &self.constraint {
            c.validate(shape)?;
        }
        let r = model.range;
        let start = self.start.level(&r);
        if !(start > r.sigma_min && start <= r.sigma_max) {
            return Err(format!(
                "sigma {} is outside (sigma_min, sigma_max] = ({}, {}]",
                crate::error::shown(start),
                r.sigma_min,
                r.sigma_max
            ));
        }
        crate::sample::check_taus(taus, &r, start)
    }

    /// The tau list an edit uses unless told otherwise: the model's 4-step list below the start level.
    pub fn default_taus(&self, model: &Denoiser) -> Vec<f64> {
        let start = self.start.level(&model.range);
        model.default_taus(4).into_iter().filter(|&t| t < start).collect()
    }

    /// The `n` rows the edit starts from, given the clean reference `y` (`[D]`): for denoising, `y` plus
    /// Gaussian noise of the edit's level (row `i` from row `i` of [`DENOISE_STREAM`] of `noise`); for
    /// every other task, `y` itself.
    pub fn inputs(&self, y: &[f32], n: usize, noise: &Noise) -> Vec<f32> {
        let mut rows = y.repeat(n);
        if let Start::Noisy { sigma } = self.start {
            let eps = noise.normals(DENOISE_STREAM, 0, n, y.len());
            rows.iter_mut().zip(&eps).for_each(|(v, e)| *v += sigma as f32 * e);
        }
        rows
    }

    /// Runs the edit on references `y: [B, D]` (rows `first..` of `noise`'s streams) with `taus`, each row
    /// of the class in its row of `labels` where given (one-hot `[B, classes]`, [`crate::model::one_hot`]).
    pub fn run(
        &self,
        model: &Denoiser,
        y: Tensor<2>,
        labels: Option<&Tensor<2>>,
        taus: &[f64],
        noise: &Noise,
        first: usize,
    ) -> Tensor<2> {
        let shape = model.image_shape().expect("validated: an image model");
        let device = y.device();
        let [b, d] = y.dims();
        let z = normals(noise, 0, first, b, d, &device);
        let (x_start, sigma_start) = match self.start {
            Start::Prior => {
                let known = match &self.constraint {
                    Some(c) => c.known_part(y.clone(), shape),
                    None => y.zeros_like(),
                };
                (known + z * model.range.sigma_max, model.range.sigma_max)
            }
            Start::Noisy { sigma } => (y.clone(), sigma),
            Start::Renoise { sigma } => (y.clone() + z * sigma, sigma),
        };
        let fresh = |j: usize| normals(noise, 1 + j as u64, first, b, d, &device);
        let project = |x: Tensor<2>| match &self.constraint {
            Some(c) => c.project(x, &y, shape),
            None => x,
        };
        multistep_from(model, labels, x_start, sigma_start, taus, fresh, project)
    }
}

/// Spherical interpolation of two noises (CM §6: interpolating in the latent space): `n` rows from
/// `z0` (`alpha = 0`) to `z1` (`alpha = 1`), each `[D]`.
pub fn slerp_rows(z0: &[f32], z1: &[f32], n: usize) -> Vec<f32> {
    let dot: f64 = z0.iter().zip(z1).map(|(a, b)| *a as f64 * *b as f64).sum();
    let n0 = z0.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
    let n1 = z1.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
    let theta = (dot / (n0 * n1)).clamp(-1.0, 1.0).acos();
    let mut out = Vec::with_capacity(n * z0.len());
    for i in 0..n {
        let alpha = if n == 1 { 0.0 } else { i as f64 / (n - 1) as f64 };
        let (w0, w1) = if theta.abs() < 1e-6 {
            (1.0 - alpha, alpha)
        } else {
            (((1.0 - alpha) * theta).sin() / theta.sin(), (alpha * theta).sin() / theta.sin())
        };
        out.extend(z0.iter().zip(z1).map(|(a, b)| (w0 * *a as f64 + w1 * *b as f64) as f32));
    }
    out
}

/// `n >= 2` samples along the spherical path from the noise of seed `a` to the noise of seed `b` (CM §6),
/// each mapped with `taus` (re-noised from `a`'s streams), of the class in its row of `labels` where given.
pub fn interpolate(
    model: &Denoiser,
    labels: Option<&Tensor<2>>,
    a: u64,
    b: u64,
    n: usize,
    taus: &[f64],
    device: &Device,
) -> Tensor<2> {
    let d = model.dim();
    let n = n.max(2);
    let rows = slerp_rows(&Noise::new(a).normals(0, 0, 1, d), &Noise::new(b).normals(0, 0, 1, d), n);
    let z = crate::host::rows(&rows, n, d, device);
    let noise = Noise::new(a);
    multistep(model, labels, z, taus, |j| normals(&noise, 1 + j as u64, 0, n, d, device), |x| x)
}
