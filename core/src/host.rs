//! Host data <-> tensors: the few conversions every objective, sampler and caller needs, written once.
//! Host numbers are f64 (schedules, levels) or f32 (pixels, noise); tensors are f32.

use burn::prelude::*;

/// `[n, 1]` column of per-row values (noise levels, scalings), one row per value.
pub fn column(values: &[f64], device: &Device) -> Tensor<2> {
    vector(values, device).reshape([values.len(), 1])
}

/// `[n]` vector of values.
pub fn vector(values: &[f64], device: &Device) -> Tensor<1> {
    let v: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    Tensor::<1>::from_floats(v.as_slice(), device)
}

/// `[n, d]` rows from `n * d` row-major floats.
pub fn rows(data: &[f32], n: usize, d: usize, device: &Device) -> Tensor<2> {
    Tensor::<1>::from_floats(data, device).reshape([n, d])
}

/// A tensor's values, row-major, back on the host.
pub fn to_host<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, String> {
    t.into_data().try_to_vec::<f32>().map_err(|e| format!("cannot read a tensor back: {e:?}"))
}

/// Root mean square of `a - b` over every value (pixels in the data's units); NaN when the lengths
/// differ or are 0, so a caller's mistake cannot pass for a distance.
pub fn rms_distance(a: &[f32], b: &[f32]) -> f64 {
    if a.is_empty() {
        return f64::NAN;
    }
    (squared_distance(a, b) / a.len() as f64).sqrt()
}

/// The sum of squares of `a - b` (for a mean over several batches); NaN when the lengths differ.
pub fn squared_distance(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() {
        return f64::NAN;
    }
    a.iter().zip(b).map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2)).sum()
}

/// How a PF-ODE state `x_sigma = x_0 + sigma z` is drawn: scaled by `sigma_data / sqrt(sigma_data^2 +
/// sigma^2)`, so every level shows with the data's spread (`c_in` times `sigma_data`; 1 at `sigma = 0`).
pub fn state_display_scale(sigma: f64, sigma_data: f64) -> f64 {
    sigma_data / (sigma_data * sigma_data + sigma * sigma).sqrt()
}
