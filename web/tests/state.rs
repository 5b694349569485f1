//! The playground state natively, on the bundled models: what the page does, without a browser.

use burn::prelude::Device;
use cm_web::state::Playground;

fn bundled(name: &str) -> (String, Vec<u8>) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../www/models").join(name);
    (
        std::fs::read_to_string(dir.join("config.json")).unwrap(),
        std::fs::read(dir.join("model.safetensors")).unwrap(),
    )
}

/// A playground on the CPU with the bundled model `name` loaded.
fn with_model(name: &str) -> (Playground, Device) {
    let device = Device::flex();
    let mut p = Playground::new(device.clone());
    let (card, weights) = bundled(name);
    p.load(&card, weights).unwrap();
    (p, device)
}

#[test]
fn every_bundled_model_loads_and_samples() {
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../www/models/index.json")).unwrap(),
    )
    .unwrap();
    let device = Device::flex();
    let mut p = Playground::new(device.clone());
    for name in index["models"].as_array().unwrap() {
        let name = name.as_str().unwrap();
        let (card, weights) = bundled(name);
        assert_eq!(p.load(&card, weights).unwrap(), name, "folder name and card name agree");
        let m = p.get(name).unwrap();
        let x = if m.card.is_consistency() {
            m.sample(&m.default_taus(2), 64, 0, &device).unwrap()
        } else {
            m.teacher(9, 64, 0, &device, false).unwrap().0
        };
        let v = x.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(v.len(), 64 * m.card.model.architecture.dim(), "{name}: 64 samples of the data dimension");
        assert!(v.iter().all(|x| x.is_finite() && x.abs() < 5.0), "{name}: samples out of range");
    }
}

#[test]
fn mismatched_weights_name_the_model_and_file() {
    let mut p = Playground::new(Device::flex());
    let (card, weights) = bundled("moons-ict");
    let err = p.load(&card, weights[..weights.len() / 2].to_vec()).unwrap_err();
    assert!(err.contains("moons-ict") && err.contains("model.safetensors"), "{err}");
    let (other_card, _) = bundled("moons-edm");
    let err =
        p.load(&other_card.replace("\"hidden\": 128", "\"hidden\": 64"), bundled("moons-edm").1).unwrap_err();
    assert!(err.contains("shape"), "{err}");
    assert!(p.load("{\"format\": 3}", vec![]).unwrap_err().contains("config.json"));
}

#[test]
fn trajectories_have_one_state_per_step() {
    let (p, device) = with_model("moons-edm");
    let (_, path) = p.get("moons-edm").unwrap().teacher(35, 8, 1, &device, true).unwrap();
    assert_eq!(path.len(), 18 + 1);
}

#[test]
fn a_consistency_jump_from_sigma_min_is_the_identity() {
    let (mut p, device) = with_model("moons-ict");
    let m = p.get("moons-ict").unwrap();
    let x = vec![0.3f32, -0.2, 1.0, 0.5];
    let y = m.denoise(&x, m.model.range.sigma_min, &device).unwrap().into_data().try_to_vec::<f32>().unwrap();
    assert!(x.iter().zip(&y).all(|(a, b)| (a - b).abs() < 1e-5), "{y:?}");
    assert!(m.denoise(&x[..3], 1.0, &device).is_err(), "odd number of values for 2D points");
    let (card, weights) = bundled("moons-edm");
    p.load(&card, weights).unwrap();
    let s = p.get("moons-edm").unwrap().teacher_sigmas(35);
    assert_eq!((s.len(), *s.last().unwrap()), (19, 0.0));
}

/// The page's editing calls on the bundled MNIST model: inpainting keeps the unmasked pixels of a one-step
/// sample, every task gives finite images, and bad requests are explained.
#[test]
fn editing_keeps_known_pixels_and_explains_bad_requests() {
    let (p, device) = with_model("mnist-ict");
    let m = p.get("mnist-ict").unwrap();
    let y: Vec<f32> = m.sample(&[], 1, 3, &device).unwrap().into_data().try_to_vec::<f32>().unwrap();
    let d = y.len();
    let mask: Vec<f32> = (0..d).map(|i| if i % 16 < 8 { 1.0 } else { 0.0 }).collect();
    let x = m.edit("inpaint", &y, &mask, &[0.821], 0.0, 2, 3, 0, &device).unwrap();
    let x: Vec<f32> = x.into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(x.len(), 3 * d);
    for (i, v) in x.iter().enumerate() {
        if mask[i % d] == 0.0 {
            assert!((v - y[i % d]).abs() < 1e-5, "known pixel {i} moved");
        }
    }
    assert!(x.iter().enumerate().any(|(i, v)| mask[i % d] > 0.0 && (v - y[i % d]).abs() > 0.05));
    for (task, sigma) in [("super-resolution", 0.0), ("denoise", 0.5), ("stroke", 2.0)] {
        let x = m.edit(task, &y, &[], &[0.2], sigma, 4, 2, 0, &device).unwrap();
        assert!(x.into_data().try_to_vec::<f32>().unwrap().iter().all(|v| v.is_finite()), "{task}");
    }
    let frames = m.interpolate(0, 1, 5, &[], &device).unwrap();
    assert_eq!(frames.dims(), [5, d]);
    assert!(m.edit("colourise", &y, &[], &[], 0.0, 2, 1, 0, &device).unwrap_err().contains("3-channel"));
    assert!(m.edit("sharpen", &y, &[], &[], 0.0, 2, 1, 0, &device).unwrap_err().contains("sharpen"));
    assert!(
        m.edit("inpaint", &y[..10], &mask, &[], 0.0, 2, 1, 0, &device).unwrap_err().contains("10 values")
    );
    assert!(m.edit("denoise", &y, &[], &[0.9], 0.5, 2, 1, 0, &device).unwrap_err().contains("tau 0.9"));
}

/// An edit's default tau list is core's `Edit::default_taus` (what `cm edit` uses): the model's 4-step
/// list below the start level, which is sigma_max for edits from the prior.
#[test]
fn edit_taus_are_the_models_four_step_list_below_the_start() {
    let (p, _) = with_model("mnist-ict");
    let m = p.get("mnist-ict").unwrap();
    let four = m.default_taus(4);
    assert_eq!(m.edit_taus("inpaint", 0.0).unwrap(), four);
    for sigma in [0.5, 2.0] {
        let want: Vec<f64> = four.iter().copied().filter(|&t| t < sigma).collect();
        assert_eq!(m.edit_taus("denoise", sigma).unwrap(), want);
        assert_eq!(m.edit_taus("stroke", sigma).unwrap(), want);
        assert_eq!(want, cm_core::edit::Edit::denoise(sigma).default_taus(&m.model));
    }
    assert!(m.edit_taus("sharpen", 1.0).unwrap_err().contains("unknown edit"));
}
