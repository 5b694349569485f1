//! The consistency probe of an image run with a diffusion model at hand (the CD/sCD teacher, or the
//! `init_from` model an ECT/iCT/sCT run starts from): 64 of that model's PF-ODE trajectories (Heun, 35
//! NFE; the rows of the run's sample grid), solved once at the start, and at every sample grid the
//! evaluation EMA's one-step jumps from 8 of their states, as RMS distances to the trajectories' origin
//! (`cm trajectory`'s measure; `jump_rms_sigma_max` and `jump_rms_mean` in `metrics.jsonl`).

use anyhow::Result;
use cm_core::host::{rms_distance, rows};
use cm_core::loaded::jump_levels;
use cm_core::model::one_hot;
use cm_core::rng::Noise;
use cm_core::sample::OdeSolver;
use cm_core::{Denoiser, Plan, Rows};

use crate::eval::{device_of, host};

/// Trajectories in the probe, and their Heun evaluations and levels.
const ROWS: usize = 64;
const NFE: usize = 35;
const LEVELS: usize = 8;

pub(super) struct Probe {
    sigmas: Vec<f64>,
    /// The ODE's states at each level, `[ROWS, D]` row-major, on the host.
    states: Vec<Vec<f32>>,
    origin: Vec<f32>,
    dim: usize,
    /// A class-conditional run's class of each row (row `i`: class `i mod classes`).
    classes: Option<Vec<usize>>,
}

impl Probe {
    /// Solves `ode`'s PF-ODE for rows `0..64` of `seed` and keeps the states a model of noise range
    /// `student` jumps from; with `classes`, row `i` follows class `i mod classes`'s ODE, guided by
    /// `guidance` (1: none).
    pub(super) fn new(
        ode: &Denoiser,
        student: &cm_core::NoiseRange,
        seed: u64,
        classes: Option<usize>,
        guidance: f64,
    ) -> Result<Self> {
        let grid = OdeSolver::Heun.grid(NFE, &ode.range);
        let chosen = jump_levels(&grid, student, LEVELS).map_err(anyhow::Error::msg)?;
        let device = device_of(ode);
        let noise = Noise::new(seed);
        let (mut kept, mut state) = (Vec::new(), 0);
        let classes = classes.map(|k| (0..ROWS).map(|i| i % k).collect::<Vec<_>>());
        let rows = Rows::new(&noise, 0, ROWS).with_classes(classes.as_deref()).with_guidance(guidance);
        let origin = Plan::heun(NFE)
            .run(ode, rows, &device, |x| {
                if chosen.contains(&state) {
                    kept.push(x.clone());
                }
                state += 1;
            })
            .map_err(anyhow::Error::msg)?;
        let states = kept.into_iter().map(host).collect::<Result<Vec<_>>>()?;
        Ok(Self {
            sigmas: chosen.iter().map(|&i| grid[i]).collect(),
            states,
            origin: host(origin)?,
            dim: ode.dim(),
            classes,
        })
    }

    /// `model`'s one-step jump from each level's states: its RMS distance to the origin, per level.
    pub(super) fn measure(&self, model: &Denoiser) -> Result<Vec<f64>> {
        let device = device_of(model);
        let labels = match &self.classes {
            Some(c) => {
                let rows: Vec<Option<usize>> = c.iter().map(|&c| Some(c)).collect();
                Some(one_hot(&rows, model.classes(), &device).map_err(anyhow::Error::msg)?)
            }
            None => None,
        };
        self.states
            .iter()
            .zip(&self.sigmas)
            .map(|(x, &sigma)| {
                let x = rows(x, ROWS, self.dim, &device);
                let jump = host(model.forward_labelled(x, &[sigma], labels.as_ref()))?;
                Ok(rms_distance(&jump, &self.origin))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On the bundled conditional pair: a probe with classes follows each class's ODE (its origins are
    /// not the no-class ones), guidance moves them again, and the student jumps with each row's class,
    /// landing nearer that class's origin than it does asked for no class.
    #[test]
    fn a_conditional_probe_follows_each_class_and_its_guidance() {
        let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../www/models");
        let device = burn::prelude::Device::flex();
        let teacher = crate::io::load_model_dir(&models.join("mnist-trigflow-cond"), &device).unwrap();
        let student = crate::io::load_model_dir(&models.join("mnist-sct-cond"), &device).unwrap();
        let (t, range) = (&teacher.denoiser, &student.denoiser.range);
        let plain = Probe::new(t, range, 0, None, 1.0).unwrap();
        let each = Probe::new(t, range, 0, Some(10), 1.0).unwrap();
        let guided = Probe::new(t, range, 0, Some(10), 1.5).unwrap();
        assert_eq!(each.classes.as_deref().map(|c| c[..3].to_vec()), Some(vec![0, 1, 2]));
        assert_ne!(plain.origin, each.origin, "the classes reach the ODE");
        assert_ne!(each.origin, guided.origin, "the guidance reaches the ODE");
        let unlabelled = Probe {
            sigmas: each.sigmas.clone(),
            states: each.states.clone(),
            origin: each.origin.clone(),
            dim: each.dim,
            classes: None,
        };
        let (with, without) =
            (each.measure(&student.denoiser).unwrap()[0], unlabelled.measure(&student.denoiser).unwrap()[0]);
        assert!(with < without, "from sigma_max, with its class {with} vs none {without}");
    }
}
