//! `cm sample`: samples of a model folder to `.npy`, `.csv` or `.png`, through core's [`cm_core::Model`].

use std::path::PathBuf;

use anyhow::{Result, bail};
use cm_core::TauRequest;
use cm_core::sample::OdeSolver;

use super::{Output, TauList, check_sample_memory, positive, tau_list};
use crate::backend::Backend;
use crate::eval::{ClassPick, model_points_of};
use crate::io::{Format, load_model_dir, write_samples};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    model: PathBuf,
    /// Consistency steps (uses the default tau list for that many steps).
    #[arg(long, value_parser = positive, allow_negative_numbers = true, default_value = "1")]
    steps: u64,
    /// Explicit decreasing tau list (overrides --steps): e.g. 0.821 or 5,0.821.
    #[arg(long, value_parser = tau_list, allow_negative_numbers = true)]
    taus: Option<TauList>,
    /// Sample a diffusion model with this many network evaluations.
    #[arg(long, value_parser = positive, allow_negative_numbers = true)]
    teacher_nfe: Option<u64>,
    /// ODE solver for --teacher-nfe.
    #[arg(long, value_enum, default_value = "heun")]
    solver: Solver,
    /// Class-conditional models: draw every sample from this class, by number or by name (`3`, `Sneaker`),
    /// `each` (sample `i` from class `i mod classes`, the default) or `none` for no class.
    #[arg(long)]
    class: Option<String>,
    /// Class-conditional diffusion models (--teacher-nfe): classifier-free guidance weight w of the ODE,
    /// `D + w (D_c - D)` (1: none, 0: no class).
    #[arg(long, allow_negative_numbers = true, default_value = "1")]
    guidance: f64,
    #[command(flatten)]
    output: Output,
    #[arg(long, value_enum, default_value = "cpu")]
    backend: Backend,
}

/// The PF-ODE solvers `--solver` names.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Solver {
    Euler,
    Heun,
}

/// Samples the model by the plan the flags name and writes them.
pub fn run(a: Args) -> Result<()> {
    Format::of(&a.output.out, Format::ALL, "--out")?;
    let model = load_model_dir(&a.model, &a.backend.device()?)?;
    check_sample_memory(a.output.n, model.dim(), 1)?;
    let plan = match a.teacher_nfe {
        Some(nfe) => {
            let solver = match a.solver {
                Solver::Euler => OdeSolver::Euler,
                Solver::Heun => OdeSolver::Heun,
            };
            model.ode_plan(solver, nfe as usize)
        }
        None if !model.is_consistency() => {
            bail!("{} is a diffusion model: pass --teacher-nfe N (e.g. 35)", model.name())
        }
        None => model.consistency_plan(TauRequest::or_default(a.taus.map(|t| t.0), a.steps as usize)),
    }
    .map_err(|e| anyhow::anyhow!("{}: {e}", a.model.display()))?;
    let pick = match &a.class {
        None => ClassPick::Balanced,
        Some(name) => {
            class_pick(&model.card, name).map_err(|e| anyhow::anyhow!("{}: {e}", a.model.display()))?
        }
    };
    let pts = model_points_of(&model, &plan, a.output.n as usize, a.output.seed, pick, a.guidance)
        .map_err(|e| anyhow::anyhow!("{}: {e:#}", a.model.display()))?;
    write_samples(&a.output.out, &pts, model.dim(), model.image_shape())
}

/// `--class`: a class of the card by number or name (case-insensitive), `each` (every class in turn) or
/// `none`.
pub fn class_pick(card: &cm_core::ModelCard, name: &str) -> Result<ClassPick, String> {
    let k = card.model.architecture.classes();
    if k == 0 {
        return Err(format!("--class {name}: {} is not class-conditional: it takes no class", card.name));
    }
    if name.eq_ignore_ascii_case("none") {
        return Ok(ClassPick::Unconditional);
    }
    if name.eq_ignore_ascii_case("each") {
        return Ok(ClassPick::Balanced);
    }
    let by_name = (0..k).find(|&c| card.class_name(c).eq_ignore_ascii_case(name));
    let by_number = name.parse::<usize>().ok().filter(|&c| c < k);
    by_name.or(by_number).map(ClassPick::One).ok_or_else(|| {
        let names: Vec<String> = (0..k).map(|c| card.class_name(c)).collect();
        format!(
            "--class {name}: expected a class number 0 to {} or one of {names:?}, `each` or `none`",
            k - 1
        )
    })
}
