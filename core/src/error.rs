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

/// A number as a message shows it back: plainly at everyday sizes, in exponent form beyond them, so
/// that `1e308` is not echoed as 309 digits.
pub fn shown(x: f64) -> String {
    if x == 0.0 || !x.is_finite() || (1e-4..1e7).contains(&x.abs()) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn numbers_are_shown_short() {
        assert_eq!(shown(0.5), "0.5");
        assert_eq!(shown(80.0), "80");
        assert_eq!(shown(-3.0), "-3");
        assert_eq!(shown(1e308), "1e308");
        assert_eq!(shown(2.5e-7), "2.5e-7");
        assert_eq!(shown(f64::NAN), "NaN");
        assert_eq!(shown(0.0), "0");
    }
}
