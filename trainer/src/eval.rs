//! Sampling to host memory and quality evaluation against fresh data (`cm eval`).

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use burn::prelude::*;
use cm_core::Parameterisation;
use cm_core::data2d::Dataset2d;
use cm_core::metrics::{Distances, sliced_w2};
use cm_core::rng::Noise;
use cm_core::sample::{OdeSolver, consistency_sample, ode_sample};
use cm_core::{Denoiser, Method};
use serde::Serialize;

/// Reads a tensor back to host floats.
pub fn host(t: Tensor<2>) -> Result<Vec<f32>> {
    cm_core::host::to_host(t).map_err(anyhow::Error::msg)
}

/// Rows per batch when sampling: 4096 points, or fewer images so activations stay small.
fn chunk(model: &Denoiser) -> usize {
    if model.image_shape().is_some() { 256 } else { 4096 }
}

/// `n` consistency samples with seed `seed` and intermediate levels `taus`, `[n, D]` flattened. For a
/// consistency model: callers decide by the one rule, `Method::is_diffusion` (`ModelCard::is_consistency`).
pub fn consistency_points(model: &Denoiser, n: usize, seed: u64, taus: &[f64]) -> Result<Vec<f32>> {
    let device = model.net.devices().into_iter().next().unwrap_or_else(Device::flex);
    let noise = Noise::new(seed);
    let mut out = Vec::with_capacity(n * model.dim());
    for first in (0..n).step_by(chunk(model)) {
        let rows = chunk(model).min(n - first);
        out.extend(host(
            consistency_sample(model, &noise, first, rows, taus, &device).map_err(anyhow::Error::msg)?,
        )?);
    }
    finite_samples(out)
}

/// Samples with a NaN or infinite value are an error, not an output: the weights or the card
/// (embedding scale, `sigma_data`) are broken.
fn finite_samples(out: Vec<f32>) -> Result<Vec<f32>> {
    let bad = out.iter().filter(|v| !v.is_finite()).count();
    if bad > 0 {
        bail!(
            "the model produced {bad} NaN or infinite values in {} sampled numbers: its weights or card are broken",
            out.len()
        );
    }
    Ok(out)
}

/// `n` samples of a diffusion model by Heun's method at `nfe` evaluations (EDM Alg. 1, Karras grid).
pub fn teacher_points(model: &Denoiser, n: usize, seed: u64, nfe: usize) -> Result<Vec<f32>> {
    solver_points(model, n, seed, nfe, OdeSolver::Heun)
}

pub fn solver_points(
    model: &Denoiser,
    n: usize,
    seed: u64,
    nfe: usize,
    solver: OdeSolver,
) -> Result<Vec<f32>> {
    // A TrigFlow network may be either (method `trigflow` or `sct`/`scd`); the card's method decides.
    if model.parameterisation == Parameterisation::Consistency {
        bail!("--teacher-nfe needs a diffusion (edm, trigflow) model; this one is a consistency model");
    }
    let device = model.net.devices().into_iter().next().unwrap_or_else(Device::flex);
    let noise = Noise::new(seed);
    let mut out = Vec::with_capacity(n * model.dim());
    for first in (0..n).step_by(chunk(model)) {
        let rows = chunk(model).min(n - first);
        out.extend(host(ode_sample(model, &noise, first..first + rows, solver, nfe, &device, |_| {}))?);
    }
    finite_samples(out)
}

/// One evaluated sampler.
#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    pub nfe: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taus: Option<Vec<f64>>,
    #[serde(flatten)]
    pub distances: Distances,
}

/// `cm eval`'s JSON.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub dataset: String,
    pub n: usize,
    pub seed: u64,
    /// Distances between two independent data draws: the best any sampler can show at this `n`.
    pub noise_floor: Distances,
    /// Consistency sampling at 1, 2 and 4 steps (consistency models only).
    pub consistency: BTreeMap<String, Entry>,
    /// The diffusion model's Heun sampler (diffusion models only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teacher: Option<Entry>,
}

impl Report {
    /// Flat `name -> value` metrics for the model card (default schedules and the teacher).
    pub fn flat_metrics(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        let mut put = |prefix: &str, d: &Distances| {
            m.insert(format!("sliced_w2_{prefix}"), d.sliced_w2);
            m.insert(format!("mmd2_{prefix}"), d.mmd2);
            m.insert(format!("energy_{prefix}"), d.energy);
        };
        put("noise_floor", &self.noise_floor);
        // A `custom` tau list describes the request, not the model: it stays out of cards.
        for (k, e) in self.consistency.iter().filter(|(k, _)| *k != "custom") {
            put(&format!("{k}step"), &e.distances);
        }
        if let Some(t) = &self.teacher {
            put(&format!("heun{}", t.nfe), &t.distances);
        }
        m
    }
}

/// Fresh data for evaluation: a stream no training step uses.
pub fn eval_data(dataset: Dataset2d, n: usize, seed: u64, draw: u64) -> Vec<f32> {
    dataset.sample(seed, (1 << 48) + draw, 0, n)
}

/// Evaluates a model on `n` points against fresh data.
/// Consistency models are measured at 1, 2 and 4 steps (default taus), plus `extra_taus` as
/// `custom` when given; diffusion models with Heun at `teacher_nfe`.
pub fn evaluate(
    model: &Denoiser,
    dataset: Dataset2d,
    method: Method,
    n: usize,
    seed: u64,
    teacher_nfe: usize,
    extra_taus: Option<&[f64]>,
) -> Result<Report> {
    let data = eval_data(dataset, n, seed, 0);
    let floor = eval_data(dataset, n, seed, 1);
    let dim = model.dim();
    let mut consistency = BTreeMap::new();
    let mut teacher = None;
    if method.is_diffusion() {
        let pts = teacher_points(model, n, seed, teacher_nfe)?;
        teacher = Some(Entry {
            nfe: OdeSolver::Heun.nfe(OdeSolver::Heun.steps_for_nfe(teacher_nfe)),
            taus: None,
            distances: Distances::between(&pts, &data, dim, seed),
        });
    } else {
        for steps in [1usize, 2, 4] {
            let taus = model.default_taus(steps);
            consistency.insert(steps.to_string(), taus_entry(model, &data, seed, &taus)?);
        }
        if let Some(taus) = extra_taus {
            consistency.insert("custom".into(), taus_entry(model, &data, seed, taus)?);
        }
    }
    Ok(Report {
        dataset: dataset.name().into(),
        n,
        seed,
        noise_floor: Distances::between(&floor, &data, dim, seed),
        consistency,
        teacher,
    })
}

/// Consistency sampling with `taus`, as many points as `data` has, against `data`.
fn taus_entry(model: &Denoiser, data: &[f32], seed: u64, taus: &[f64]) -> Result<Entry> {
    let dim = model.dim();
    let pts = consistency_points(model, data.len() / dim, seed, taus)?;
    let distances = Distances::between(&pts, data, dim, seed);
    Ok(Entry { nfe: taus.len() + 1, taus: Some(taus.to_vec()), distances })
}

/// One-step (or 35-NFE teacher) sliced W2 on 1024 points: cheap enough to log during training.
pub fn quick_sliced_w2(model: &Denoiser, dataset: Dataset2d, method: Method) -> Result<f64> {
    let n = 1024;
    let pts = if method.is_diffusion() {
        teacher_points(model, n, 9, 35)?
    } else {
        consistency_points(model, n, 9, &[])?
    };
    Ok(sliced_w2(&pts, &eval_data(dataset, n, 9, 0), model.dim(), 64, 0))
}

/// A short description of the machine for model cards.
pub fn hardware() -> String {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    match crate::gpu::device_name() {
        Some(gpu) => format!("{gpu}; {cpus} x {model}"),
        None => format!("{cpus} x {model}"),
    }
}
