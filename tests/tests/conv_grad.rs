//! The CPU backend's convolution (output and gradients) and sigmoid against independent f64 references.
//!
//! cm builds burn's CPU backend from `vendor/burn-flex` (CM-PATCH.md there): conv2d, forward and both
//! gradients, runs as im2col + gemm per sample, and sigmoid through a vectorised `exp`. Here the output
//! of `conv2d(x, w, b)` and autodiff's gradients of `sum(conv2d(x, w, b) * r)` are checked against the
//! definition of the convolution written as plain loops in f64 (`y = b + sum w x`, `dx = sum r w`,
//! `dw = sum r x`), for the shapes the U-Net
//! uses (3x3 stride 1 and 2, 1x1) and for the rest of the patched code (groups, dilation, asymmetric
//! padding, a batch that is not a multiple of the weight gradient's chunk of 8 samples). Sigmoid and
//! SiLU agree with f64 to float rounding down to x = -87, below which both are under 2e-38.

use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use cm_core::rng::Noise;

struct Case {
    name: &'static str,
    batch: usize,
    c_in: usize,
    c_out: usize,
    size: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    /// (begin, end) per spatial dimension.
    padding: [(usize, usize); 2],
    dilation: [usize; 2],
    groups: usize,
}

fn normals(seed: u64, n: usize) -> Vec<f32> {
    Noise::new(seed).normals(0, 0, n, 1)
}

/// Output size of one spatial dimension.
fn out_len(len: usize, k: usize, s: usize, p: (usize, usize), d: usize) -> usize {
    (len + p.0 + p.1 - d * (k - 1) - 1) / s + 1
}

fn check(case: &Case) {
    let device = Device::flex().autodiff();
    let [h, w] = case.size;
    let [kh, kw] = case.kernel;
    let cpg = case.c_in / case.groups;
    let copg = case.c_out / case.groups;
    let oh = out_len(h, kh, case.stride[0], case.padding[0], case.dilation[0]);
    let ow = out_len(w, kw, case.stride[1], case.padding[1], case.dilation[1]);
    let xv = normals(1, case.batch * case.c_in * h * w);
    let wv = normals(2, case.c_out * cpg * kh * kw);
    let bv = normals(3, case.c_out);
    let rv = normals(4, case.batch * case.c_out * oh * ow);

    let x = Tensor::<4>::from_data(TensorData::new(xv.clone(), [case.batch, case.c_in, h, w]), &device)
        .require_grad();
    let weight = Tensor::<4>::from_data(TensorData::new(wv.clone(), [case.c_out, cpg, kh, kw]), &device)
        .require_grad();
    let bias = Tensor::<1>::from_data(TensorData::new(bv.clone(), [case.c_out]), &device).require_grad();
    let r = Tensor::<4>::from_data(TensorData::new(rv.clone(), [case.batch, case.c_out, oh, ow]), &device);
    let options = ConvOptions::new_with_padding(case.stride, case.padding, case.dilation, case.groups);
    let y = conv2d(x.clone(), weight.clone(), Some(bias), options);
    assert_eq!(y.dims(), [case.batch, case.c_out, oh, ow], "{}: output shape", case.name);
    let got_y: Vec<f32> = y.clone().into_data().try_to_vec::<f32>().expect("f32");
    let grads = (y * r).sum().backward();
    let got_dx: Vec<f32> = x.grad(&grads).expect("x grad").into_data().try_to_vec::<f32>().expect("f32");
    let got_dw: Vec<f32> = weight.grad(&grads).expect("w grad").into_data().try_to_vec::<f32>().expect("f32");

    // The definition, in f64: y[b, co, oy, ox] = sum_{ci in group, i, j} w[co, ci', i, j] x[b, ci, yy, xx].
    let mut y = vec![0f64; rv.len()];
    let mut dx = vec![0f64; xv.len()];
    let mut dw = vec![0f64; wv.len()];
    for b in 0..case.batch {
        for (co, &bias_co) in bv.iter().enumerate() {
            let g = co / copg;
            for oy in 0..oh {
                for ox in 0..ow {
                    let yi = ((b * case.c_out + co) * oh + oy) * ow + ox;
                    let rr = rv[yi] as f64;
                    y[yi] = bias_co as f64;
                    for cl in 0..cpg {
                        let ci = g * cpg + cl;
                        for i in 0..kh {
                            for j in 0..kw {
                                let yy = (oy * case.stride[0] + i * case.dilation[0]) as isize
                                    - case.padding[0].0 as isize;
                                let xx = (ox * case.stride[1] + j * case.dilation[1]) as isize
                                    - case.padding[1].0 as isize;
                                if yy < 0 || xx < 0 || yy >= h as isize || xx >= w as isize {
                                    continue;
                                }
                                let xi = ((b * case.c_in + ci) * h + yy as usize) * w + xx as usize;
                                let wi = ((co * cpg + cl) * kh + i) * kw + j;
                                y[yi] += wv[wi] as f64 * xv[xi] as f64;
                                dx[xi] += rr * wv[wi] as f64;
                                dw[wi] += rr * xv[xi] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    for (what, got, want) in
        [("output", &got_y, &y), ("x gradient", &got_dx, &dx), ("weight gradient", &got_dw, &dw)]
    {
        assert_eq!(got.len(), want.len(), "{}: {what} size", case.name);
        let scale = want.iter().fold(0f64, |m, v| m.max(v.abs())).max(1.0);
        let worst = got.iter().zip(want.iter()).map(|(g, w)| (*g as f64 - w).abs()).fold(0f64, f64::max);
        assert!(
            worst <= 2e-5 * scale,
            "{}: {what} differs from the f64 definition by {worst} (scale {scale})",
            case.name
        );
    }
}

fn case(name: &'static str) -> Case {
    Case {
        name,
        batch: 11,
        c_in: 6,
        c_out: 4,
        size: [9, 7],
        kernel: [3, 3],
        stride: [1, 1],
        padding: [(1, 1), (1, 1)],
        dilation: [1, 1],
        groups: 1,
    }
}

#[test]
fn conv2d_gradients_match_their_definition() {
    let cases = [
        case("3x3 stride 1 padding 1 (the U-Net's convolutions)"),
        Case { stride: [2, 2], ..case("3x3 stride 2 padding 1 (the U-Net's downsampling)") },
        Case { kernel: [1, 1], padding: [(0, 0), (0, 0)], ..case("1x1") },
        Case { c_in: 3, c_out: 16, ..case("3 channels in, 16 out (the U-Net's input conv)") },
        Case { padding: [(0, 0), (0, 0)], ..case("3x3 without padding") },
        Case { kernel: [3, 5], padding: [(2, 2), (1, 1)], ..case("3x5 kernel, padding 2 and 1") },
        Case { groups: 2, ..case("two groups") },
        Case { dilation: [2, 1], padding: [(2, 2), (1, 1)], ..case("dilation 2") },
        Case { padding: [(0, 1), (1, 0)], ..case("asymmetric padding") },
        Case { batch: 1, ..case("one sample") },
    ];
    for c in &cases {
        check(c);
    }
}

#[test]
fn sigmoid_and_silu_match_f64() {
    let device = Device::flex();
    let xs: Vec<f32> = (0..20_001).map(|i| (i as f32 - 10_000.0) * 0.01).collect();
    let t = Tensor::<1>::from_data(TensorData::new(xs.clone(), [xs.len()]), &device);
    let sig: Vec<f32> =
        burn::tensor::activation::sigmoid(t.clone()).into_data().try_to_vec::<f32>().expect("f32");
    let silu: Vec<f32> = burn::tensor::activation::silu(t).into_data().try_to_vec::<f32>().expect("f32");
    for ((x, s), u) in xs.iter().zip(&sig).zip(&silu) {
        let want = 1.0 / (1.0 + (-(*x as f64)).exp());
        if *x < -87.0 {
            // Below f32's normal range either way (the patched exp stops at e^-87).
            assert!((0.0..2e-38).contains(s), "sigmoid({x}) = {s}");
            continue;
        }
        assert!(((*s as f64) - want).abs() <= 4e-7 * want, "sigmoid({x}) = {s}, want {want}");
        let want_silu = *x as f64 * want;
        assert!(((*u as f64) - want_silu).abs() <= 4e-7 * want_silu.abs() + 1e-30, "silu({x}) = {u}");
    }
    let special = Tensor::<1>::from_data(
        TensorData::new(vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e4, -1e4], [5]),
        &device,
    );
    let s: Vec<f32> =
        burn::tensor::activation::sigmoid(special).into_data().try_to_vec::<f32>().expect("f32");
    assert!(s[0].is_nan(), "sigmoid(NaN) must stay NaN, got {}", s[0]);
    assert_eq!(s[1], 1.0);
    assert!((0.0..1e-37).contains(&s[2]), "sigmoid(-inf) = {}", s[2]);
    assert_eq!(s[3], 1.0);
    assert!((0.0..1e-37).contains(&s[4]), "sigmoid(-1e4) = {}", s[4]);
}
