//! Raw networks `F(c_in x, c_noise)`; the preconditioning lives in [`crate::model`].

pub mod embedding;
pub mod mlp;

pub use embedding::TimeEmbedding;
pub use mlp::{Mlp, MlpConfig};
