//! Errors of the core library.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CoreError {
    /// A model card (`config.json`) that does not parse or does not validate.
    #[error("model card: {0}")]
    Card(String),
    /// A weights file that does not match the card's architecture.
    #[error("weights: {0}")]
    Weights(String),
}
