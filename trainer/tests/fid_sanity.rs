//! Sanity of our FID-LeNet with the committed MNIST classifier (`classifiers/mnist-16`) on the committed
//! MNIST subset: training images against test images give the finite-sample floor, and the score grows
//! as noise or blur is added to the training images.

use std::path::Path;

use burn::prelude::Device;
use cm_trainer::classifier::{embed_rows, load_classifier};
use cm_trainer::data::{ImageDataset, ImageSet, Split, load_images};
use cm_trainer::eval::features::{Gaussian, frechet_distance};

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn fid(lenet: &cm_trainer::eval::lenet::LeNet, a: &[f32], b: &[f32], dim: usize) -> f64 {
    let (fa, _) = embed_rows(lenet, a, dim).unwrap();
    let (fb, _) = embed_rows(lenet, b, dim).unwrap();
    let d = fa.len() / (a.len() / dim);
    frechet_distance(&Gaussian::fit(&fa, d), &Gaussian::fit(&fb, d))
}

/// `x + s z` with a fixed pseudo-random `z` (clamped to the pixel range).
fn noisy(set: &ImageSet, s: f32) -> Vec<f32> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    set.pixels
        .iter()
        .map(|&v| {
            // xorshift64* -> two uniforms -> one normal (Box-Muller).
            let mut u = || {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                ((state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
            };
            let z = (-2.0 * u().ln()).sqrt() * (std::f64::consts::TAU * u()).cos();
            (v + s * z as f32).clamp(-1.0, 1.0)
        })
        .collect()
}

/// 3×3 box blur applied `times` times (edges clamp).
fn blurred(set: &ImageSet, times: usize) -> Vec<f32> {
    let [c, h, w] = set.shape;
    let mut px = set.pixels.clone();
    for _ in 0..times {
        let src = px.clone();
        for (i, out) in px.iter_mut().enumerate() {
            let (img, rest) = (i / (c * h * w), i % (c * h * w));
            let (ch, y, x) = (rest / (h * w), rest % (h * w) / w, rest % w);
            let mut sum = 0.0;
            for dy in -1i64..=1 {
                for dx in -1i64..=1 {
                    let yy = (y as i64 + dy).clamp(0, h as i64 - 1) as usize;
                    let xx = (x as i64 + dx).clamp(0, w as i64 - 1) as usize;
                    sum += src[img * c * h * w + ch * h * w + yy * w + xx];
                }
            }
            *out = sum / 9.0;
        }
    }
    px
}

#[test]
fn fid_lenet_is_small_between_splits_and_grows_with_noise_and_blur() {
    let device = Device::flex();
    let (card, lenet) = load_classifier(&root().join("classifiers/mnist-16"), &device).unwrap();
    assert!(card.test_accuracy > 0.98, "the committed classifier should be accurate: {}", card.test_accuracy);
    let data = root().join("tests/data/mnist");
    let train = load_images(ImageDataset::Mnist, Split::Train, 16, Some(&data)).unwrap();
    let test = load_images(ImageDataset::Mnist, Split::Test, 16, Some(&data)).unwrap();
    let d = test.dim();
    let n = test.len();
    // Training images (other digits than the test ones) against the test split, clean and degraded.
    // At n = 256 in 128 dimensions the clean score is the finite-sample floor, not 0.
    let train = train.take(n);
    let floor = fid(&lenet, &train.pixels, &test.pixels, d);
    let mut noise = vec![floor];
    noise.extend([0.2, 0.4, 0.8].iter().map(|&s| fid(&lenet, &noisy(&train, s), &test.pixels, d)));
    let mut blur = vec![floor];
    blur.extend([1, 2, 4].iter().map(|&t| fid(&lenet, &blurred(&train, t), &test.pixels, d)));
    eprintln!("FID-LeNet vs test: clean, noise 0.2/0.4/0.8: {noise:.1?}; clean, blur 1/2/4: {blur:.1?}");
    assert!(noise.windows(2).all(|w| w[1] > w[0]), "FID must grow with noise: {noise:?}");
    assert!(blur.windows(2).all(|w| w[1] > w[0]), "FID must grow with blur: {blur:?}");
    assert!(noise[3] > 4.0 * floor && blur[3] > 4.0 * floor, "noise {noise:?}, blur {blur:?}");
    // The same images score far below the floor: the floor is sampling error, not a classifier bias.
    assert!(fid(&lenet, &test.pixels, &test.pixels, d).abs() < 1e-3 * floor.max(1.0));
}
