//! cm-core: consistency models (Song et al. 2023; Song & Dhariwal 2024; Lu & Song 2025) on any burn
//! device. No IO, no command line, no wasm-bindgen, no backend named: callers pass a `Device`.
//!
//! - [`param`]: EDM / consistency / TrigFlow preconditioning and the boundary condition.
//! - [`schedule`]: Karras grids, CM and iCT curricula, lognormal index sampling, default `tau` lists.
//! - [`net`], [`model`]: raw networks and the denoiser that wraps them.
//! - [`objective`]: EDM, CT and iCT losses; [`distance`]: L2 and pseudo-Huber.
//! - [`sample`]: one multistep consistency loop; Euler/Heun PF-ODE solvers.
//! - [`data2d`], [`metrics`], [`card`], [`rng`]: toy data, quality distances, model cards, seeded noise.
//! - [`host`]: host numbers <-> tensors (columns of per-row values, rows of data, reading back).

pub mod card;
pub mod data2d;
pub mod distance;
pub mod edit;
pub mod ema;
pub mod error;
pub mod host;
pub mod jvp;
pub mod loaded;
pub mod model;
pub mod net;
pub mod objective;
pub mod param;
pub mod rng;
pub mod sample;
pub mod schedule;

pub use card::{Method, ModelCard};
pub use error::CoreError;
pub use loaded::{Model, Plan, TauRequest, Taus};
pub use model::{Denoiser, ModelConfig};
pub use param::{NoiseRange, Parameterisation};
