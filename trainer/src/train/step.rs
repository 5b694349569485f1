//! One training step on one device or split over several (`--devices N`): each device's shard of the
//! batch gives its loss and gradients by the same code, and one optimiser step applies them all.

use anyhow::{Context, Result};
use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer, MultiGradientsParams};
use burn::prelude::*;
use cm_core::host::rows;
use cm_core::model::one_hot;
use cm_core::objective::{
    AdaptiveWeight, CtConfig, Levels, Progress, ScmConfig, Teacher, ct_loss, edm_loss, scm_loss,
    trigflow_diffusion_loss,
};
use cm_core::rng::Noise;
use cm_core::{Denoiser, Method};

use super::state::TrainState;
use crate::backend::Backend;
use crate::config::TrainConfig;

/// What a step's loss reports besides the loss: the schedule values that steer the step and are logged.
#[derive(Clone, Copy, Debug)]
pub(super) enum Schedule {
    /// EDM and TrigFlow diffusion: none.
    None,
    /// Consistency between two levels (CT, iCT, ECT, CD): the discretisation `N(k)` or ECT's stage, and
    /// the target network's EMA rate `mu(k)` (`theta^- <- mu theta^- + (1 - mu) theta`; 0: the target is
    /// `stopgrad(theta)`).
    Discrete { levels: Levels, mu: f64 },
    /// sCT / sCD: the tangent warm-up factor `r = min(1, k / H)`.
    Tangent { r: f64 },
}

/// What every step's loss needs besides the networks.
pub(super) struct StepContext<'a> {
    pub cfg: &'a TrainConfig,
    /// Values per data row.
    pub dim: usize,
    pub ct: CtConfig,
    pub scm: ScmConfig,
    pub noise: &'a Noise,
}

/// The networks one shard's loss reads.
#[derive(Clone, Copy)]
struct Nets<'a> {
    model: &'a Denoiser,
    weight: Option<&'a AdaptiveWeight>,
    target: Option<&'a Denoiser>,
    teacher: Option<&'a Denoiser>,
}

/// One shard's part of a step: the gradients of the model and of `w_phi`, the loss where it was read.
struct ShardGrads {
    model: GradientsParams,
    weight: Option<GradientsParams>,
    loss: Option<f64>,
    schedule: Schedule,
}

/// A step's gradients of one module: one device's, or every device's for burn to sum.
enum Grads {
    One(GradientsParams),
    Many(MultiGradientsParams),
}

/// A step's gradients of the model and of `w_phi`, with its loss (where read) and schedule.
pub(super) struct StepGrads {
    model: Grads,
    weight: Option<Grads>,
    pub loss: Option<f64>,
    pub schedule: Schedule,
}

impl Grads {
    /// One optimiser step of `module` by these gradients at learning rate `lr`.
    fn step<M: Module>(self, optim: &mut ModuleOptimizer, lr: f64, module: M) -> M {
        match self {
            Grads::One(g) => optim.step(lr, module, g),
            Grads::Many(g) => optim.step_multi(lr, module, g),
        }
    }
}

impl StepContext<'_> {
    /// The method's loss on `x0` of classes `labels` (rows `progress.first_row..` of step `progress.k`),
    /// with its schedule.
    fn loss(
        &self,
        nets: Nets,
        x0: Tensor<2>,
        labels: Option<&Tensor<2>>,
        progress: Progress,
    ) -> (Tensor<1>, Schedule) {
        let (cfg, noise, model) = (self.cfg, self.noise, nets.model);
        let w = || nets.weight.expect("TrigFlow methods have w_phi");
        match cfg.method {
            Method::Edm => (edm_loss(model, x0, labels, &cfg.edm, noise, progress.streams()), Schedule::None),
            Method::Ct | Method::Ict | Method::Ect | Method::Cd => {
                // mu = 0 (iCT): the target is the student itself, without autodiff.
                let valid;
                let t = match nets.target {
                    Some(t) => t,
                    None => {
                        valid = model.valid();
                        &valid
                    }
                };
                let solver = cfg.teacher.as_ref().map(|t| t.solver);
                let guidance = cfg.teacher.as_ref().map_or(1.0, |t| t.guidance);
                let teach =
                    nets.teacher.zip(solver).map(|(model, solver)| Teacher { model, solver, guidance });
                let step = ct_loss(model, t, x0, labels, &self.ct, progress, noise, teach);
                (step.loss, Schedule::Discrete { levels: step.levels, mu: step.mu })
            }
            Method::Trigflow => {
                (trigflow_diffusion_loss(model, w(), x0, labels, &self.scm, progress, noise), Schedule::None)
            }
            Method::Sct | Method::Scd => {
                let step = scm_loss(
                    model,
                    &model.valid(),
                    w(),
                    x0,
                    labels,
                    &self.scm,
                    progress,
                    noise,
                    nets.teacher.map(|t| (t, cfg.teacher.as_ref().map_or(1.0, |c| c.guidance))),
                );
                (step.loss, Schedule::Tangent { r: step.r })
            }
        }
    }

    /// One shard's loss on `x0` and its gradients: the loss is scaled by the shard's `share` of the batch
    /// where the batch is split (the shards' sum is then the batch mean), and read to the host where `read`.
    fn shard(
        &self,
        nets: Nets,
        x0: Tensor<2>,
        labels: Option<Tensor<2>>,
        progress: Progress,
        share: Option<f64>,
        read: bool,
    ) -> ShardGrads {
        let (loss, schedule) = self.loss(nets, x0, labels.as_ref(), progress);
        let loss = match share {
            Some(share) => loss * share,
            None => loss,
        };
        let value = read.then(|| loss.clone().into_scalar::<f32>() as f64);
        let mut grads = loss.backward();
        let model = GradientsParams::from_module(&mut grads, nets.model);
        let weight = nets.weight.map(|w| GradientsParams::from_module(&mut grads, w));
        ShardGrads { model, weight, loss: value, schedule }
    }
}

/// Where a run's steps run: the training device alone, or `--devices N` > 1 devices that each get a
/// copy of the model, the teacher and the target, and a contiguous shard of the batch.
pub(super) struct Shards {
    /// The autodiff training device, which the state lives on.
    device: Device,
    /// The distillation teacher (no autodiff), as the one-device step reads it.
    teacher: Option<Denoiser>,
    /// The shards' devices (for one shard, the plain device under `device`, where nothing runs).
    devices: Vec<Device>,
    /// The teacher on each shard's device (empty for one device).
    teachers: Vec<Option<Denoiser>>,
    /// On the CPU, each shard's rayon pool (empty for one device and for GPUs).
    pools: Vec<rayon::ThreadPool>,
}

impl Shards {
    /// The `n` devices of `cfg`'s backend for a run on the training device `device`, each with `teacher`.
    pub(super) fn new(
        cfg: &TrainConfig,
        n: usize,
        device: &Device,
        teacher: Option<Denoiser>,
    ) -> Result<Self> {
        let devices = cfg.backend.devices(n)?;
        let teachers = if devices.len() > 1 {
            devices.iter().map(|d| teacher.clone().map(|t| t.fork(&d.clone().inner()))).collect()
        } else {
            Vec::new()
        };
        let pools = cpu_shard_pools(cfg.backend, devices.len())?;
        Ok(Self { device: device.clone(), teacher, devices, teachers, pools })
    }

    /// How many devices share each batch.
    pub(super) fn len(&self) -> usize {
        self.devices.len()
    }

    /// The gradients of `state`'s model and `w_phi` on `batch` of classes `labels` (one per row for a
    /// class-conditional model, `None` where withheld; empty otherwise) at step `progress.k`, with the
    /// loss where `log` asks.
    pub(super) fn grads(
        &self,
        ctx: &StepContext,
        state: &TrainState,
        (batch, labels): (&[f32], &[Option<usize>]),
        progress: Progress,
        log: bool,
    ) -> StepGrads {
        if self.len() == 1 {
            let x0 = rows(batch, ctx.cfg.batch, ctx.dim, &self.device);
            let labels = labels_on(labels, state.model.classes(), &self.device);
            let nets = Nets {
                model: &state.model,
                weight: state.weight.as_ref(),
                target: state.target.as_ref(),
                teacher: self.teacher.as_ref(),
            };
            let s = ctx.shard(nets, x0, labels, progress, None, log);
            StepGrads {
                model: Grads::One(s.model),
                weight: s.weight.map(Grads::One),
                loss: s.loss,
                schedule: s.schedule,
            }
        } else {
            let shards = self.split(ctx, state, (batch, labels), progress);
            let (schedule, loss) =
                (shards[0].schedule, log.then(|| shards.iter().filter_map(|s| s.loss).sum()));
            let mut model_grads = MultiGradientsParams::default();
            let mut weight_grads = MultiGradientsParams::default();
            for (s, dev) in shards.into_iter().zip(&self.devices) {
                model_grads.grads.push((s.model, dev.clone()));
                if let Some(gw) = s.weight {
                    weight_grads.grads.push((gw, dev.clone()));
                }
            }
            let weight = state.weight.is_some().then_some(Grads::Many(weight_grads));
            StepGrads { model: Grads::Many(model_grads), weight, loss, schedule }
        }
    }

    /// Every shard's loss and gradients, each device in a thread of its own (and on the CPU in its own
    /// rayon pool); each shard's loss is read to the host.
    fn split(
        &self,
        ctx: &StepContext,
        state: &TrainState,
        (batch, labels): (&[f32], &[Option<usize>]),
        progress: Progress,
    ) -> Vec<ShardGrads> {
        let classes = state.model.classes();
        let (n, size, dim) = (self.len(), ctx.cfg.batch, ctx.dim);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (self.devices.iter().zip(&self.teachers).enumerate())
                .map(|(i, (dev, teach))| {
                    let rows = size * i / n..size * (i + 1) / n;
                    let part = &batch[rows.start * dim..rows.end * dim];
                    let x0 = cm_core::host::rows(part, rows.len(), dim, dev);
                    let labels = labels_on(labels.get(rows.clone()).unwrap_or(&[]), classes, dev);
                    let m = state.model.clone().fork(dev);
                    let w = state.weight.clone().map(|w| w.fork(dev));
                    let t = state.target.clone().map(|t| t.fork(&dev.clone().inner()));
                    let teach = teach.clone();
                    let share = rows.len() as f64 / size as f64;
                    let pool = self.pools.get(i);
                    scope.spawn(move || {
                        let step = || {
                            let nets = Nets {
                                model: &m,
                                weight: w.as_ref(),
                                target: t.as_ref(),
                                teacher: teach.as_ref(),
                            };
                            ctx.shard(nets, x0, labels, progress.shard(rows.start), Some(share), true)
                        };
                        match pool {
                            Some(pool) => pool.install(step),
                            None => step(),
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("a training shard panicked")).collect()
        })
    }
}

impl TrainState {
    /// One optimiser step of the model and `w_phi` by `grads` at learning rate `lr`.
    pub(super) fn apply(mut self, grads: StepGrads, lr: f64) -> Self {
        self.model = grads.model.step(&mut self.optim, lr, self.model);
        if let Some(w) = self.weight.take() {
            let g = grads.weight.expect("w_phi has gradients");
            self.weight = Some(g.step(&mut self.optim, lr, w));
        }
        self
    }
}

/// A class-conditional model's one-hot labels of a batch's rows on `device` (none for other models). The
/// labels come from the training data, whose classes the recipe was checked against.
fn labels_on(labels: &[Option<usize>], classes: usize, device: &Device) -> Option<Tensor<2>> {
    (classes > 0).then(|| one_hot(labels, classes, device).expect("labels checked against the data"))
}

/// On the CPU, each of `shards` > 1 batch shards runs its operations in a rayon pool of its own (the
/// machine's threads shared out, at least one each), so the shards train side by side without waiting
/// on one shared pool. Empty for one shard and for GPUs.
fn cpu_shard_pools(backend: Backend, shards: usize) -> Result<Vec<rayon::ThreadPool>> {
    if backend != Backend::Cpu || shards < 2 {
        return Ok(Vec::new());
    }
    let threads = (rayon::current_num_threads() / shards).max(1);
    (0..shards)
        .map(|i| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(move |t| format!("cm-shard-{i}-{t}"))
                .build()
                .context("cannot start a thread pool for a CPU shard")
        })
        .collect()
}
