//! A loaded model: its card and its denoiser, and everything a caller asks of it. The one place that
//! says whether a model is sampled by consistency jumps or by the PF-ODE, that turns a user's tau
//! request into a checked [`Taus`], and that samples ([`Plan`]: one step, `k` steps or a teacher's
//! ODE), edits and interpolates. `cm sample/eval/edit/bench`, the evaluator and the page's wasm API
//! all go through [`Model`] (or, inside a training run where no card exists yet, through [`Plan`]).

use burn::prelude::*;

use crate::card::{Method, ModelCard};
use crate::edit::{Edit, interpolate};
use crate::model::{Denoiser, Guided, check_guidance, one_hot};
use crate::param::{NoiseRange, Parameterisation};
use crate::rng::Noise;
use crate::sample::{OdeSolver, check_taus, consistency_sample, ode_sample};

/// A list of intermediate noise levels that passed the one rule ([`check_taus`]) for one noise range
/// and one start level (`sigma_max` for sampling, an edit's start level for editing).
#[derive(Clone, Debug, PartialEq)]
pub struct Taus {
    list: Vec<f64>,
    start: f64,
}

impl Taus {
    /// Checks `list` against `range` and the level the chain starts from.
    pub fn new(list: Vec<f64>, range: &NoiseRange, start: f64) -> Result<Self, String> {
        if list.len() >= MAX_CONSISTENCY_STEPS {
            return Err(format!(
                "{} taus: expected at most {} ({MAX_CONSISTENCY_STEPS} steps)",
                list.len(),
                MAX_CONSISTENCY_STEPS - 1
            ));
        }
        check_taus(&list, range, start)?;
        Ok(Self { list, start })
    }

    pub fn as_slice(&self) -> &[f64] {
        &self.list
    }

    /// The level the list was checked below.
    pub fn start(&self) -> f64 {
        self.start
    }

    /// Network evaluations of a chain through this list: the first jump and one per `tau`.
    pub fn nfe(&self) -> usize {
        self.list.len() + 1
    }
}

/// Which samples: rows `first..first + n` of the streams of seed `noise`, and for a class-conditional
/// model the class of each (`classes[i]` for row `first + i`; none: no class) and, when it is sampled by
/// its PF-ODE, the classifier-free guidance weight (`model::Guided`; 1: none). Row `i` is the same
/// whatever the batch it is drawn in, so a caller may draw in chunks.
#[derive(Clone, Copy)]
pub struct Rows<'a> {
    pub noise: &'a Noise,
    pub first: usize,
    pub n: usize,
    pub classes: Option<&'a [usize]>,
    pub guidance: f64,
}

impl<'a> Rows<'a> {
    pub fn new(noise: &'a Noise, first: usize, n: usize) -> Self {
        Self { noise, first, n, classes: None, guidance: 1.0 }
    }

    /// The same rows, each drawn from its class in `classes` (one per row) where given, else with no class.
    pub fn with_classes(self, classes: Option<&'a [usize]>) -> Self {
        Self { classes, ..self }
    }

    /// The same rows with classifier-free guidance `w` along the PF-ODE (needs classes).
    pub fn with_guidance(self, guidance: f64) -> Self {
        Self { guidance, ..self }
    }

    /// The rows' classes as one-hot rows for `denoiser`, checked: one class per row, each in range, and
    /// only for a class-conditional model.
    pub fn labels(&self, denoiser: &Denoiser, device: &Device) -> Result<Option<Tensor<2>>, String> {
        let Some(classes) = self.classes else { return Ok(None) };
        let k = denoiser.classes();
        if k == 0 {
            return Err("this model is not class-conditional: it takes no class".into());
        }
        if classes.len() != self.n {
            return Err(format!("{} classes given for {} samples (one per sample)", classes.len(), self.n));
        }
        let labels: Vec<Option<usize>> = classes.iter().map(|&c| Some(c)).collect();
        one_hot(&labels, k, device).map(Some)
    }
}

/// Which tau list a caller wants.
#[derive(Clone, Debug, PartialEq)]
pub enum TauRequest {
    /// The model's default list for this many steps (sampling), or its edit default (editing).
    Default { steps: usize },
    /// The caller's own list, checked by the one rule.
    Given(Vec<f64>),
}

impl TauRequest {
    /// `given` when there is one, else the default for `steps` steps.
    pub fn or_default(given: Option<Vec<f64>>, steps: usize) -> Self {
        given.map_or(Self::Default { steps }, Self::Given)
    }
}

/// How to sample.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Consistency sampling through a checked tau list (CM Algorithm 1).
    Consistency(Taus),
    /// The PF-ODE with `solver` on EDM's grid for `nfe` evaluations (EDM Algorithm 1).
    Ode { solver: OdeSolver, nfe: usize },
}

impl Plan {
    /// Heun at `nfe` evaluations: how diffusion teachers are sampled by default.
    pub fn heun(nfe: usize) -> Self {
        Plan::Ode { solver: OdeSolver::Heun, nfe }
    }

    /// How a model of `method` is shown when no sampler is asked for (training previews, quick
    /// metrics): one consistency step, or Heun at 35 NFE for a diffusion model (the one rule).
    pub fn preview(method: Method, range: &NoiseRange) -> Self {
        if method.is_diffusion() {
            Plan::heun(35)
        } else {
            Plan::Consistency(Taus { list: Vec::new(), start: range.sigma_max })
        }
    }

    /// Network evaluations per sample (Heun's grid rounds `nfe` to whole steps: 35 -> 35, 36 -> 35).
    pub fn nfe(&self) -> usize {
        match self {
            Plan::Consistency(taus) => taus.nfe(),
            Plan::Ode { solver, nfe } => solver.nfe(solver.steps_for_nfe(*nfe)),
        }
    }

    /// `rows` drawn from `denoiser` by this plan; `on_step` sees every state of an ODE path, the start
    /// included. Callers that hold a card go through [`Model::sample`], which first checks that the
    /// plan suits the model.
    pub fn run(
        &self,
        denoiser: &Denoiser,
        rows: Rows,
        device: &Device,
        on_step: impl FnMut(&Tensor<2>),
    ) -> Result<Tensor<2>, String> {
        let labels = rows.labels(denoiser, device)?;
        let Rows { noise, first, n, guidance, .. } = rows;
        check_guidance(guidance)?;
        if guidance != 1.0 && denoiser.classes() == 0 {
            return Err(format!(
                "guidance {guidance}: this model is not class-conditional, so it has nothing to guide"
            ));
        }
        if guidance != 1.0 && labels.is_none() {
            return Err(format!(
                "guidance {guidance} needs a class for every sample: it pushes each toward its class"
            ));
        }
        match self {
            Plan::Consistency(_) if guidance != 1.0 => Err(format!(
                "guidance {guidance} applies to sampling a diffusion model by its ODE; a consistency model \
                 distilled from a guided teacher has its guidance built in"
            )),
            Plan::Consistency(taus) => {
                consistency_sample(denoiser, labels.as_ref(), noise, first, n, taus.as_slice(), device)
            }
            Plan::Ode { solver, nfe } => {
                if *nfe == 0 {
                    return Err("an ODE sampler needs at least 1 network evaluation".into());
                }
                Ok(ode_sample(
                    denoiser,
                    Guided { labels: labels.as_ref(), guidance },
                    noise,
                    first..first + n,
                    *solver,
                    *nfe,
                    device,
                    on_step,
                ))
            }
        }
    }
}

/// What an edit returns: the inputs it started from (the noisy references of denoising, else the
/// reference itself, one row per result) and the results.
pub struct Edited {
    pub inputs: Vec<f32>,
    pub results: Tensor<2>,
}

/// One seed's PF-ODE trajectories of a diffusion model and, from states on them, a consistency model's
/// one-step jumps: the consistency property made visible (CM §3: `f(x_sigma, sigma)` is the same point,
/// the trajectory's origin, for every `sigma` on one trajectory). Every tensor is `[n, D]`.
#[derive(Debug)]
pub struct OdeJumps {
    /// The levels of the chosen states, decreasing, each inside the consistency model's range.
    pub sigmas: Vec<f64>,
    /// The ODE's state `x_sigma` at each chosen level.
    pub states: Vec<Tensor<2>>,
    /// The diffusion model's denoised estimate `D(x_sigma, sigma)` at each: the mean of the data given
    /// `x_sigma`, blurred where `sigma` is large.
    pub denoised: Vec<Tensor<2>>,
    /// The consistency model's jump `f(x_sigma, sigma)` from each: ideally the origin, every time.
    pub jumps: Vec<Tensor<2>>,
    /// The trajectory's end at `sigma = 0` (the same rows as sampling the diffusion model by its ODE).
    pub origin: Tensor<2>,
}

/// At most this many network evaluations in one PF-ODE solve (EDM's ablations go to 511; DDPM's
/// sampler takes 1000), so a mistyped count is an error, not a runaway allocation.
pub const MAX_NFE: usize = 10_000;

/// At most this many steps of consistency sampling from a default tau list (multistep sampling
/// gains little after a handful; each step is one network evaluation).
pub const MAX_CONSISTENCY_STEPS: usize = 1_000;

/// At most this many levels in one [`OdeJumps`] (a page strip or a report table, not a sweep).
pub const MAX_JUMP_LEVELS: usize = 64;

/// Which states of a PF-ODE grid (decreasing, ending at 0) a consistency model of noise range `range`
/// jumps from: up to `levels` of the states above 0 inside `range`, spread evenly over them by index, the
/// first and the last included (all of them where there are fewer).
pub fn jump_levels(grid: &[f64], range: &NoiseRange, levels: usize) -> Result<Vec<usize>, String> {
    if !(1..=MAX_JUMP_LEVELS).contains(&levels) {
        return Err(format!("levels must be 1 to {MAX_JUMP_LEVELS}, got {levels}"));
    }
    // A relative margin so a level printed from the same range (8e1 vs 80.000001) still counts.
    let inside = |s: f64| s >= range.sigma_min * (1.0 - 1e-6) && s <= range.sigma_max * (1.0 + 1e-6);
    let eligible: Vec<usize> = (0..grid.len()).filter(|&i| grid[i] > 0.0 && inside(grid[i])).collect();
    if eligible.is_empty() {
        return Err(format!(
            "no level of the grid ({:.3}..{:.3}) lies in the noise range {}..{}",
            grid.first().copied().unwrap_or(0.0),
            grid.iter().rev().find(|&&s| s > 0.0).copied().unwrap_or(0.0),
            range.sigma_min,
            range.sigma_max
        ));
    }
    let take = levels.min(eligible.len());
    if take == 1 {
        return Ok(vec![eligible[0]]);
    }
    Ok((0..take).map(|k| eligible[(k * (eligible.len() - 1) + (take - 1) / 2) / (take - 1)]).collect())
}

/// A model card and the denoiser built from its weights.
pub struct Model {
    pub card: ModelCard,
    pub denoiser: Denoiser,
}

impl Model {
    pub fn new(card: ModelCard, denoiser: Denoiser) -> Self {
        Self { card, denoiser }
    }

    pub fn name(&self) -> &str {
        &self.card.name
    }

    /// The one answer to "consistency model or diffusion model?", by training method
    /// ([`ModelCard::is_consistency`]): consistency models sample by jumps and edit; diffusion models
    /// (EDM, TrigFlow teachers) sample by the PF-ODE.
    pub fn is_consistency(&self) -> bool {
        self.card.is_consistency()
    }

    /// Whether the network's output is a denoiser, so its PF-ODE can be solved: every model but a
    /// CM-parameterised one (an sCT/sCD model is a TrigFlow denoiser too; sCM §3).
    pub fn has_ode(&self) -> bool {
        self.denoiser.parameterisation != Parameterisation::Consistency
    }

    /// Data dimension `D`.
    pub fn dim(&self) -> usize {
        self.denoiser.dim()
    }

    /// `[C, H, W]` for image models, `None` for points.
    pub fn image_shape(&self) -> Option<[usize; 3]> {
        self.denoiser.image_shape()
    }

    /// The tau list for sampling: the default for `steps` steps (the card's tuned list where it has
    /// one, else around iCT's 0.821 or sCM's `t_mid`), or a given list checked by the one rule.
    pub fn taus(&self, request: TauRequest) -> Result<Taus, String> {
        self.consistency_only("consistency sampling")?;
        let range = &self.denoiser.range;
        match request {
            TauRequest::Default { steps } if steps > MAX_CONSISTENCY_STEPS => {
                Err(format!("{steps} consistency steps: expected at most {MAX_CONSISTENCY_STEPS}"))
            }
            TauRequest::Default { steps } => {
                let list = match self.card.tuned_taus(steps) {
                    Some(tuned) => tuned.to_vec(),
                    None => self.denoiser.default_taus(steps),
                };
                Taus::new(list, range, range.sigma_max)
            }
            TauRequest::Given(list) => Taus::new(list, range, range.sigma_max),
        }
    }

    /// A consistency plan from a tau request (see [`taus`](Self::taus)).
    pub fn consistency_plan(&self, request: TauRequest) -> Result<Plan, String> {
        Ok(Plan::Consistency(self.taus(request)?))
    }

    /// An ODE plan, refused for a model that is not a denoiser and for an evaluation count outside
    /// `1..=`[`MAX_NFE`].
    pub fn ode_plan(&self, solver: OdeSolver, nfe: usize) -> Result<Plan, String> {
        if !(1..=MAX_NFE).contains(&nfe) {
            return Err(format!("{nfe} network evaluations: expected 1 to {MAX_NFE}"));
        }
        if !self.has_ode() {
            return Err(format!(
                "{} is a consistency model (CM parameterisation): it has no PF-ODE to solve",
                self.name()
            ));
        }
        Ok(Plan::Ode { solver, nfe })
    }

    /// `rows` by `plan`, after checking the plan suits this model.
    pub fn sample(&self, plan: &Plan, rows: Rows, device: &Device) -> Result<Tensor<2>, String> {
        self.sample_path(plan, rows, device, |_| {})
    }

    /// [`sample`](Self::sample), with `on_step` seeing every state of an ODE path (trajectories).
    pub fn sample_path(
        &self,
        plan: &Plan,
        rows: Rows,
        device: &Device,
        on_step: impl FnMut(&Tensor<2>),
    ) -> Result<Tensor<2>, String> {
        match plan {
            Plan::Consistency(_) => self.consistency_only("consistency sampling")?,
            Plan::Ode { solver, nfe } => {
                self.ode_plan(*solver, *nfe)?;
            }
        }
        plan.run(&self.denoiser, rows, device, on_step)
    }

    /// The tau list of `edit`: its default (the model's 4-step list below the start level) or a given
    /// list, checked below the edit's start level.
    pub fn edit_taus(&self, edit: &Edit, request: TauRequest) -> Result<Taus, String> {
        self.consistency_only("editing")?;
        let range = &self.denoiser.range;
        let start = edit.start.level(range);
        let list = match request {
            TauRequest::Default { .. } => edit.default_taus(&self.denoiser),
            TauRequest::Given(list) => list,
        };
        Taus::new(list, range, start)
    }

    /// Runs `edit` on the clean reference image `y` (`[D]`): `n` results, each with its own noise rows of
    /// `seed`, and for a class-conditional model each of its class in `classes` where given (one per
    /// result: "fill this in as a 7"; none: no class, the model's label-dropout branch). Denoising first
    /// adds seeded noise of its level to each row ([`Edit::inputs`]), so the page and `cm edit` start from
    /// the same noisy images for the same seed.
    #[allow(clippy::too_many_arguments)]
    pub fn edit(
        &self,
        edit: &Edit,
        y: &[f32],
        n: usize,
        classes: Option<&[usize]>,
        taus: &Taus,
        seed: u64,
        device: &Device,
    ) -> Result<Edited, String> {
        self.consistency_only("editing")?;
        let d = self.dim();
        if y.len() != d {
            return Err(format!("the image has {} values, {} expects {d}", y.len(), self.name()));
        }
        edit.validate(&self.denoiser, taus.as_slice())?;
        let n = n.max(1);
        let noise = Noise::new(seed);
        let labels = Rows::new(&noise, 0, n).with_classes(classes).labels(&self.denoiser, device)?;
        let inputs = edit.inputs(y, n, &noise);
        let rows = crate::host::rows(&inputs, n, d, device);
        let results = edit.run(&self.denoiser, rows, labels.as_ref(), taus.as_slice(), &noise, 0);
        Ok(Edited { inputs, results })
    }

    /// `n >= 2` samples along the spherical path between the noises of seeds `a` and `b` (CM §6), of
    /// `classes` where given (one per sample, as [`Rows`]).
    pub fn interpolate(
        &self,
        a: u64,
        b: u64,
        n: usize,
        classes: Option<&[usize]>,
        taus: &Taus,
        device: &Device,
    ) -> Result<Tensor<2>, String> {
        self.consistency_only("interpolation")?;
        let range = &self.denoiser.range;
        check_taus(taus.as_slice(), range, range.sigma_max)?;
        if n < 2 {
            return Err(format!("an interpolation draws at least 2 images (its two ends), {n} asked"));
        }
        let noise = Noise::new(a);
        let labels = Rows::new(&noise, 0, n).with_classes(classes).labels(&self.denoiser, device)?;
        Ok(interpolate(&self.denoiser, labels.as_ref(), a, b, n, taus.as_slice(), device))
    }

    /// Solves this model's PF-ODE (Heun, `nfe` evaluations) for `rows` and, at up to `levels` states of
    /// the trajectory spread evenly over its grid (fewer where the grid or `student`'s range has fewer) (the first and the last state above 0 included; only
    /// levels inside `student`'s noise range), takes this model's denoised estimate and `student`'s
    /// one-step jump. Rows with classes follow each class's ODE (guided where `rows` say, as in
    /// [`Plan::run`]): the denoised estimate is the guided one, and `student`, which must take the same
    /// classes, jumps with each row's class (a student distilled from the guided teacher lands on the
    /// guided ODE's origin). The first state is `sigma_max z`, so where both models share `sigma_max` the first
    /// jump is `student`'s one-step sample of the same rows (exactly for EDM- and CM-form students; a
    /// TrigFlow student samples from `sqrt(sigma_max^2 + sigma_data^2) z`, 2e-5 further out at 80).
    pub fn ode_jumps(
        &self,
        student: &Model,
        nfe: usize,
        levels: usize,
        rows: Rows,
        device: &Device,
    ) -> Result<OdeJumps, String> {
        let plan = self.ode_plan(OdeSolver::Heun, nfe)?;
        if !student.is_consistency() {
            return Err(format!(
                "{} is a diffusion model ({}): the jumps are a consistency model's; a diffusion model gives the trajectories",
                student.name(),
                student.card.method.name()
            ));
        }
        if student.image_shape() != self.image_shape()
            || student.dim() != self.dim()
            || student.card.dataset != self.card.dataset
        {
            return Err(format!(
                "{} ({}, {} values per sample) and {} ({}, {}) do not model the same data",
                student.name(),
                student.card.dataset,
                student.dim(),
                self.name(),
                self.card.dataset,
                self.dim()
            ));
        }
        let labels = rows.labels(&self.denoiser, device)?;
        if labels.is_some() && student.denoiser.classes() != self.denoiser.classes() {
            return Err(format!(
                "{} takes {} classes and {} takes {}: the jumps of a class need a student of the same classes",
                self.name(),
                self.denoiser.classes(),
                student.name(),
                student.denoiser.classes()
            ));
        }
        let guided = Guided { labels: labels.as_ref(), guidance: rows.guidance };
        let grid = OdeSolver::Heun.grid(nfe, &self.denoiser.range);
        let chosen = jump_levels(&grid, &student.denoiser.range, levels).map_err(|e| {
            format!("{}'s {nfe}-evaluation ODE grid and {}: {e}", self.name(), student.name())
        })?;
        let take = chosen.len();
        let mut states = Vec::with_capacity(take);
        let mut state = 0;
        let origin = self.sample_path(&plan, rows, device, |x| {
            if chosen.contains(&state) {
                states.push(x.clone());
            }
            state += 1;
        })?;
        if state != grid.len() {
            return Err(format!(
                "the ODE of {} saw {state} states, its grid has {}",
                self.name(),
                grid.len()
            ));
        }
        let sigmas: Vec<f64> = chosen.iter().map(|&i| grid[i]).collect();
        let denoised = states
            .iter()
            .zip(&sigmas)
            .map(|(x, &s)| guided.denoise(&self.denoiser, x.clone(), &[s]))
            .collect();
        let jumps = (states.iter().zip(&sigmas))
            .map(|(x, &s)| student.denoiser.forward_labelled(x.clone(), &[s], labels.as_ref()))
            .collect();
        Ok(OdeJumps { sigmas, states, denoised, jumps, origin })
    }

    /// Refuses a diffusion model for `what`, saying what to use instead.
    fn consistency_only(&self, what: &str) -> Result<(), String> {
        if self.is_consistency() {
            return Ok(());
        }
        Err(format!(
            "{} is a diffusion model ({}): {what} needs a consistency model; sample it with an ODE solver",
            self.name(),
            self.card.method.name()
        ))
    }
}
