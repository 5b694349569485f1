//! wasm-bindgen exports. Every call returns a Promise; errors become readable JavaScript errors.

use std::cell::RefCell;
use std::rc::Rc;

use burn::prelude::*;
use js_sys::{Float32Array, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use cm_core::{Model, Plan};

use crate::state::{self, Playground};

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

fn now_ms() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map(|p| p.now()).unwrap_or(0.0)
}

async fn read(t: Tensor<2>) -> Result<Vec<f32>, JsValue> {
    t.into_data_async()
        .await
        .map_err(|e| JsValue::from_str(&format!("cannot read tensor: {e:?}")))?
        .try_to_vec::<f32>()
        .map_err(|e| JsValue::from_str(&format!("cannot read tensor: {e:?}")))
}

thread_local! {
    /// burn's wgpu runtime can be initialised once per page; later apps reuse its device.
    static WEBGPU: RefCell<Option<Device>> = const { RefCell::new(None) };
}

async fn webgpu() -> Result<Device, String> {
    if let Some(d) = WEBGPU.with(|w| w.borrow().clone()) {
        return Ok(d);
    }
    let d = Device::wgpu_options().init_async().await.map_err(|e| e.to_string())?;
    WEBGPU.with(|w| *w.borrow_mut() = Some(d.clone()));
    Ok(d)
}

/// The page's handle: one backend, many models.
#[wasm_bindgen]
pub struct App {
    inner: Rc<RefCell<Playground>>,
    backend: String,
    note: String,
}

/// Starts the playground on `prefer` = `"webgpu"`, `"cpu"` or `"auto"` (WebGPU where the browser
/// has an adapter, else the CPU). Resolves to an [`App`].
#[wasm_bindgen]
pub fn create_app(prefer: String) -> Promise {
    future_to_promise(async move {
        let (device, backend, note) = if prefer == "cpu" {
            (Device::flex(), "cpu", "CPU (burn flex, wasm)".to_string())
        } else {
            match webgpu().await {
                Ok(d) => (d, "webgpu", "WebGPU (burn wgpu)".to_string()),
                Err(e) => {
                    web_sys::console::info_1(&format!("cm: WebGPU unavailable: {e}").into());
                    (
                        Device::flex(),
                        "cpu",
                        "CPU (burn flex, wasm) — no WebGPU adapter in this browser".to_string(),
                    )
                }
            }
        };
        Ok(App { inner: Rc::new(RefCell::new(Playground::new(device))), backend: backend.into(), note }
            .into())
    })
}

impl App {
    /// A loaded model and the device to run it on.
    fn loaded(&self, name: &str) -> Result<(Rc<Model>, Device), JsValue> {
        let p = self.inner.borrow();
        Ok((p.get(name).map_err(|e| JsValue::from_str(&e))?, p.device.clone()))
    }

    /// A loaded model, for synchronous calls.
    fn model(&self, name: &str) -> Result<Rc<Model>, JsError> {
        self.inner.borrow().get(name).map_err(|e| JsError::new(&e))
    }
}

#[wasm_bindgen]
impl App {
    /// `"webgpu"` or `"cpu"`.
    pub fn backend(&self) -> String {
        self.backend.clone()
    }

    /// A human-readable line on the backend and why it was chosen.
    pub fn backend_note(&self) -> String {
        self.note.clone()
    }

    /// Loads a model folder's `config.json` text and `model.safetensors` bytes; returns its name.
    pub fn load_model(&self, card_json: &str, weights: Vec<u8>) -> Result<String, JsError> {
        self.inner.borrow_mut().load(card_json, weights).map_err(|e| JsError::new(&e))
    }

    /// Reads and validates a model's `config.json` without its weights; returns its name.
    pub fn add_card(&self, card_json: &str) -> Result<String, JsError> {
        self.inner.borrow_mut().add_card(card_json).map_err(|e| JsError::new(&e))
    }

    /// Loads the `model.safetensors` bytes of a card read by `add_card`.
    pub fn load_weights(&self, name: &str, weights: Vec<u8>) -> Result<String, JsError> {
        self.inner.borrow_mut().load_weights(name, weights).map_err(|e| JsError::new(&e))
    }

    /// Whether the weights of `name` are loaded.
    pub fn is_loaded(&self, name: &str) -> bool {
        self.inner.borrow().models.contains_key(name)
    }

    /// What the page needs to know of a model from its card (`state::facts`): `{name, dataset, method,
    /// consistency, shape, parameters, steps, quality, classes, teacher}` (`teacher`: the model its recipe
    /// distilled from or started at, by name; `null` where it names none).
    pub fn facts(&self, name: &str) -> Result<JsValue, JsError> {
        let text = state::facts(self.inner.borrow().card(name).map_err(|e| JsError::new(&e))?).to_string();
        js_sys::JSON::parse(&text).map_err(|_| JsError::new("facts are JSON"))
    }

    /// The view `name` is shown and ranked in (`state::Playground::view`): its dataset, or its dataset
    /// and side where the dataset has models at a smaller resolution too (`mnist-28`).
    pub fn view(&self, name: &str) -> Result<String, JsError> {
        let inner = self.inner.borrow();
        Ok(inner.view(inner.card(name).map_err(|e| JsError::new(&e))?))
    }

    /// The views of the known cards (datasets, and datasets at further resolutions).
    pub fn datasets(&self) -> Vec<String> {
        self.inner.borrow().datasets()
    }

    /// How the page lays out `dataset` (`state::Lineup`): `{featured, teacher, others}`.
    pub fn lineup(&self, dataset: &str) -> Result<JsValue, JsError> {
        let text = serde_json::to_string(&self.inner.borrow().lineup(dataset))
            .map_err(|e| JsError::new(&e.to_string()))?;
        js_sys::JSON::parse(&text).map_err(|_| JsError::new("the lineup is JSON"))
    }

    /// `n` points of a 2D dataset (flattened `[n, 2]`), noised to `sigma` when `sigma > 0`.
    pub fn data(&self, dataset: &str, n: usize, seed: u64, sigma: f64) -> Result<Float32Array, JsError> {
        let points = state::data(dataset, n, seed, sigma).map_err(|e| JsError::new(&e))?;
        Ok(Float32Array::from(points.as_slice()))
    }

    /// Consistency samples with the default list for `steps` steps, or `taus` when given (null: the
    /// default); a class-conditional model's of `classes` (one per sample; omitted: no class): resolves
    /// to `{points: Float32Array [n*D], ms, nfe, taus}`.
    pub fn sample(
        &self,
        name: String,
        steps: usize,
        taus: Option<Vec<f64>>,
        n: usize,
        seed: u64,
        classes: Option<Vec<u32>>,
    ) -> Promise {
        let found = self.loaded(&name);
        future_to_promise(async move {
            let (m, device) = found?;
            let t0 = now_ms();
            let classes = usizes(classes);
            let (x, plan) = state::sample(&m, steps, taus, n, seed, classes.as_deref(), &device)
                .map_err(|e| JsValue::from_str(&e))?;
            let pts = read(x).await?;
            let o = result(&pts, now_ms() - t0, plan.nfe(), None)?;
            if let Plan::Consistency(t) = &plan {
                set(&o, "taus", &js_sys::Float64Array::from(t.as_slice()).into())?;
            }
            Ok(o.into())
        })
    }

    /// The teacher's noise level at every state of a `nfe`-evaluation Heun trajectory.
    pub fn teacher_sigmas(&self, name: &str, nfe: usize) -> Result<Vec<f64>, JsError> {
        Ok(state::teacher_sigmas(&*self.model(name)?, nfe))
    }

    /// The model applied to `points` (flattened `[n, D]`) at noise level `sigma`: resolves to
    /// `{points, ms, nfe: 1}`. For a consistency model this is the one-step jump to the trajectory's origin.
    pub fn denoise(&self, name: String, points: Vec<f32>, sigma: f64) -> Promise {
        let found = self.loaded(&name);
        future_to_promise(async move {
            let (m, device) = found?;
            let t0 = now_ms();
            let x = state::denoise(&m, &points, sigma, &device).map_err(|e| JsValue::from_str(&e))?;
            let pts = read(x).await?;
            Ok(result(&pts, now_ms() - t0, 1, None)?.into())
        })
    }

    /// Teacher (Heun) samples, a class-conditional model's of `classes` (omitted: no class) with
    /// classifier-free guidance `guidance` (omitted: 1, none): resolves to
    /// `{points, ms, nfe, path?: Float32Array [(steps+1)*n*D]}`.
    #[allow(clippy::too_many_arguments)]
    pub fn teacher(
        &self,
        name: String,
        nfe: usize,
        n: usize,
        seed: u64,
        trajectory: bool,
        classes: Option<Vec<u32>>,
        guidance: Option<f64>,
    ) -> Promise {
        let found = self.loaded(&name);
        future_to_promise(async move {
            let (m, device) = found?;
            let t0 = now_ms();
            let classes = usizes(classes);
            let conditioning = (classes.as_deref(), guidance.unwrap_or(1.0));
            let (x, path, plan) = state::teacher(&m, nfe, n, seed, conditioning, &device, trajectory)
                .map_err(|e| JsValue::from_str(&e))?;
            let pts = read(x).await?;
            let ms = now_ms() - t0;
            let mut flat = Vec::new();
            for p in path {
                flat.extend(read(p).await?);
            }
            Ok(result(&pts, ms, plan.nfe(), trajectory.then_some(flat.as_slice()))?.into())
        })
    }

    /// For educators: `n` of `teacher`'s Heun trajectories (of `classes`, one per trajectory, guided by
    /// `guidance`, where given) and, at `levels` states on them,
    /// `teacher`'s denoised estimate and `student`'s one-step jump (`state::ode_jumps`). Resolves to
    /// `{sigmas: Float64Array [L], states, denoised, jumps: Float32Array [L*n*D] (level-major; states
    /// scaled to the data's spread for drawing), origin: Float32Array [n*D] (the ODE's end), jump_rms,
    /// denoised_rms: Float64Array [L] (RMS distance to the origin), ms}`.
    #[allow(clippy::too_many_arguments)]
    pub fn ode_jumps(
        &self,
        teacher: String,
        student: String,
        nfe: usize,
        levels: usize,
        n: usize,
        seed: u64,
        classes: Option<Vec<u32>>,
        guidance: Option<f64>,
    ) -> Promise {
        let found = self.loaded(&teacher).and_then(|t| Ok((t, self.loaded(&student)?.0)));
        future_to_promise(async move {
            let ((t, device), s) = found?;
            let t0 = now_ms();
            let classes = usizes(classes);
            let conditioning = (classes.as_deref(), guidance.unwrap_or(1.0));
            let r = state::ode_jumps(&t, &s, nfe, levels, n, seed, conditioning, &device)
                .map_err(|e| JsValue::from_str(&e))?;
            let origin = read(r.origin).await?;
            let sigma_data = t.denoiser.range.sigma_data;
            let (mut states, mut denoised, mut jumps) = (Vec::new(), Vec::new(), Vec::new());
            let (mut jump_rms, mut denoised_rms) = (Vec::new(), Vec::new());
            for (((x, d), j), &sigma) in r.states.into_iter().zip(r.denoised).zip(r.jumps).zip(&r.sigmas) {
                let scale = cm_core::host::state_display_scale(sigma, sigma_data) as f32;
                states.extend(read(x).await?.into_iter().map(|v| v * scale));
                let d = read(d).await?;
                denoised_rms.push(cm_core::host::rms_distance(&d, &origin));
                denoised.extend(d);
                let j = read(j).await?;
                jump_rms.push(cm_core::host::rms_distance(&j, &origin));
                jumps.extend(j);
            }
            let o = js_sys::Object::new();
            set(&o, "sigmas", &js_sys::Float64Array::from(r.sigmas.as_slice()).into())?;
            set(&o, "states", &Float32Array::from(states.as_slice()).into())?;
            set(&o, "denoised", &Float32Array::from(denoised.as_slice()).into())?;
            set(&o, "jumps", &Float32Array::from(jumps.as_slice()).into())?;
            set(&o, "origin", &Float32Array::from(origin.as_slice()).into())?;
            set(&o, "jump_rms", &js_sys::Float64Array::from(jump_rms.as_slice()).into())?;
            set(&o, "denoised_rms", &js_sys::Float64Array::from(denoised_rms.as_slice()).into())?;
            set(&o, "ms", &(now_ms() - t0).into())?;
            Ok(o.into())
        })
    }

    /// An uploaded image (RGBA8 bytes at the model's resolution) as the model's row (`state::image`).
    pub fn image(&self, name: &str, rgba: Vec<u8>) -> Result<Float32Array, JsError> {
        let row = state::image(&*self.model(name)?, &rgba).map_err(|e| JsError::new(&e))?;
        Ok(Float32Array::from(row.as_slice()))
    }

    /// Zero-shot edit of one clean image (see `state::edit`; `taus` null: the edit's default list; a
    /// class-conditional model's results of `classes`, one per result, where given): resolves to `{points: Float32Array [n*D], input: Float32Array [n*D], ms, nfe, taus}` where `input`
    /// holds the rows the edit started from (denoising: the noisy copies).
    #[allow(clippy::too_many_arguments)]
    pub fn edit(
        &self,
        name: String,
        task: String,
        image: Vec<f32>,
        mask: Vec<f32>,
        taus: Option<Vec<f64>>,
        sigma: f64,
        factor: usize,
        n: usize,
        seed: u64,
        classes: Option<Vec<u32>>,
    ) -> Promise {
        let found = self.loaded(&name);
        future_to_promise(async move {
            let (m, device) = found?;
            let t0 = now_ms();
            let classes = usizes(classes);
            let (edited, taus) = state::edit(
                &m,
                &task,
                &image,
                &mask,
                taus,
                sigma,
                factor,
                n,
                seed,
                classes.as_deref(),
                &device,
            )
            .map_err(|e| JsValue::from_str(&e))?;
            let pts = read(edited.results).await?;
            let o = result(&pts, now_ms() - t0, taus.nfe(), None)?;
            set(&o, "input", &Float32Array::from(edited.inputs.as_slice()).into())?;
            set(&o, "taus", &js_sys::Float64Array::from(taus.as_slice()).into())?;
            Ok(o.into())
        })
    }

    /// `n` images between the noises of seeds `a` and `b` (`taus` null: one step; of `classes`, one per
    /// image, where given): resolves to `{points, ms, nfe}` (`nfe` per image).
    #[allow(clippy::too_many_arguments)]
    pub fn interpolate(
        &self,
        name: String,
        a: u64,
        b: u64,
        n: usize,
        taus: Option<Vec<f64>>,
        classes: Option<Vec<u32>>,
    ) -> Promise {
        let found = self.loaded(&name);
        future_to_promise(async move {
            let (m, device) = found?;
            let t0 = now_ms();
            let classes = usizes(classes);
            let (x, taus) = state::interpolate(&m, a, b, n, taus, classes.as_deref(), &device)
                .map_err(|e| JsValue::from_str(&e))?;
            let pts = read(x).await?;
            Ok(result(&pts, now_ms() - t0, taus.nfe(), None)?.into())
        })
    }
}

/// Class numbers from JavaScript as indices.
fn usizes(classes: Option<Vec<u32>>) -> Option<Vec<usize>> {
    classes.map(|c| c.into_iter().map(|c| c as usize).collect())
}

fn set(o: &js_sys::Object, key: &str, value: &JsValue) -> Result<(), JsValue> {
    js_sys::Reflect::set(o, &key.into(), value).map(|_| ())
}

fn result(points: &[f32], ms: f64, nfe: usize, path: Option<&[f32]>) -> Result<js_sys::Object, JsValue> {
    let o = js_sys::Object::new();
    set(&o, "points", &Float32Array::from(points).into())?;
    set(&o, "ms", &ms.into())?;
    set(&o, "nfe", &(nfe as f64).into())?;
    if let Some(p) = path {
        set(&o, "path", &Float32Array::from(p).into())?;
    }
    Ok(o)
}
