//! Evaluation: sampling to host memory, `cm eval`'s reports against fresh data, and the metrics behind
//! them. Only the trainer evaluates, so this lives here rather than in core: [`metrics`] (2D distances),
//! [`features`] (FID-style statistics on classifier features), [`lenet`] (the classifier), [`images`]
//! (the image report), [`tune`] (`cm tune`'s search of tau lists).

pub mod features;
pub mod images;
pub mod lenet;
pub mod metrics;
pub mod tune;

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use burn::prelude::*;
use cm_core::data2d::Dataset2d;
use cm_core::rng::Noise;
use cm_core::{Denoiser, Method, Model, Plan, Rows, TauRequest, Taus};
use metrics::{Distances, sliced_w2};
use serde::Serialize;

/// Reads a tensor back to host floats.
pub fn host(t: Tensor<2>) -> Result<Vec<f32>> {
    cm_core::host::to_host(t).map_err(anyhow::Error::msg)
}

/// Rows per batch when sampling: 4096 points, or fewer images so activations stay small.
pub(crate) fn chunk(denoiser: &Denoiser) -> usize {
    if denoiser.image_shape().is_some() { 256 } else { 4096 }
}

/// The device a denoiser's weights live on.
pub(crate) fn device_of(denoiser: &Denoiser) -> Device {
    denoiser.net.devices().into_iter().next().unwrap_or_else(Device::flex)
}

/// Which class each sample of a class-conditional model is drawn from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClassPick {
    /// Sample `i` from class `i mod classes`: every class equally often (the evaluation's choice, against
    /// test splits whose classes are about equally frequent). No class for an unconditional model.
    Balanced,
    /// Every sample from this class (an error for an unconditional model).
    One(usize),
    /// No class: the label-dropout branch of a conditional model, or an unconditional model.
    Unconditional,
}

impl ClassPick {
    /// The classes of samples `first..first + n` for a model of `classes` classes, `None` for no class.
    pub fn rows(self, classes: usize, first: usize, n: usize) -> Option<Vec<usize>> {
        match self {
            ClassPick::Balanced if classes > 0 => Some((first..first + n).map(|i| i % classes).collect()),
            ClassPick::One(c) => Some(vec![c; n]),
            ClassPick::Balanced | ClassPick::Unconditional => None,
        }
    }
}

/// `n` samples of a loaded model by `plan` (checked against the model: [`Model::sample`]) with seed
/// `seed`, `[n, D]` flattened, in chunks so memory stays bounded; a class-conditional model's balanced
/// over its classes ([`ClassPick::Balanced`]).
pub fn model_points(model: &Model, plan: &Plan, n: usize, seed: u64) -> Result<Vec<f32>> {
    model_points_of(model, plan, n, seed, ClassPick::Balanced, 1.0)
}

/// [`model_points`] of the classes `pick` asks for, with classifier-free guidance `guidance` along a
/// diffusion model's ODE (1: none; checked by core).
pub fn model_points_of(
    model: &Model,
    plan: &Plan,
    n: usize,
    seed: u64,
    pick: ClassPick,
    guidance: f64,
) -> Result<Vec<f32>> {
    let device = device_of(&model.denoiser);
    let noise = Noise::new(seed);
    let k = model.denoiser.classes();
    chunked(&model.denoiser, n, |first, rows| {
        let classes = pick.rows(k, first, rows);
        let r = Rows::new(&noise, first, rows).with_classes(classes.as_deref()).with_guidance(guidance);
        model.sample(plan, r, &device)
    })
}

/// `n` samples of a bare denoiser (inside a training run, before its card exists) by `plan`; a
/// class-conditional one's balanced over its classes.
pub fn points(denoiser: &Denoiser, plan: &Plan, n: usize, seed: u64) -> Result<Vec<f32>> {
    let device = device_of(denoiser);
    let noise = Noise::new(seed);
    let k = denoiser.classes();
    chunked(denoiser, n, |first, rows| {
        let classes = ClassPick::Balanced.rows(k, first, rows);
        plan.run(denoiser, Rows::new(&noise, first, rows).with_classes(classes.as_deref()), &device, |_| {})
    })
}

/// Rows `0..n` drawn `chunk` at a time by `draw(first, rows)`, read back and checked finite.
fn chunked(
    denoiser: &Denoiser,
    n: usize,
    mut draw: impl FnMut(usize, usize) -> Result<Tensor<2>, String>,
) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(n * denoiser.dim());
    for first in (0..n).step_by(chunk(denoiser)) {
        out.extend(host(draw(first, chunk(denoiser).min(n - first)).map_err(anyhow::Error::msg)?)?);
    }
    finite_samples(out)
}

/// `n` consistency samples of a bare denoiser through `taus` (checked by the one rule).
pub fn consistency_points(denoiser: &Denoiser, n: usize, seed: u64, taus: &[f64]) -> Result<Vec<f32>> {
    let r = denoiser.range;
    let plan = Plan::Consistency(Taus::new(taus.to_vec(), &r, r.sigma_max).map_err(anyhow::Error::msg)?);
    points(denoiser, &plan, n, seed)
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

/// What `cm eval` measures, named as in its report: a diffusion model's Heun sampler at `teacher_nfe`
/// (`heun`), or a consistency model's default 1-, 2- and 4-step lists (`1`, `2`, `4`) and the user's
/// `extra_taus` (`custom`).
pub fn plans(model: &Model, teacher_nfe: usize, extra_taus: Option<Vec<f64>>) -> Result<Vec<(String, Plan)>> {
    let err = anyhow::Error::msg;
    if !model.is_consistency() {
        return Ok(vec![(
            "heun".into(),
            model.ode_plan(cm_core::sample::OdeSolver::Heun, teacher_nfe).map_err(err)?,
        )]);
    }
    let mut plans = Vec::new();
    for steps in [1usize, 2, 4] {
        plans.push((steps.to_string(), model.consistency_plan(TauRequest::Default { steps }).map_err(err)?));
    }
    if let Some(taus) = extra_taus {
        plans.push(("custom".into(), model.consistency_plan(TauRequest::Given(taus)).map_err(err)?));
    }
    Ok(plans)
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

/// Evaluates a model on `n` points against fresh data, by each of [`plans`].
pub fn evaluate(
    model: &Model,
    dataset: Dataset2d,
    n: usize,
    seed: u64,
    teacher_nfe: usize,
    extra_taus: Option<Vec<f64>>,
) -> Result<Report> {
    let data = eval_data(dataset, n, seed, 0);
    let floor = eval_data(dataset, n, seed, 1);
    let dim = model.dim();
    let mut consistency = BTreeMap::new();
    let mut teacher = None;
    for (name, plan) in plans(model, teacher_nfe, extra_taus)? {
        let pts = model_points(model, &plan, n, seed)?;
        let distances = Distances::between(&pts, &data, dim, seed);
        match &plan {
            Plan::Consistency(taus) => {
                consistency
                    .insert(name, Entry { nfe: plan.nfe(), taus: Some(taus.as_slice().to_vec()), distances });
            }
            Plan::Ode { .. } => teacher = Some(Entry { nfe: plan.nfe(), taus: None, distances }),
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

/// One-step (or 35-NFE teacher) sliced W2 on 1024 points: cheap enough to log during training.
pub fn quick_sliced_w2(model: &Denoiser, dataset: Dataset2d, method: Method) -> Result<f64> {
    let n = 1024;
    let pts = points(model, &Plan::preview(method, &model.range), n, 9)?;
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
