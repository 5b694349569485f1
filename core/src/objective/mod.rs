//! Training objectives, one file each, shared by every network and dataset.
//!
//! Each takes clean data `x0: [B, D]` already on the training device and returns a scalar loss.
//! All randomness comes from [`crate::rng::Noise`] streams keyed by the training step.

pub mod ct;
pub mod edm;
pub mod scm;

pub use ct::{CtConfig, CtStep, IndexSampling, Teacher, Weighting, ct_loss};
pub use edm::{EdmConfig, edm_loss};
pub use scm::{
    AdaptiveWeight, JvpMode, ScmConfig, ScmStep, scm_loss, trigflow_diffusion_loss, trigflow_velocity,
};

/// Where training is: step `k` of `total` (= K). Curricula need both; noise streams need `k`.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub k: u64,
    pub total: u64,
}

impl Progress {
    pub fn streams(&self) -> Streams {
        Streams { k: self.k }
    }
}

/// Stream ids of one training step `k`: independent generators for each random quantity.
#[derive(Clone, Copy, Debug)]
pub struct Streams {
    pub k: u64,
}

impl Streams {
    fn id(&self, what: u64) -> u64 {
        self.k.wrapping_mul(16).wrapping_add(what)
    }
    /// Clean-data draw.
    pub fn data(&self) -> u64 {
        self.id(0)
    }
    /// Gaussian noise `z`.
    pub fn z(&self) -> u64 {
        self.id(1)
    }
    /// Noise levels / indices.
    pub fn level(&self) -> u64 {
        self.id(2)
    }
    /// Dropout masks.
    pub fn dropout(&self) -> u64 {
        self.id(3)
    }
}
