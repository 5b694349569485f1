//! The wasm playground's API: a thin wasm-bindgen layer over `cm-core`. The page (`www/app.js`)
//! fetches model folders, calls these functions and draws the returned points.
//!
//! Split as in burn's `mnist-inference-web` example: `api` (wasm only) picks the backend and converts
//! between JavaScript and Rust values; [`state`] holds the loaded models and maps each page request onto
//! core's [`cm_core::Model`], natively testable.

#[cfg(target_arch = "wasm32")]
mod api;
pub mod state;
