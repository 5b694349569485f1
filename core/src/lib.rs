//! cm-core: consistency models (Song et al. 2023; Song & Dhariwal 2024; Lu & Song 2025) on any burn
//! device. No IO, no command line, no wasm-bindgen, no backend named: callers pass a `Device`.
//!
//! - [`param`]: EDM / consistency / TrigFlow preconditioning and the boundary condition.
//! - [`schedule`]: Karras grids, CM and iCT curricula, lognormal index sampling, default `tau` lists.
//! - [`net`], [`model`]: raw networks and the denoiser that wraps them; [`jvp`]: their forward-mode
//!   derivative (sCM's tangent).
//! - [`objective`]: EDM, CT/iCT/CD and TrigFlow/sCT/sCD losses; [`distance`]: L2 and
//!   pseudo-Huber; [`ema`]: weight averages.
//! - [`sample`]: the one multistep consistency loop, Euler/Heun PF-ODE solvers, the tau rule.
//! - [`edit`]: zero-shot editing (CM Algorithm 4) as projections inside that loop.
//! - [`loaded`]: [`Model`], a card and its denoiser: the one API the CLI, the evaluator and the page
//!   call to sample, edit and interpolate ([`Plan`], [`Taus`]).
//! - [`card`]: model cards and weights from bytes; [`data2d`]: toy datasets; [`rng`]: seeded,
//!   counter-based noise; [`host`]: host numbers <-> tensors.
//!
//! Evaluation (metrics, classifier features) is the trainer's (`cm_trainer::eval`): the page never
//! evaluates.

pub mod card;
pub mod data2d;
pub mod distance;
pub mod edit;
pub mod ema;
pub mod error;
pub mod fused;
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
pub use loaded::{Model, OdeJumps, Plan, Rows, TauRequest, Taus};
pub use model::{Denoiser, ModelConfig};
pub use param::{NoiseRange, Parameterisation};
