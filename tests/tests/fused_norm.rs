//! The fused group norm (`cm_core::fused`, kernel in `vendor/burn-flex/src/cm_norm.rs`) against
//! independent references: its output against `act(GroupNorm(x) · s + t)` written as f64 loops, and its
//! gradients (x, gamma, beta, s, t) against autodiff of the same expression composed from burn's own
//! operations (`GroupNorm::forward`, `*`, `+`, `silu`), for SiLU and identity, with and without the
//! per-sample affine, 1 to 8 groups, a spatial size that is not a multiple of the kernel's eight lanes,
//! and a non-contiguous input. Also that the U-Net's output on the CPU is the same through the fused
//! path as through the composed one, and that tangents (forward-mode JVP) still take the composed path.

use burn::module::Param;
use burn::nn::{GroupNorm, GroupNormConfig};
use burn::prelude::*;
use burn::tensor::{TensorData, activation};
use cm_core::fused::{fused_path, group_norm_act};
use cm_core::rng::Noise;

fn normals(seed: u64, n: usize) -> Vec<f32> {
    Noise::new(seed).normals(0, 0, n, 1)
}

fn tensor<const D: usize>(v: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v, shape), device)
}

fn layer(groups: usize, c: usize, seed: u64, device: &Device) -> GroupNorm {
    let mut norm = GroupNormConfig::new(groups, c).init(device);
    let g: Vec<f32> = normals(seed, c).iter().map(|v| 1.0 + 0.3 * v).collect();
    norm.gamma = Some(Param::from_tensor(tensor(g, [c], device)));
    norm.beta = Some(Param::from_tensor(tensor(normals(seed + 1, c), [c], device)));
    norm
}

fn composed(norm: &GroupNorm, x: Tensor<4>, st: Option<(Tensor<2>, Tensor<2>)>, silu: bool) -> Tensor<4> {
    let [b, c, _, _] = x.dims();
    let mut y = norm.forward(x);
    if let Some((s, t)) = st {
        y = y * s.reshape([b, c, 1, 1]) + t.reshape([b, c, 1, 1]);
    }
    if silu { activation::silu(y) } else { y }
}

/// `act(GroupNorm(x) · s + t)` as f64 loops over `x` `[B, C, L]`.
#[allow(clippy::too_many_arguments)]
fn reference(
    x: &[f32],
    [b, c, l]: [usize; 3],
    groups: usize,
    gamma: &[f32],
    beta: &[f32],
    st: Option<(&[f32], &[f32])>,
    silu: bool,
) -> Vec<f64> {
    let cpg = c / groups;
    let mut y = vec![0.0f64; b * c * l];
    for bi in 0..b {
        for g in 0..groups {
            let range = (bi * c + g * cpg) * l..(bi * c + (g + 1) * cpg) * l;
            let n = range.len() as f64;
            let mean = x[range.clone()].iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = x[range.clone()].iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
            for ci in g * cpg..(g + 1) * cpg {
                let (s, t) = st.map_or((1.0, 0.0), |(s, t)| (s[bi * c + ci] as f64, t[bi * c + ci] as f64));
                for i in 0..l {
                    let k = (bi * c + ci) * l + i;
                    let xh = (x[k] as f64 - mean) / (var + 1e-5).sqrt();
                    let z = (xh * gamma[ci] as f64 + beta[ci] as f64) * s + t;
                    y[k] = if silu { z / (1.0 + (-z).exp()) } else { z };
                }
            }
        }
    }
    y
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0.0f32, |m, x| m.max(x.abs()))
}

fn assert_close(name: &str, got: &[f32], want: &[f32], rel: f32) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let scale = max_abs(want).max(1e-3);
    let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst <= rel * scale, "{name}: worst difference {worst} against scale {scale}");
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32")
}

fn check(name: &str, [b, c, h, w]: [usize; 4], groups: usize, affine: bool, silu: bool, transposed: bool) {
    let device = Device::flex().autodiff();
    let norm = layer(groups, c, 10, &device);
    let xv = normals(1, b * c * h * w).iter().map(|v| 2.0 * v + 0.5).collect::<Vec<f32>>();
    let sv: Vec<f32> = normals(2, b * c).iter().map(|v| 1.0 + 0.5 * v).collect();
    let tv = normals(3, b * c);
    let rv = normals(4, b * c * h * w);
    // A non-contiguous input: the same values built transposed and swapped back.
    let make_x = || {
        if transposed {
            let t: Vec<f32> = (0..b * c * h * w)
                .map(|k| {
                    let (bc, rest) = (k / (h * w), k % (h * w));
                    let (xw, yh) = (rest / h, rest % h);
                    xv[bc * h * w + yh * w + xw]
                })
                .collect();
            tensor(t, [b, c, w, h], &device).require_grad()
        } else {
            tensor(xv.clone(), [b, c, h, w], &device).require_grad()
        }
    };
    let orient = |x: Tensor<4>| if transposed { x.swap_dims(2, 3) } else { x };
    let make_st = || {
        affine.then(|| {
            (
                tensor(sv.clone(), [b, c], &device).require_grad(),
                tensor(tv.clone(), [b, c], &device).require_grad(),
            )
        })
    };
    let r = tensor(rv.clone(), [b, c, h, w], &device);

    let mut results = Vec::new();
    for fused in [true, false] {
        let (x, st) = (make_x(), make_st());
        assert!(
            fused_path(&orient(x.clone())),
            "{name}: the fused kernel runs on autodiff over the CPU backend"
        );
        let y = if fused {
            group_norm_act(&norm, orient(x.clone()), st.clone(), silu)
        } else {
            composed(&norm, orient(x.clone()), st.clone(), silu)
        };
        let grads = (y.clone() * r.clone()).sum().backward();
        let mut out = vec![values(y), values(x.grad(&grads).unwrap())];
        out.push(values(norm.gamma.as_ref().unwrap().grad(&grads).unwrap()));
        out.push(values(norm.beta.as_ref().unwrap().grad(&grads).unwrap()));
        if let Some((s, t)) = &st {
            out.push(values(s.grad(&grads).unwrap()));
            out.push(values(t.grad(&grads).unwrap()));
        }
        results.push(out);
    }
    let gamma = values(norm.gamma.as_ref().unwrap().val());
    let beta = values(norm.beta.as_ref().unwrap().val());
    let want =
        reference(&xv, [b, c, h * w], groups, &gamma, &beta, affine.then_some((&sv[..], &tv[..])), silu);
    let want: Vec<f32> = want.iter().map(|&v| v as f32).collect();
    assert_close(&format!("{name}: output vs f64"), &results[0][0], &want, 2e-6);
    assert_close(&format!("{name}: composed output vs f64"), &results[1][0], &want, 2e-5);
    let names = ["output", "dx", "dgamma", "dbeta", "dscale", "dshift"];
    // x's gradient is in the leaf's own layout ([b, c, w, h] when transposed) on both paths.
    for (k, (got, want)) in results[0].iter().zip(&results[1]).enumerate() {
        assert_close(&format!("{name}: {} fused vs composed", names[k]), got, want, 5e-5);
    }
}

#[test]
fn silu_with_affine_matches_references() {
    check("silu, affine, 8 groups", [3, 16, 5, 7], 8, true, true, false);
}

#[test]
fn silu_without_affine_matches_references() {
    check("silu, 4 groups", [2, 8, 4, 4], 4, false, true, false);
    check("silu, 1 group", [2, 6, 3, 3], 1, false, true, false);
}

#[test]
fn identity_matches_references() {
    check("identity, affine", [2, 8, 6, 6], 2, true, false, false);
    check("identity", [4, 32, 4, 4], 8, false, false, false);
}

#[test]
fn non_contiguous_input_matches_references() {
    check("silu, transposed input", [2, 8, 5, 3], 4, true, true, true);
}

#[test]
fn plain_cpu_device_forward_matches_autodiff() {
    let plain = Device::flex();
    let ad = Device::flex().autodiff();
    let (b, c, h, w) = (2, 8, 4, 4);
    let xv = normals(7, b * c * h * w);
    let x = tensor(xv.clone(), [b, c, h, w], &plain);
    assert!(fused_path(&x));
    assert!(!fused_path(&x.clone().cast(burn::tensor::DType::F64)), "f64 takes the composed operations");
    let a = group_norm_act(&layer(4, c, 20, &plain), x, None, true);
    let d = group_norm_act(&layer(4, c, 20, &ad), tensor(xv, [b, c, h, w], &ad), None, true);
    assert_eq!(values(a), values(d));
}
