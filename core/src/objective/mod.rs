//! Training objectives, one file each, shared by every network and dataset.
//!
//! Each takes clean data `x0: [B, D]` already on the training device and returns a scalar loss.
//! All randomness comes from [`crate::rng::Noise`] streams keyed by the training step.

pub mod ct;
pub mod edm;
pub mod scm;

pub use ct::{CtConfig, CtStep, IndexSampling, Levels, Teacher, Weighting, ct_loss};
pub use edm::{EdmConfig, edm_loss};
pub use scm::{
    AdaptiveWeight, JvpMode, ScmConfig, ScmStep, scm_loss, trigflow_diffusion_loss, trigflow_velocity,
};

/// Where training is: step `k` of `total` (= K), and which rows of the step's batch this call sees.
/// Curricula need `k` and `total`; noise streams need `k` and the first row.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub k: u64,
    pub total: u64,
    /// Index of this call's first row in the step's batch (0 unless a data-parallel run splits it).
    pub first_row: usize,
}

impl Progress {
    /// Step `k` of `total`, the whole batch.
    pub fn new(k: u64, total: u64) -> Self {
        Self { k, total, first_row: 0 }
    }

    /// The same step for the shard of rows starting at `first_row`: its noise is the rows the whole batch
    /// would draw there, so a split batch sees exactly the unsplit batch's randomness.
    pub fn shard(self, first_row: usize) -> Self {
        Self { first_row, ..self }
    }

    pub fn streams(&self) -> Streams {
        Streams { k: self.k, first_row: self.first_row }
    }
}

/// Stream ids of one training step `k`: independent generators for each random quantity; row `i` of
/// a call is row `first_row + i` of the stream.
#[derive(Clone, Copy, Debug)]
pub struct Streams {
    pub k: u64,
    pub first_row: usize,
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
    /// Label dropout (class-conditional training).
    pub fn labels(&self) -> u64 {
        self.id(4)
    }
}
