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
