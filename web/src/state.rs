//! Backend-independent playground state: the loaded models and the page's requests, each turned into a
//! call of core's [`Model`] (the API `cm` uses too). Compiles natively, so it is tested without a browser.
//! Nothing here decides model math; it only maps the page's names and values onto core's types.

use std::collections::BTreeMap;
use std::rc::Rc;

use burn::prelude::*;
use cm_core::edit::{Edit, image_row};
use cm_core::loaded::Edited;
use cm_core::rng::Noise;
use cm_core::sample::OdeSolver;
use cm_core::{Model, ModelCard, OdeJumps, Plan, Rows, TauRequest, Taus};
use serde_json::json;

/// The models the page knows: every card it has read (cheap: a few KB each), and the models whose
/// weights are loaded, on one device. Cards come first so the page can lay out a dataset and load
/// only the weights it shows.
pub struct Playground {
    pub device: Device,
    pub cards: BTreeMap<String, ModelCard>,
    pub models: BTreeMap<String, Rc<Model>>,
}

/// How the page shows one dataset's models: the best consistency model and a teacher side by side
/// first, then the rest for comparison.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Lineup {
    /// The consistency model with the best two-step quality its card records (lowest FID-LeNet for
    /// images, sliced W2 for points).
    pub featured: Option<String>,
    /// The featured model's own teacher (the diffusion model it distils, or whose weights it started
    /// from, by the recipe in its card), else the dataset's diffusion model of the best recorded
    /// 35-NFE quality.
    pub teacher: Option<String>,
    /// Every other model of the dataset: consistency models best first, then other teachers.
    pub others: Vec<String>,
}

/// The most images the page evaluates in one batch (its 64-image grids; a guided teacher's 16 rows run
/// twice).
pub const PAGE_IMAGES: u64 = 64;

/// The working memory a model may need for [`PAGE_IMAGES`] images: a page has at most 4 GiB of wasm
/// memory, and a tab that asks for more dies mid-sample, leaving the app unusable until a reload.
pub const MAX_WORKING_BYTES: u64 = 1 << 30;

/// Parses a card, and refuses an image model whose forward pass would need more than
/// [`MAX_WORKING_BYTES`] for the page's batch (core's estimate: skips, the largest block, attention's
/// `(H W)^2` weights); the error names the file, the memory and the likely cause.
fn page_card(card_json: &str) -> Result<ModelCard, String> {
    let card = ModelCard::from_json(card_json).map_err(|e| format!("config.json: {e}"))?;
    let arch = &card.model.architecture;
    if arch.image_shape().is_some() {
        let per_image = arch.inference_floats_per_row().saturating_mul(4);
        let need = per_image.saturating_mul(PAGE_IMAGES);
        if need > MAX_WORKING_BYTES {
            let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
            return Err(format!(
                "config.json: {} would need about {:.0} MiB of working memory for the page's {PAGE_IMAGES} images ({:.1} MiB each; attention at a fine resolution costs (H W)^2 per image), more than the page's {:.0} MiB",
                card.name,
                mib(need),
                mib(per_image),
                mib(MAX_WORKING_BYTES)
            ));
        }
    }
    Ok(card)
}

impl Playground {
    pub fn new(device: Device) -> Self {
        Self { device, cards: BTreeMap::new(), models: BTreeMap::new() }
    }

    /// Validates a card and keeps it under its name (its weights are loaded later, by [`load_weights`](Self::load_weights)).
    pub fn add_card(&mut self, card_json: &str) -> Result<String, String> {
        let card = page_card(card_json)?;
        let name = card.name.clone();
        self.models.remove(&name);
        self.cards.insert(name.clone(), card);
        Ok(name)
    }

    /// Loads the weights of the card kept under `name`, checked against it.
    pub fn load_weights(&mut self, name: &str, weights: Vec<u8>) -> Result<String, String> {
        let card = self.card(name)?.clone();
        let denoiser =
            card.load(weights, &self.device).map_err(|e| format!("model.safetensors for {name}: {e}"))?;
        self.models.insert(name.to_string(), Rc::new(Model::new(card, denoiser)));
        Ok(name.to_string())
    }

    /// Validates a card and its weights and keeps the model under the card's name; a card or weights
    /// that fail leave what was loaded before as it was.
    pub fn load(&mut self, card_json: &str, weights: Vec<u8>) -> Result<String, String> {
        let card = page_card(card_json)?;
        let denoiser = card
            .load(weights, &self.device)
            .map_err(|e| format!("model.safetensors for {}: {e}", card.name))?;
        let name = card.name.clone();
        self.cards.insert(name.clone(), card.clone());
        self.models.insert(name.clone(), Rc::new(Model::new(card, denoiser)));
        Ok(name)
    }

    pub fn card(&self, name: &str) -> Result<&ModelCard, String> {
        self.cards.get(name).ok_or_else(|| format!("no model card named {name:?} is known"))
    }

    pub fn get(&self, name: &str) -> Result<Rc<Model>, String> {
        self.models.get(name).cloned().ok_or_else(|| format!("no model named {name:?} is loaded"))
    }

    /// The page's views of the known cards, in name order: one per dataset, one more per further image
    /// resolution of a dataset, and one per such view for its class-conditional models (see
    /// [`view`](Self::view)).
    pub fn datasets(&self) -> Vec<String> {
        let set: std::collections::BTreeSet<_> = self.cards.values().map(|c| self.view(c)).collect();
        set.into_iter().collect()
    }

    /// The view a card is shown and ranked in: its dataset (`mnist`), or for an image model whose
    /// dataset also has models at a smaller resolution, the dataset and its side (`mnist-28`). FID-LeNet
    /// at each resolution is measured with that resolution's classifier, so models are ranked only
    /// against models of their own resolution.
    ///
    /// Class-conditional models get a view of their own, `<view>-classes` (`mnist-classes`): their samples
    /// are drawn by class, and they rank against each other.
    pub fn view(&self, card: &ModelCard) -> String {
        let side = |c: &ModelCard| c.model.architecture.image_shape().map(|s| s[2]);
        let smallest = (self.cards.values()).filter(|c| c.dataset == card.dataset).filter_map(side).min();
        let view = match (side(card), smallest) {
            (Some(s), Some(m)) if s > m => format!("{}-{s}", card.dataset),
            _ => card.dataset.clone(),
        };
        if card.model.architecture.classes() > 0 { format!("{view}-classes") } else { view }
    }

    /// How to show the models of a view (a dataset, or a dataset at a further resolution: see
    /// [`view`](Self::view); [`Lineup`]).
    pub fn lineup(&self, view: &str) -> Lineup {
        let of = |consistency: bool| {
            let mut v: Vec<&ModelCard> = (self.cards.values())
                .filter(|c| self.view(c) == view && c.is_consistency() == consistency)
                .collect();
            v.sort_by(|a, b| quality(a).total_cmp(&quality(b)).then(a.name.cmp(&b.name)));
            v.into_iter().map(|c| c.name.clone()).collect::<Vec<_>>()
        };
        let (mut students, mut teachers) = (of(true), of(false));
        let featured = (!students.is_empty()).then(|| students.remove(0));
        let own = featured.as_ref().and_then(|f| self.card(f).ok()).and_then(origin);
        let at = own.and_then(|o| teachers.iter().position(|t| *t == o)).unwrap_or(0);
        let teacher = (!teachers.is_empty()).then(|| teachers.remove(at));
        students.extend(teachers);
        Lineup { featured, teacher, others: students }
    }
}

/// The model folder a card's recipe names as its teacher (`teacher.path`) or starting weights
/// (`init_from`), as the folder's name: the name the page knows that model by.
fn origin(card: &ModelCard) -> Option<String> {
    let config = card.provenance.get("config")?;
    let path = config.get("teacher").and_then(|t| t.get("path")).or_else(|| config.get("init_from"))?;
    let path = path.as_str()?.trim_end_matches('/');
    Some(path.rsplit('/').next()?.to_string())
}

/// The quality a card records for ranking (lower is better; infinite when it records none): FID-LeNet
/// or sliced W2 at two steps for consistency models, at 35 Heun NFE for teachers.
fn quality(card: &ModelCard) -> f64 {
    let keys: &[&str] = if card.is_consistency() {
        &["fid_2step", "sliced_w2_2step"]
    } else {
        &["fid_heun35", "sliced_w2_heun35"]
    };
    keys.iter().find_map(|k| card.metrics.get(*k).copied()).filter(|v| v.is_finite()).unwrap_or(f64::INFINITY)
}

/// What the page shows and decides by, from a card (before or after its weights load): name, dataset,
/// method, whether it is a consistency model (the one rule), the image shape (`null` for points), the
/// parameter count, the training steps, the recorded quality used for ranking, the class names, and the
/// model its recipe distilled from or started at (`teacher`, by folder name: whose ODE its jumps should
/// follow; `null` where the recipe names none).
pub fn facts(card: &ModelCard) -> serde_json::Value {
    json!({
        "name": card.name,
        "dataset": card.dataset,
        "method": card.method.name(),
        "consistency": card.is_consistency(),
        "shape": card.model.architecture.image_shape(),
        "parameters": card.model.architecture.parameters(),
        "steps": card.steps,
        "quality": Some(quality(card)).filter(|q| q.is_finite()),
        "classes": (0..card.model.architecture.classes()).map(|c| card.class_name(c)).collect::<Vec<_>>(),
        "teacher": origin(card),
    })
}

/// Consistency samples `[n, D]` (not yet read back), the same rows as `cm sample` for the seed: the
/// model's default list for `steps` steps, or the user's `taus`; a class-conditional model's drawn from
/// `classes` (one per sample; none: no class). Returns the plan too (its NFE, its taus).
pub fn sample(
    m: &Model,
    steps: usize,
    taus: Option<Vec<f64>>,
    n: usize,
    seed: u64,
    classes: Option<&[usize]>,
    device: &Device,
) -> Result<(Tensor<2>, Plan), String> {
    let plan = m.consistency_plan(TauRequest::or_default(taus, steps))?;
    Ok((m.sample(&plan, Rows::new(&Noise::new(seed), 0, n).with_classes(classes), device)?, plan))
}

/// Heun PF-ODE samples at `nfe` evaluations (any model with a PF-ODE, `Model::has_ode`, as `cm sample
/// --teacher-nfe`); with `trajectory`, every intermediate state too
/// (`steps + 1` tensors `[n, D]`). Returns the plan too (its NFE).
#[allow(clippy::too_many_arguments)]
pub fn teacher(
    m: &Model,
    nfe: usize,
    n: usize,
    seed: u64,
    (classes, guidance): (Option<&[usize]>, f64),
    device: &Device,
    trajectory: bool,
) -> Result<(Tensor<2>, Vec<Tensor<2>>, Plan), String> {
    let plan = m.ode_plan(OdeSolver::Heun, nfe)?;
    let mut path = Vec::new();
    let noise = Noise::new(seed);
    let rows = Rows::new(&noise, 0, n).with_classes(classes).with_guidance(guidance);
    let x = m.sample_path(&plan, rows, device, |x| {
        if trajectory {
            path.push(x.clone())
        }
    })?;
    Ok((x, path, plan))
}

/// The teacher's noise levels for `nfe` Heun evaluations: one per state of a trajectory.
pub fn teacher_sigmas(m: &Model, nfe: usize) -> Vec<f64> {
    OdeSolver::Heun.grid(nfe, &m.denoiser.range)
}

/// At most this many trajectories in the page's ODE-path-vs-jumps strip (each is a row of images).
pub const MAX_JUMP_ROWS: usize = 16;

/// `n` of the teacher's Heun trajectories (`nfe` evaluations, rows of `seed`; of `classes` where given,
/// one per trajectory, with classifier-free guidance `guidance`) and, at `levels` states on them, the
/// teacher's denoised estimate and the consistency model's one-step jump (core's `Model::ode_jumps`, as
/// `cm trajectory`).
#[allow(clippy::too_many_arguments)]
pub fn ode_jumps(
    teacher: &Model,
    student: &Model,
    nfe: usize,
    levels: usize,
    n: usize,
    seed: u64,
    (classes, guidance): (Option<&[usize]>, f64),
    device: &Device,
) -> Result<OdeJumps, String> {
    if !(1..=MAX_JUMP_ROWS).contains(&n) {
        return Err(format!("need 1 to {MAX_JUMP_ROWS} trajectories, got {n}"));
    }
    let noise = Noise::new(seed);
    let rows = Rows::new(&noise, 0, n).with_classes(classes).with_guidance(guidance);
    teacher.ode_jumps(student, nfe, levels, rows, device)
}

/// The model's output for points `x: [n, D]` at one noise level (a consistency model's jump to the
/// trajectory's origin, or a teacher's denoised estimate).
pub fn denoise(m: &Model, x: &[f32], sigma: f64, device: &Device) -> Result<Tensor<2>, String> {
    let d = m.dim();
    if !(x.len().is_multiple_of(d) && sigma > 0.0 && sigma.is_finite()) {
        return Err(format!("need [n, {d}] points and sigma > 0, got {} values and sigma {sigma}", x.len()));
    }
    let t = cm_core::host::rows(x, x.len() / d, d, device);
    Ok(m.denoiser.forward(t, &[sigma]))
}

/// `n` points of a 2D dataset (flattened `[n, 2]`), as `cm data` writes them; with `sigma > 0`, noised
/// by the forward process `x + sigma z` (`z` from stream 0 of the seed's [`Noise`]).
pub fn data(dataset: &str, n: usize, seed: u64, sigma: f64) -> Result<Vec<f32>, String> {
    let d = cm_core::data2d::Dataset2d::from_name(dataset)
        .ok_or_else(|| format!("unknown dataset {dataset:?}"))?;
    let mut points = d.sample(seed, 0, 0, n);
    if sigma > 0.0 {
        let z = Noise::new(seed).normals(0, 0, n, 2);
        points.iter_mut().zip(&z).for_each(|(x, z)| *x += sigma as f32 * z);
    }
    Ok(points)
}

/// An uploaded image (RGBA8 at the model's resolution) as the model's row, by core's map (BT.601
/// luminance for a grey model).
pub fn image(m: &Model, rgba: &[u8]) -> Result<Vec<f32>, String> {
    let [c, h, w] = m.image_shape().ok_or_else(|| format!("{} is not an image model", m.name()))?;
    if rgba.len() != 4 * h * w {
        return Err(format!(
            "need {h}x{w} RGBA pixels ({} bytes) for {}, got {}",
            4 * h * w,
            m.name(),
            rgba.len()
        ));
    }
    image_row(rgba, c)
}

/// Zero-shot edit of the image `y` (`[D]`, values in `[-1, 1]`) by `task` (`inpaint` with `mask` (1 =
/// generate), `colourise`, `super-resolution` by `factor`, `denoise` / `stroke` at `sigma`): `n` results
/// `[n, D]` — for a class-conditional model, result `i` of class `classes[i]` where given (as `cm edit
/// --class`) — and the rows they started from (denoising: `y` plus the seed's noise, as `cm edit
/// denoise`).
#[allow(clippy::too_many_arguments)]
pub fn edit(
    m: &Model,
    task: &str,
    y: &[f32],
    mask: &[f32],
    taus: Option<Vec<f64>>,
    sigma: f64,
    factor: usize,
    n: usize,
    seed: u64,
    classes: Option<&[usize]>,
    device: &Device,
) -> Result<(Edited, Taus), String> {
    let edit = edit_for(task, mask, factor, sigma)?;
    let taus = m.edit_taus(&edit, TauRequest::or_default(taus, 4))?;
    Ok((m.edit(&edit, y, n, classes, &taus, seed, device)?, taus))
}

/// `n` images along the spherical path between the noises of seeds `a` and `b` (CM §6), one step or
/// `taus`, of `classes` where given (one per image).
#[allow(clippy::too_many_arguments)]
pub fn interpolate(
    m: &Model,
    a: u64,
    b: u64,
    n: usize,
    taus: Option<Vec<f64>>,
    classes: Option<&[usize]>,
    device: &Device,
) -> Result<(Tensor<2>, Taus), String> {
    let taus = m.taus(TauRequest::or_default(taus, 1))?;
    Ok((m.interpolate(a, b, n.clamp(2, 256), classes, &taus, device)?, taus))
}

/// The edit a page task names (`inpaint` with `mask` (1 = generate), `colourise`, `super-resolution` by
/// `factor`, `denoise` / `stroke` at `sigma`).
fn edit_for(task: &str, mask: &[f32], factor: usize, sigma: f64) -> Result<Edit, String> {
    Ok(match task {
        "inpaint" => Edit::inpaint(mask.to_vec()),
        "colourise" => Edit::colourise(),
        "super-resolution" => Edit::super_resolution(factor),
        "denoise" => Edit::denoise(sigma),
        "stroke" => Edit::stroke(sigma),
        other => {
            return Err(format!(
                "unknown edit {other:?}: expected inpaint, colourise, super-resolution, denoise or stroke"
            ));
        }
    })
}
