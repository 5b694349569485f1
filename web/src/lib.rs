//! The wasm playground's API: a thin wasm-bindgen layer over `cm-core`. The page (`www/app.js`)
//! fetches model folders, calls these functions and draws the returned points.
//!
//! Split as in burn's `mnist-inference-web` example: [`state`] owns the backend choice and the
//! loaded models; this file only converts between JavaScript and Rust values.

#[cfg(target_arch = "wasm32")]
mod api;
pub mod state;
