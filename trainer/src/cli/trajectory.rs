//! `cm trajectory`: the consistency property, measured. A diffusion model's PF-ODE trajectories and,
//! from states on them, its own denoised estimate and a consistency model's one-step jump (core's
//! [`Model::ode_jumps`]): how far each lands from the trajectory's origin, level by level, and for
//! images a strip to look at (the page's educators' view of image models, as a file).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use cm_core::host::{squared_distance, state_display_scale};
use cm_core::loaded::MAX_JUMP_LEVELS;
use cm_core::rng::Noise;
use cm_core::{OdeJumps, Plan, Rows};
use serde_json::json;

use super::sample::class_pick;
use super::{MAX_POINTS, at_most};
use crate::backend::Backend;
use crate::eval::{ClassPick, chunk, host};
use crate::io::{grid_png, grid_zoom, load_model_dir, write_atomic};

#[derive(clap::Args)]
pub struct Args {
    /// The consistency model whose jumps are measured.
    #[arg(long)]
    model: PathBuf,
    /// The model whose PF-ODE gives the trajectories: a diffusion model (its teacher, usually), or any
    /// model whose output is a denoiser (an sCT/sCD model is a TrigFlow denoiser too).
    #[arg(long)]
    teacher: PathBuf,
    /// The teacher's Heun evaluations per trajectory.
    #[arg(long, value_parser = at_most(999, "network evaluations"), allow_negative_numbers = true, default_value = "35")]
    nfe: u64,
    /// States of each trajectory to jump from, spread over the teacher's grid (fewer where the grid, or
    /// the model's noise range, has fewer).
    #[arg(long, value_parser = at_most(MAX_JUMP_LEVELS as u64, "levels"), allow_negative_numbers = true, default_value = "8")]
    levels: u64,
    /// Trajectories measured.
    #[arg(long, value_parser = at_most(MAX_POINTS, "trajectories"), allow_negative_numbers = true, default_value = "256")]
    n: u64,
    #[arg(long, allow_negative_numbers = true, default_value = "0")]
    seed: u64,
    /// Class-conditional models: the class of every trajectory, by number or name, `each` (trajectory
    /// `i` of class `i mod classes`) or `none` (no class). Default: `each` where the model takes the
    /// teacher's classes, else none.
    #[arg(long)]
    class: Option<String>,
    /// Class-conditional teachers: classifier-free guidance weight w of the teacher's ODE (1: none), as
    /// for a model distilled from that guided ODE (`[teacher] guidance`).
    #[arg(long, allow_negative_numbers = true, default_value = "1")]
    guidance: f64,
    /// Image models: a PNG strip of the first --show trajectories, three rows each (the ODE state at
    /// each level scaled to the data's spread, the teacher's denoised estimate, the jump), the
    /// trajectory's origin last in each row.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Trajectories drawn in --out.
    #[arg(long, value_parser = at_most(64, "trajectories drawn"), allow_negative_numbers = true, default_value = "4")]
    show: u64,
    #[arg(long, value_enum, default_value = "cpu")]
    backend: Backend,
}

/// Measures, prints the report as JSON, and writes the strip.
pub fn run(a: Args) -> Result<()> {
    if let Some(out) = &a.out
        && !out.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"))
    {
        bail!("--out {}: the strip is written as .png; the numbers go to stdout as JSON", out.display());
    }
    let device = a.backend.device()?;
    let student = load_model_dir(&a.model, &device)?;
    let teacher = load_model_dir(&a.teacher, &device)?;
    let shape = student.image_shape();
    if a.out.is_some() && shape.is_none() {
        bail!(
            "--out: {} is a 2D model; a strip is drawn for image models (the page draws 2D paths)",
            a.model.display()
        );
    }
    // Each chosen level keeps the state, the denoised estimate and the jump of every trajectory.
    super::check_sample_memory(a.n, student.dim(), 3 * a.levels + 2)?;
    let (n, d) = (a.n as usize, student.dim());
    // Only a strip that is written is kept (at most 64 trajectories: 3 x 64 rows of images).
    let show = if a.out.is_some() { (a.show as usize).min(n) } else { 0 };
    let noise = Noise::new(a.seed);
    let k = teacher.denoiser.classes();
    let pick = match &a.class {
        None if k > 0 && student.denoiser.classes() == k => ClassPick::Balanced,
        None => ClassPick::Unconditional,
        Some(name) => {
            class_pick(&teacher.card, name).map_err(|e| anyhow::anyhow!("{}: {e}", a.teacher.display()))?
        }
    };
    if a.guidance != 1.0 && pick.rows(k, 0, 1).is_none() {
        let why = if k == 0 {
            format!("{} is not class-conditional", teacher.name())
        } else if student.denoiser.classes() != k {
            format!(
                "{} does not take {}'s classes, so its jumps are measured with none",
                student.name(),
                teacher.name()
            )
        } else {
            "--class none asks for none".to_string()
        };
        bail!(
            "--guidance {}: guidance pushes each trajectory toward its class, and these have none ({why})",
            a.guidance
        );
    }
    // Per level: summed squares of jump - origin and of denoised - origin, over every value.
    let mut sigmas = Vec::new();
    let (mut jump_sq, mut denoised_sq): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    let mut strip: Vec<Vec<f32>> = Vec::new();
    let step = chunk(&teacher.denoiser);
    for first in (0..n).step_by(step) {
        let rows = step.min(n - first);
        let classes = pick.rows(k, first, rows);
        let r = Rows::new(&noise, first, rows).with_classes(classes.as_deref()).with_guidance(a.guidance);
        let r = teacher
            .ode_jumps(&student, a.nfe as usize, a.levels as usize, r, &device)
            .map_err(|e| anyhow::anyhow!("cm trajectory: {e}"))?;
        let OdeJumps { sigmas: s, states, denoised, jumps, origin } = r;
        let origin = host(origin)?;
        if origin.iter().any(|v| !v.is_finite()) {
            bail!("cm trajectory: {}'s ODE produced non-finite values", teacher.name());
        }
        if first == 0 {
            sigmas = s.clone();
            jump_sq.resize(s.len(), 0.0);
            denoised_sq.resize(s.len(), 0.0);
        }
        let kept = show.saturating_sub(first).min(rows) * d;
        let mut state_rows = Vec::new();
        let mut denoised_rows = Vec::new();
        let mut jump_rows = Vec::new();
        for (l, ((x, dn), j)) in states.into_iter().zip(denoised).zip(jumps).enumerate() {
            let (dn, j) = (host(dn)?, host(j)?);
            jump_sq[l] += squared_distance(&j, &origin);
            denoised_sq[l] += squared_distance(&dn, &origin);
            if kept > 0 {
                let scale = state_display_scale(s[l], teacher.denoiser.range.sigma_data) as f32;
                state_rows.push(host(x)?[..kept].iter().map(|v| v * scale).collect::<Vec<_>>());
                denoised_rows.push(dn[..kept].to_vec());
                jump_rows.push(j[..kept].to_vec());
            }
        }
        // Strip rows: per trajectory, states / denoised / jumps across the levels, then the origin.
        for i in 0..kept / d.max(1) {
            for block in [&state_rows, &denoised_rows, &jump_rows] {
                let mut row = Vec::with_capacity((block.len() + 1) * d);
                for level in block.iter() {
                    row.extend_from_slice(&level[i * d..(i + 1) * d]);
                }
                row.extend_from_slice(&origin[i * d..(i + 1) * d]);
                strip.push(row);
            }
        }
    }
    let values = (n * d) as f64;
    let jump: Vec<f64> = jump_sq.iter().map(|s| (s / values).sqrt()).collect();
    let denoised: Vec<f64> = denoised_sq.iter().map(|s| (s / values).sqrt()).collect();
    if jump.iter().chain(&denoised).any(|v| !v.is_finite()) {
        bail!("cm trajectory: {} or {} produced non-finite values", student.name(), teacher.name());
    }
    if let (Some(out), Some(shape)) = (&a.out, shape) {
        let pixels: Vec<f32> = strip.concat();
        write_atomic(out, &grid_png(&pixels, shape, sigmas.len() + 1, grid_zoom(shape)))
            .with_context(|| format!("writing {}", out.display()))?;
    }
    let levels: Vec<_> = sigmas
        .iter()
        .zip(jump.iter().zip(&denoised))
        .map(|(s, (j, dn))| json!({"sigma": s, "jump_rms": j, "denoised_rms": dn}))
        .collect();
    let report = json!({
        "model": student.name(),
        "teacher": teacher.name(),
        "nfe": Plan::heun(a.nfe as usize).nfe(),
        "trajectories": n,
        "seed": a.seed,
        "classes": match pick {
            ClassPick::Balanced if k > 0 => json!("each"),
            ClassPick::One(c) => json!(teacher.card.class_name(c)),
            _ => json!(null),
        },
        "guidance": a.guidance,
        "levels": levels,
        "mean_jump_rms": jump.iter().sum::<f64>() / jump.len().max(1) as f64,
        "mean_denoised_rms": denoised.iter().sum::<f64>() / denoised.len().max(1) as f64,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
