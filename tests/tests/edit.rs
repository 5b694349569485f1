//! Zero-shot editing (CM Algorithm 4): every constraint is an orthogonal projector, every edit keeps what is
//! known of the reference and generates the rest, on random-weight U-Nets (grey and colour).

use burn::prelude::*;
use cm_core::edit::{Constraint, Edit, LUMA, slerp_rows};
use cm_core::net::{AdaNorm, Architecture};
use cm_core::param::{NoiseRange, Parameterisation};
use cm_core::rng::Noise;
use cm_core::sample::normals;
use cm_core::{Denoiser, ModelConfig};
use cm_tests::{Randomise, host, small_unet};

fn unet(channels: usize, seed: u64) -> (Denoiser, Device) {
    let device = Device::flex();
    device.seed(seed);
    let cfg = ModelConfig {
        architecture: Architecture::UNet(small_unet(channels, false, 0.0, AdaNorm::Group)),
        parameterisation: Parameterisation::Consistency,
        range: NoiseRange::default(),
    };
    let mut m = cfg.init(&device);
    m.net = m.net.map(&mut Randomise(0.3));
    (m, device)
}

fn constraints(shape: [usize; 3]) -> Vec<Constraint> {
    let d: usize = shape.iter().product();
    let mask: Vec<f32> =
        (0..d).map(|i| if (i / shape[2]) % shape[1] >= shape[1] / 2 { 1.0 } else { 0.0 }).collect();
    let mut c = vec![
        Constraint::Inpaint { mask },
        Constraint::SuperResolution { factor: 2 },
        Constraint::SuperResolution { factor: 4 },
    ];
    if shape[0] == 3 {
        c.push(Constraint::Colourise);
    }
    c
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

/// `P` is idempotent and symmetric (an orthogonal projector), so `x + P(y - x)` is CM's `A^-1[(Ay)(1-Omega) + (Ax)Omega]`.
#[test]
fn every_constraint_is_an_orthogonal_projector() {
    let device = Device::flex();
    for shape in [[1, 8, 8], [3, 8, 8]] {
        let d: usize = shape.iter().product();
        for c in constraints(shape) {
            c.validate(shape).unwrap();
            let a = normals(&Noise::new(1), 0, 0, 3, d, &device);
            let b = normals(&Noise::new(2), 0, 0, 3, d, &device);
            let pa = c.known_part(a.clone(), shape);
            let ppa = c.known_part(pa.clone(), shape);
            let (pa_h, ppa_h) = (host(pa.clone()), host(ppa));
            let idem = pa_h.iter().zip(&ppa_h).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(idem < 1e-5, "{c:?}: P P != P ({idem})");
            let pb = c.known_part(b.clone(), shape);
            let sym = (dot(&pa_h, &host(b)) - dot(&host(a), &host(pb))).abs();
            assert!(sym < 1e-3, "{c:?}: <Pa, b> != <a, Pb> ({sym})");
            // Neither nothing nor everything is known.
            let norm = dot(&pa_h, &pa_h);
            assert!(norm > 1.0 && norm < 0.9 * 3.0 * d as f64, "{c:?}: |Pa|^2 = {norm}");
        }
    }
}

/// Each edit keeps the known part of the reference exactly and generates something new elsewhere.
#[test]
fn edits_keep_what_is_known_and_generate_the_rest() {
    for channels in [1, 3] {
        let (m, device) = unet(channels, 4);
        let shape = m.image_shape().unwrap();
        let d: usize = shape.iter().product();
        let y = normals(&Noise::new(9), 0, 0, 2, d, &device).clamp(-1.0, 1.0);
        for c in constraints(shape) {
            let edit = Edit { start: cm_core::edit::Start::Prior, constraint: Some(c.clone()) };
            for taus in [vec![], vec![0.821], vec![5.0, 0.821]] {
                edit.validate(&m, &taus).unwrap();
                let x = edit.run(&m, y.clone(), None, &taus, &Noise::new(3), 0);
                let known_x = host(c.known_part(x.clone(), shape));
                let known_y = host(c.known_part(y.clone(), shape));
                let kept = known_x.iter().zip(&known_y).fold(0f32, |a, (p, q)| a.max((p - q).abs()));
                assert!(kept < 1e-4, "{c:?} {taus:?}: known part moved by {kept}");
                let changed =
                    host(x).iter().zip(host(y.clone())).fold(0f32, |a, (p, q)| a.max((p - q).abs()));
                assert!(changed > 1e-2, "{c:?} {taus:?}: nothing was generated");
            }
        }
        // Colourisation keeps the BT.601 luminance itself (not only its normalised axis).
        if channels == 3 {
            let x = host(Edit::colourise().run(&m, y.clone(), None, &[0.821], &Noise::new(3), 0));
            let yh = host(y.clone());
            let hw = 64;
            let luma = |v: &[f32], b: usize, p: usize| {
                (0..3).map(|ch| LUMA[ch] * v[b * d + ch * hw + p] as f64).sum::<f64>()
            };
            let err = (0..2)
                .flat_map(|b| (0..hw).map(move |p| (b, p)))
                .fold(0f64, |a, (b, p)| a.max((luma(&x, b, p) - luma(&yh, b, p)).abs()));
            assert!(err < 1e-5, "luminance error {err}");
        }
    }
}

#[test]
fn denoising_and_stroke_guidance_start_from_the_reference() {
    let (m, device) = unet(1, 5);
    let y = normals(&Noise::new(9), 0, 0, 2, 64, &device);
    for edit in [Edit::denoise(0.5), Edit::stroke(2.0)] {
        edit.validate(&m, &[0.1]).unwrap();
        let x = edit.run(&m, y.clone(), None, &[0.1], &Noise::new(1), 0);
        assert_eq!(x.dims(), [2, 64]);
        assert!(host(x).iter().all(|v| v.is_finite()));
    }
    // A tau above the start level, or increasing taus, are refused with the value named.
    let err = Edit::denoise(0.5).validate(&m, &[0.8]).unwrap_err();
    assert!(err.contains("0.8"), "{err}");
    assert!(Edit::stroke(2.0).validate(&m, &[0.1, 0.5]).unwrap_err().contains("decrease"));
    assert!(Edit::colourise().validate(&m, &[]).unwrap_err().contains("3-channel"));
    assert!(Edit::super_resolution(3).validate(&m, &[]).unwrap_err().contains("divide"));
    assert!(Edit::inpaint(vec![1.0; 10]).validate(&m, &[]).unwrap_err().contains("mask"));
}

#[test]
fn slerp_runs_between_the_two_noises_at_constant_norm() {
    let d = 256;
    let z0 = Noise::new(1).normals(0, 0, 1, d);
    let z1 = Noise::new(2).normals(0, 0, 1, d);
    let rows = slerp_rows(&z0, &z1, 5);
    assert_eq!(&rows[..d], z0.as_slice());
    let last = &rows[4 * d..];
    assert!(last.iter().zip(&z1).all(|(a, b)| (a - b).abs() < 1e-5));
    let norm = |r: &[f32]| dot(r, r).sqrt();
    let (n0, n1) = (norm(&z0), norm(&z1));
    for i in 0..5 {
        let n = norm(&rows[i * d..(i + 1) * d]);
        assert!(n > 0.9 * n0.min(n1) && n < 1.1 * n0.max(n1), "row {i}: norm {n}");
    }
}
