//! wasm-bindgen exports. Every call returns a Promise; errors become readable JavaScript errors.

use std::cell::RefCell;
use std::rc::Rc;

use burn::prelude::*;
use js_sys::{Float32Array, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::state::{Loaded, Playground};

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
    fn loaded(&self, name: &str) -> Result<(Rc<Loaded>, Device), JsValue> {
        let p = self.inner.borrow();
        Ok((p.get(name).map_err(|e| JsValue::from_str(&e))?, p.device.clone()))
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

    /// The card of a loaded model, as JSON text.
    pub fn card(&self, name: &str) -> Result<String, JsError> {
        Ok(self.inner.borrow().get(name).map_err(|e| JsError::new(&e))?.card.to_json())
    }

    /// Whether a loaded model is a diffusion model (sampled by an ODE solver: EDM or TrigFlow teachers)
    /// rather than a consistency model: `ModelCard::is_consistency`, the one rule.
    pub fn is_diffusion(&self, name: &str) -> Result<bool, JsError> {
        Ok(!self.inner.borrow().get(name).map_err(|e| JsError::new(&e))?.card.is_consistency())
    }

    /// The default tau list for `k` steps.
    pub fn default_taus(&self, name: &str, k: usize) -> Result<Vec<f64>, JsError> {
        Ok(self.inner.borrow().get(name).map_err(|e| JsError::new(&e))?.default_taus(k))
    }

    /// `n` points of a 2D dataset (flattened `[n, 2]`), as `cm data` writes them.
    pub fn data(&self, dataset: &str, n: usize, seed: u64) -> Result<Float32Array, JsError> {
        let d = cm_core::data2d::Dataset2d::from_name(dataset)
            .ok_or_else(|| JsError::new(&format!("unknown dataset {dataset:?}")))?;
        Ok(Float32Array::from(d.sample(seed, 0, 0, n).as_slice()))
    }

    /// Consistency samples: resolves to `{points: Float32Array [n*D], ms}`.
    pub fn sample(&self, name: String, taus: Vec<f64>, n: usize, seed: u64) -> Promise {
        let found = self.loaded(&name);
        future_to_promise(async move {
            let (loaded, device) = found?;
            let t0 = now_ms();
            let x = loaded.sample(&taus, n, seed, &device).map_err(|e| JsValue::from_str(&e))?;
            let pts = read(x).await?;
            let ms = now_ms() - t0;
            result(&pts, ms, None)
        })
    }

    /// The teacher's noise level at every state of a `nfe`-evaluation Heun trajectory.
    pub fn teacher_sigmas(&self, name: &str, nfe: usize) -> Result<Vec<f64>, JsError> {
        Ok(self.inner.borrow().get(name).map_err(|e| JsError::new(&e))?.teacher_sigmas(nfe))
    }

    /// The model applied to `points` (flattened `[n, D]`) at noise level `sigma`: resolves to
    /// `{points, ms}`. For a consistency model this is the one-step jump to the trajectory's origin.
    pub fn denoise(&self, name: String, points: Vec<f32>, sigma: f64) -> Promise {
        let found = self.loaded(&name);
        future_to_promise(async move {
            let (loaded, device) = found?;
            let t0 = now_ms();
            let x = loaded.denoise(&points, sigma, &device).map_err(|e| JsValue::from_str(&e))?;
            let pts = read(x).await?;
            result(&pts, now_ms() - t0, None)
        })
    }

    /// Teacher (Heun) samples: resolves to `{points, ms, path?: Float32Array [(steps+1)*n*D]}`.
    pub fn teacher(&self, name: String, nfe: usize, n: usize, seed: u64, trajectory: bool) -> Promise {
        let found = self.loaded(&name);
        future_to_promise(async move {
            let (loaded, device) = found?;
            let t0 = now_ms();
            let (x, path) =
                loaded.teacher(nfe, n, seed, &device, trajectory).map_err(|e| JsValue::from_str(&e))?;
            let pts = read(x).await?;
            let ms = now_ms() - t0;
            let mut flat = Vec::new();
            for p in path {
                flat.extend(read(p).await?);
            }
            result(&pts, ms, trajectory.then_some(flat.as_slice()))
        })
    }

    /// The default tau list of an edit task at `sigma` (see `Loaded::edit_taus`).
    pub fn edit_taus(&self, name: &str, task: &str, sigma: f64) -> Result<Vec<f64>, JsError> {
        let inner = self.inner.borrow();
        let loaded = inner.get(name).map_err(|e| JsError::new(&e))?;
        loaded.edit_taus(task, sigma).map_err(|e| JsError::new(&e))
    }

    /// Zero-shot edit of one image (see `Loaded::edit`): resolves to `{points: Float32Array [n*D], ms}`.
    #[allow(clippy::too_many_arguments)]
    pub fn edit(
        &self,
        name: String,
        task: String,
        image: Vec<f32>,
        mask: Vec<f32>,
        taus: Vec<f64>,
        sigma: f64,
        factor: usize,
        n: usize,
        seed: u64,
    ) -> Promise {
        let found = self.loaded(&name);
        future_to_promise(async move {
            let (loaded, device) = found?;
            let t0 = now_ms();
            let x = loaded
                .edit(&task, &image, &mask, &taus, sigma, factor, n, seed, &device)
                .map_err(|e| JsValue::from_str(&e))?;
            let pts = read(x).await?;
            result(&pts, now_ms() - t0, None)
        })
    }

    /// `n` images between the noises of seeds `a` and `b`: resolves to `{points, ms}`.
    pub fn interpolate(&self, name: String, a: u64, b: u64, n: usize, taus: Vec<f64>) -> Promise {
        let found = self.loaded(&name);
        future_to_promise(async move {
            let (loaded, device) = found?;
            let t0 = now_ms();
            let x = loaded.interpolate(a, b, n, &taus, &device).map_err(|e| JsValue::from_str(&e))?;
            let pts = read(x).await?;
            result(&pts, now_ms() - t0, None)
        })
    }
}

fn result(points: &[f32], ms: f64, path: Option<&[f32]>) -> Result<JsValue, JsValue> {
    let o = js_sys::Object::new();
    js_sys::Reflect::set(&o, &"points".into(), &Float32Array::from(points).into())?;
    js_sys::Reflect::set(&o, &"ms".into(), &ms.into())?;
    if let Some(p) = path {
        js_sys::Reflect::set(&o, &"path".into(), &Float32Array::from(p).into())?;
    }
    Ok(o.into())
}
