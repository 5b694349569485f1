//! The playground state natively, on the bundled models: what the page does, without a browser.

use burn::prelude::Device;
use cm_web::state::{self, Playground};

fn bundled(name: &str) -> (String, Vec<u8>) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../www/models").join(name);
    (
        std::fs::read_to_string(dir.join("config.json")).unwrap(),
        std::fs::read(dir.join("model.safetensors")).unwrap(),
    )
}

/// No class and no guidance: the conditioning of an unconditional model's rows.
const NO_CLASS: (Option<&[usize]>, f64) = (None, 1.0);

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
    let names: Vec<&str> = index["models"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    let unique: std::collections::BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "index.json lists a model twice: {names:?}");
    for name in index["models"].as_array().unwrap() {
        let name = name.as_str().unwrap();
        let (card, weights) = bundled(name);
        assert_eq!(p.load(&card, weights).unwrap(), name, "folder name and card name agree");
        let m = p.get(name).unwrap();
        let x = if m.is_consistency() {
            state::sample(&m, 2, None, 64, 0, None, &device).unwrap().0
        } else {
            state::teacher(&m, 9, 64, 0, (None, 1.0), &device, false).unwrap().0
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
    // A failed load under a loaded model's name leaves that model as it was.
    let (card, weights) = bundled("moons-ict");
    p.load(&card, weights.clone()).unwrap();
    assert!(p.load(&card, weights[..weights.len() / 2].to_vec()).is_err());
    assert!(p.get("moons-ict").is_ok() && p.card("moons-ict").is_ok(), "the loaded model survives");
}

#[test]
fn trajectories_have_one_state_per_step() {
    let (p, device) = with_model("moons-edm");
    let (_, path, plan) =
        state::teacher(&p.get("moons-edm").unwrap(), 35, 8, 1, (None, 1.0), &device, true).unwrap();
    assert_eq!((path.len(), plan.nfe()), (18 + 1, 35));
}

#[test]
fn a_consistency_jump_from_sigma_min_is_the_identity() {
    let (mut p, device) = with_model("moons-ict");
    let m = p.get("moons-ict").unwrap();
    let x = vec![0.3f32, -0.2, 1.0, 0.5];
    let y = state::denoise(&m, &x, m.denoiser.range.sigma_min, &device).unwrap();
    let y = y.into_data().try_to_vec::<f32>().unwrap();
    assert!(x.iter().zip(&y).all(|(a, b)| (a - b).abs() < 1e-5), "{y:?}");
    assert!(state::denoise(&m, &x[..3], 1.0, &device).is_err(), "odd number of values for 2D points");
    let (card, weights) = bundled("moons-edm");
    p.load(&card, weights).unwrap();
    let s = state::teacher_sigmas(&p.get("moons-edm").unwrap(), 35);
    assert_eq!((s.len(), *s.last().unwrap()), (19, 0.0));
}

/// The page's editing calls on the bundled MNIST model: inpainting keeps the unmasked pixels of a one-step
/// sample, every task gives finite images, and bad requests are explained.
#[test]
fn editing_keeps_known_pixels_and_explains_bad_requests() {
    let (p, device) = with_model("mnist-ict");
    let m = p.get("mnist-ict").unwrap();
    let host = |t: burn::Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
    let y = host(state::sample(&m, 1, None, 1, 3, None, &device).unwrap().0);
    let d = y.len();
    let mask: Vec<f32> = (0..d).map(|i| if i % 16 < 8 { 1.0 } else { 0.0 }).collect();
    let edit = |task: &str, y: &[f32], mask: &[f32], taus: Option<Vec<f64>>, sigma: f64, n: usize| {
        state::edit(&m, task, y, mask, taus, sigma, 4, n, 0, None, &device).map(|(e, _)| host(e.results))
    };
    let x = edit("inpaint", &y, &mask, Some(vec![0.821]), 0.0, 3).unwrap();
    assert_eq!(x.len(), 3 * d);
    for (i, v) in x.iter().enumerate() {
        if mask[i % d] == 0.0 {
            assert!((v - y[i % d]).abs() < 1e-5, "known pixel {i} moved");
        }
    }
    assert!(x.iter().enumerate().any(|(i, v)| mask[i % d] > 0.0 && (v - y[i % d]).abs() > 0.05));
    for (task, sigma) in [("super-resolution", 0.0), ("denoise", 0.5), ("stroke", 2.0)] {
        let x = edit(task, &y, &[], Some(vec![0.2]), sigma, 2).unwrap();
        assert!(x.iter().all(|v| v.is_finite()), "{task}");
    }
    let (frames, taus) = state::interpolate(&m, 0, 1, 5, None, None, &device).unwrap();
    assert_eq!((frames.dims(), taus.nfe()), ([5, d], 1));
    assert!(edit("colourise", &y, &[], None, 0.0, 1).unwrap_err().contains("3-channel"));
    assert!(edit("sharpen", &y, &[], None, 0.0, 1).unwrap_err().contains("sharpen"));
    assert!(edit("inpaint", &y[..10], &mask, None, 0.0, 1).unwrap_err().contains("10 values"));
    assert!(edit("denoise", &y, &[], Some(vec![0.9]), 0.5, 1).unwrap_err().contains("tau 0.9"));
    let interp = state::interpolate(&m, 0, 1, 5, Some(vec![80.0]), None, &device).unwrap_err();
    assert!(interp.contains("tau 80"), "interpolation checks its taus by the one rule: {interp}");
}

/// An edit's default tau list is core's `Edit::default_taus` (what `cm edit` uses): the model's 4-step
/// list below the start level, which is sigma_max for edits from the prior.
#[test]
fn edit_taus_are_the_models_four_step_list_below_the_start() {
    let (p, device) = with_model("mnist-ict");
    let m = p.get("mnist-ict").unwrap();
    let y = vec![0.0f32; m.dim()];
    let mask: Vec<f32> = (0..m.dim()).map(|i| (i % 2) as f32).collect();
    // The list the page's edit call uses when it passes no taus (null), as `cm edit`.
    let used = |task: &str, mask: &[f32], sigma: f64| {
        state::edit(&m, task, &y, mask, None, sigma, 2, 1, 0, None, &device)
            .map(|(_, taus)| taus.as_slice().to_vec())
    };
    let four = m.denoiser.default_taus(4);
    assert_eq!(used("inpaint", &mask, 0.0).unwrap(), four);
    for sigma in [0.5, 2.0] {
        let want: Vec<f64> = four.iter().copied().filter(|&t| t < sigma).collect();
        assert_eq!(used("denoise", &[], sigma).unwrap(), want);
        assert_eq!(used("stroke", &[], sigma).unwrap(), want);
        assert_eq!(want, cm_core::edit::Edit::denoise(sigma).default_taus(&m.denoiser));
    }
    assert!(used("sharpen", &[], 1.0).unwrap_err().contains("unknown edit"));
}

/// The denoising input is core's (`Edit::inputs`: the reference plus row `i` of the seed's denoising
/// stream): the page's wasm call and `cm edit denoise` start from the same noisy images for a seed, and
/// another seed gives other noise.
#[test]
fn denoising_inputs_come_from_the_seeds_noise() {
    let (p, device) = with_model("mnist-ict");
    let m = p.get("mnist-ict").unwrap();
    let y = vec![0.25f32; m.dim()];
    let inputs =
        |seed| state::edit(&m, "denoise", &y, &[], None, 0.5, 2, 3, seed, None, &device).unwrap().0.inputs;
    let eps = cm_core::rng::Noise::new(7).normals(cm_core::edit::DENOISE_STREAM, 0, 3, m.dim());
    let want: Vec<f32> = eps.iter().map(|e| 0.25 + 0.5 * e).collect();
    assert_eq!(inputs(7), want);
    assert_ne!(inputs(7), inputs(8));
}

/// Page facts come from core's card: the one consistency rule, the image shape from the architecture;
/// an upload becomes a row by core's map (BT.601 for a grey model).
#[test]
fn facts_are_cores() {
    let (mut p, _) = with_model("mnist-ict");
    let (card, weights) = bundled("mnist-edm");
    p.load(&card, weights).unwrap();
    let ict = state::facts(p.card("mnist-ict").unwrap());
    assert_eq!(
        (ict["consistency"].as_bool(), ict["shape"].clone()),
        (Some(true), serde_json::json!([1, 16, 16]))
    );
    assert_eq!(state::facts(p.card("mnist-edm").unwrap())["consistency"].as_bool(), Some(false));
    // Whose ODE a model's jumps follow: the teacher its recipe names, else the weights it started from.
    assert_eq!(ict["teacher"], "mnist-edm", "mnist-ict starts from mnist-edm (init_from)");
    assert!(state::facts(p.card("mnist-edm").unwrap())["teacher"].is_null(), "a teacher trained from data");
    let (card, weights) = bundled("mnist-cd");
    p.load(&card, weights).unwrap();
    assert_eq!(state::facts(p.card("mnist-cd").unwrap())["teacher"], "mnist-edm", "CD names its teacher");
    let rgba: Vec<u8> = (0..16 * 16).flat_map(|_| [255u8, 0, 0, 255]).collect();
    let grey = state::image(&p.get("mnist-ict").unwrap(), &rgba).unwrap();
    assert!(grey.iter().all(|v| (v - (0.299 - 0.587 - 0.114) as f32).abs() < 1e-6));
    assert!(state::image(&p.get("mnist-ict").unwrap(), &rgba[..8]).unwrap_err().contains("16x16"));
}

/// Every bundled card, no weights: each dataset leads with its consistency model of the best recorded
/// two-step quality and its teacher; the rest follow best first. Weights load later, by name.
#[test]
fn a_dataset_leads_with_its_best_two_step_model_and_its_teacher() {
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../www/models/index.json")).unwrap(),
    )
    .unwrap();
    let mut p = Playground::new(Device::flex());
    for name in index["models"].as_array().unwrap() {
        p.add_card(&bundled(name.as_str().unwrap()).0).unwrap();
    }
    assert!(p.models.is_empty(), "cards alone load no weights");
    assert!(p.datasets().contains(&"mnist".to_string()));
    for dataset in p.datasets() {
        let l = p.lineup(&dataset);
        let q = |name: &str| state::facts(p.card(name).unwrap())["quality"].as_f64();
        let featured = l.featured.clone().unwrap();
        let rest: Vec<_> = l.others.iter().filter(|n| p.card(n).unwrap().is_consistency()).collect();
        for other in &rest {
            assert!(
                q(&featured) <= q(other),
                "{dataset}: {featured} ({:?}) ahead of {other} ({:?})",
                q(&featured),
                q(other)
            );
        }
        assert!(!p.card(l.teacher.as_ref().unwrap()).unwrap().is_consistency(), "{dataset}: a teacher");
        assert_eq!(1 + 1 + l.others.len(), p.cards.values().filter(|c| p.view(c) == dataset).count());
    }
    // MNIST at 28 px is its own view: its FID-LeNet comes from the 28 px classifier, so its models are
    // ranked only against each other, and the 16 px view keeps its own lead.
    assert!(p.datasets().contains(&"mnist-28".to_string()), "views: {:?}", p.datasets());
    assert_eq!(p.view(p.card("mnist-edm-28").unwrap()), "mnist-28");
    assert_eq!(p.view(p.card("mnist-edm").unwrap()), "mnist");
    assert_eq!(p.lineup("mnist-28").featured.as_deref(), Some("mnist-cd-28"));
    assert_eq!(p.lineup("mnist-28").teacher.as_deref(), Some("mnist-edm-28"));
    assert!(!p.lineup("mnist").others.iter().any(|n| n.ends_with("-28")));
    // Measured on the bundled cards (README): sCT leads on MNIST (two-step FID-LeNet 14.0 against sCD's
    // 15.1 and CD's 19.8), CD on moons, iCT on Fashion-MNIST.
    assert_eq!(p.lineup("mnist").featured.as_deref(), Some("mnist-sct"));
    // Beside it, the teacher it distils (mnist-trigflow), not the EDM teacher of the other MNIST models.
    assert_eq!(p.lineup("mnist").teacher.as_deref(), Some("mnist-trigflow"));
    assert!(p.lineup("mnist").others.contains(&"mnist-edm".to_string()));
    assert_eq!(p.lineup("moons").featured.as_deref(), Some("moons-cd"));
    // The colour set: CD from its EDM teacher (two-step FID-LeNet 158.6 against iCT's 422.1), beside
    // that teacher.
    assert_eq!(p.lineup("emoji").featured.as_deref(), Some("emoji-cd"));
    assert!(p.lineup("emoji").others.contains(&"emoji-ict".to_string()));
    assert_eq!(p.lineup("emoji").teacher.as_deref(), Some("emoji-edm"));
    let (card, weights) = bundled("mnist-cd");
    assert_eq!(p.load_weights("mnist-cd", weights).unwrap(), "mnist-cd");
    assert!(p.get("mnist-cd").is_ok() && p.get("mnist-ict").is_err());
    assert!(
        p.load_weights("mnist-ict", bundled("mnist-edm").1)
            .unwrap_err()
            .contains("model.safetensors for mnist-ict")
    );
    drop(card);
}

/// A card's tuned list (`cm tune`) is the page's default two-step list; other step counts keep the
/// built-in default, and a list the card does not hold is refused when the card is read.
#[test]
fn a_cards_tuned_taus_are_the_pages_default() {
    let device = Device::flex();
    let mut p = Playground::new(device.clone());
    let (card, weights) = bundled("moons-ict");
    let mut json: serde_json::Value = serde_json::from_str(&card).unwrap();
    json["taus"] = serde_json::json!({"2": [1.7]});
    p.load(&json.to_string(), weights.clone()).unwrap();
    let m = p.get("moons-ict").unwrap();
    let (_, plan) = state::sample(&m, 2, None, 8, 0, None, &device).unwrap();
    assert_eq!(plan, m.consistency_plan(cm_core::TauRequest::Given(vec![1.7])).unwrap());
    let (_, four) = state::sample(&m, 4, None, 8, 0, None, &device).unwrap();
    let built_in = m.denoiser.default_taus(4);
    assert_eq!(four, m.consistency_plan(cm_core::TauRequest::Given(built_in)).unwrap());
    json["taus"] = serde_json::json!({"2": [0.5, 0.2]});
    let err = p.load(&json.to_string(), weights).unwrap_err();
    assert!(err.contains("config.json") && err.contains("taus") && err.contains("2 steps need 1"), "{err}");
}

/// The educators' strip on the bundled MNIST pair (core's `Model::ode_jumps`): its origin is the
/// teacher's ODE sample of the same rows, its first jump the student's one-step sample, and the
/// consistency property shows — from every level above sigma = 1 the student's jump lands closer to the
/// trajectory's origin than the teacher's own denoised estimate (measured with `cm trajectory --n 256`:
/// 0.16 against 0.47 at sigma_max; the assertion leaves a margin). Bad requests are explained.
#[test]
fn jumps_from_the_teachers_trajectories_land_near_its_origin() {
    let (mut p, device) = with_model("mnist-cd");
    let (card, weights) = bundled("mnist-edm");
    p.load(&card, weights).unwrap();
    let (student, teacher) = (p.get("mnist-cd").unwrap(), p.get("mnist-edm").unwrap());
    let host = |t: burn::prelude::Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
    let r = state::ode_jumps(&teacher, &student, 35, 8, 8, 3, NO_CLASS, &device).unwrap();
    assert_eq!(r.sigmas.len(), 8);
    assert_eq!(r.states.len(), 8);
    assert_eq!(r.sigmas[0], teacher.denoiser.range.sigma_max);
    assert!(r.sigmas.windows(2).all(|w| w[0] > w[1] && w[1] > 0.0), "{:?}", r.sigmas);
    let grid = state::teacher_sigmas(&teacher, 35);
    assert_eq!(*r.sigmas.last().unwrap(), grid[grid.len() - 2], "the last state above 0 is included");
    let origin = host(r.origin);
    let ode = host(state::teacher(&teacher, 35, 8, 3, (None, 1.0), &device, false).unwrap().0);
    assert!(origin.iter().zip(&ode).all(|(a, b)| (a - b).abs() < 1e-5), "origin = the teacher's ODE sample");
    let one_step = host(state::sample(&student, 1, None, 8, 3, None, &device).unwrap().0);
    let jumps: Vec<Vec<f32>> = r.jumps.into_iter().map(host).collect();
    assert!(
        jumps[0].iter().zip(&one_step).all(|(a, b)| (a - b).abs() < 1e-4),
        "first jump = one-step sample"
    );
    let denoised: Vec<Vec<f32>> = r.denoised.into_iter().map(host).collect();
    for (l, &sigma) in r.sigmas.iter().enumerate().filter(|(_, s)| **s > 1.0) {
        let (j, d) = (
            cm_core::host::rms_distance(&jumps[l], &origin),
            cm_core::host::rms_distance(&denoised[l], &origin),
        );
        assert!(j < 0.7 * d, "sigma {sigma}: jump {j} vs denoised {d}");
    }
    // Fewer states than levels asked: every state above 0 (9 NFE: 5 steps); one level: sigma_max.
    let few = state::ode_jumps(&teacher, &student, 9, 8, 2, 3, NO_CLASS, &device).unwrap();
    assert_eq!(few.sigmas, state::teacher_sigmas(&teacher, 9)[..5].to_vec());
    assert_eq!(
        state::ode_jumps(&teacher, &student, 35, 1, 2, 3, NO_CLASS, &device).unwrap().sigmas,
        vec![80.0]
    );
    assert!(
        state::ode_jumps(&teacher, &student, 35, 8, 17, 3, NO_CLASS, &device)
            .unwrap_err()
            .contains("1 to 16")
    );
    assert!(
        state::ode_jumps(&teacher, &student, 35, 0, 4, 3, NO_CLASS, &device).unwrap_err().contains("levels")
    );
    assert!(
        state::ode_jumps(&teacher, &teacher, 35, 8, 4, 3, NO_CLASS, &device)
            .unwrap_err()
            .contains("consistency model")
    );
    assert!(
        state::ode_jumps(&student, &student, 35, 8, 4, 3, NO_CLASS, &device)
            .unwrap_err()
            .contains("no PF-ODE")
    );
    let (card, weights) = bundled("moons-edm");
    p.load(&card, weights).unwrap();
    let moons = p.get("moons-edm").unwrap();
    assert!(
        state::ode_jumps(&moons, &student, 35, 8, 4, 3, NO_CLASS, &device).unwrap_err().contains("same data")
    );
}

/// Class-conditional models have a view of their own (`mnist-classes`), led by the conditional
/// consistency model beside its conditional teacher; a class changes the sample from the same noise; no
/// class is the label-dropout branch; a class for an unconditional model, one out of range, or a class
/// list of the wrong length is refused with the reason.
#[test]
fn class_conditional_models_get_their_own_view_and_sample_by_class() {
    let device = Device::flex();
    let mut p = Playground::new(device.clone());
    for name in ["mnist-sct-cond", "mnist-trigflow-cond", "mnist-sct", "mnist-trigflow"] {
        let (card, weights) = bundled(name);
        p.load(&card, weights).unwrap();
    }
    assert!(p.datasets().contains(&"mnist-classes".to_string()), "{:?}", p.datasets());
    let lineup = p.lineup("mnist-classes");
    assert_eq!(lineup.featured.as_deref(), Some("mnist-sct-cond"));
    assert_eq!(lineup.teacher.as_deref(), Some("mnist-trigflow-cond"));
    assert!(lineup.others.is_empty(), "{lineup:?}");
    let plain = p.lineup("mnist");
    assert_eq!(plain.featured.as_deref(), Some("mnist-sct"));
    let facts = state::facts(p.card("mnist-sct-cond").unwrap());
    assert_eq!(facts["classes"], serde_json::json!(["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]));
    assert_eq!(state::facts(p.card("mnist-sct").unwrap())["classes"], serde_json::json!([]));

    let m = p.get("mnist-sct-cond").unwrap();
    let draw = |classes: Option<&[usize]>| {
        let x = state::sample(&m, 1, None, 4, 5, classes, &device).unwrap().0;
        x.into_data().try_to_vec::<f32>().unwrap()
    };
    let (three, seven, none) = (draw(Some(&[3; 4])), draw(Some(&[7; 4])), draw(None));
    let rms = |a: &[f32], b: &[f32]| {
        (a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f32>() / a.len() as f32).sqrt()
    };
    assert!(
        rms(&three, &seven) > 0.1 && rms(&three, &none) > 0.05,
        "{} {}",
        rms(&three, &seven),
        rms(&three, &none)
    );
    // Rows keep their class whatever the batch: row 1 of [3, 7, 3, 3] is row 1 of all sevens.
    let mixed = draw(Some(&[3, 7, 3, 3]));
    let d = m.dim();
    assert_eq!(mixed[d..2 * d], seven[d..2 * d]);
    assert_eq!(mixed[..d], three[..d]);
    let t = p.get("mnist-trigflow-cond").unwrap();
    let teacher = state::teacher(&t, 9, 2, 5, (Some(&[3, 7]), 1.0), &device, false).unwrap().0;
    assert_eq!(teacher.dims(), [2, d]);

    let err = |r: Result<_, String>| r.map(|_| ()).unwrap_err();
    let unconditional = p.get("mnist-sct").unwrap();
    let e = err(state::sample(&unconditional, 1, None, 2, 0, Some(&[3, 3]), &device));
    assert!(e.contains("not class-conditional"), "{e}");
    let e = err(state::sample(&m, 1, None, 2, 0, Some(&[3, 10]), &device));
    assert!(e.contains("class 10") && e.contains("10 classes"), "{e}");
    let e = err(state::sample(&m, 1, None, 3, 0, Some(&[3, 3]), &device));
    assert!(e.contains("2 classes given for 3 samples"), "{e}");
}

/// The class reaches the strip, the editor and interpolation of a class-conditional pair: the strip
/// follows each class's ODE (its origin is the teacher's sample of those classes) and the student jumps
/// with each row's class, landing nearer that origin than it does with no class; an edit's results
/// differ by class where they are generated and keep the known pixels; every refusal names its cause.
#[test]
fn classes_reach_the_strip_the_editor_and_interpolation() {
    let device = Device::flex();
    let mut p = Playground::new(device.clone());
    for name in ["mnist-sct-cond", "mnist-trigflow-cond", "mnist-sct"] {
        let (card, weights) = bundled(name);
        p.load(&card, weights).unwrap();
    }
    let (m, t) = (p.get("mnist-sct-cond").unwrap(), p.get("mnist-trigflow-cond").unwrap());
    let host = |x: burn::prelude::Tensor<2>| x.into_data().try_to_vec::<f32>().unwrap();
    let rms = cm_core::host::rms_distance;
    let d = m.dim();

    // The strip: 8 trajectories of digits 0-7.
    let classes: Vec<usize> = (0..8).collect();
    let r = state::ode_jumps(&t, &m, 35, 4, 8, 3, (Some(&classes), 1.0), &device).unwrap();
    let origin = host(r.origin);
    let ode = host(state::teacher(&t, 35, 8, 3, (Some(&classes), 1.0), &device, false).unwrap().0);
    assert!(origin.iter().zip(&ode).all(|(a, b)| (a - b).abs() < 1e-5), "origin = the class's ODE sample");
    let plain = state::ode_jumps(&t, &m, 35, 4, 8, 3, NO_CLASS, &device).unwrap();
    let (with, without) =
        (rms(&host(r.jumps[0].clone()), &origin), rms(&host(plain.jumps[0].clone()), &origin));
    assert!(with < without, "from sigma_max, the class's jump {with} vs no class {without}");
    let guided = state::ode_jumps(&t, &m, 35, 4, 8, 3, (Some(&classes), 2.0), &device).unwrap();
    assert!(rms(&host(guided.origin), &origin) > 0.01, "guidance changes the ODE the strip follows");
    let e = state::ode_jumps(&t, &p.get("mnist-sct").unwrap(), 35, 4, 2, 3, (Some(&[3, 7]), 1.0), &device)
        .map(|_| ())
        .unwrap_err();
    assert!(e.contains("10 classes") && e.contains("mnist-sct takes 0"), "{e}");
    let e = state::ode_jumps(&t, &m, 35, 4, 2, 3, (None, 2.0), &device).map(|_| ()).unwrap_err();
    assert!(e.contains("guidance 2") && e.contains("class"), "{e}");

    // The editor: the lower half of a digit filled in as a 3 and as a 7.
    let y = host(state::sample(&m, 1, None, 1, 11, Some(&[1]), &device).unwrap().0);
    let mask: Vec<f32> = (0..d).map(|i| if i >= d / 2 { 1.0 } else { 0.0 }).collect();
    let fill = |classes: Option<&[usize]>| {
        let (e, _) = state::edit(&m, "inpaint", &y, &mask, None, 0.0, 2, 2, 5, classes, &device).unwrap();
        host(e.results)
    };
    let (threes, sevens, none) = (fill(Some(&[3, 3])), fill(Some(&[7, 7])), fill(None));
    let half = |x: &[f32], lower: bool| -> Vec<f32> {
        let r = if lower { d / 2..d } else { 0..d / 2 };
        x[r].to_vec()
    };
    assert!(rms(&half(&threes, true), &half(&sevens, true)) > 0.05, "the class changes the filled half");
    assert!(rms(&half(&threes, true), &half(&none, true)) > 0.02, "a class is not the no-class branch");
    for x in [&threes, &sevens] {
        assert!(rms(&half(x, false), &half(&y, false)) < 1e-6, "the known half is kept");
    }
    let mixed = fill(Some(&[3, 7]));
    assert_eq!(mixed[d..], sevens[d..], "each result has its own class, whatever its neighbours'");
    let e = state::edit(&m, "inpaint", &y, &mask, None, 0.0, 2, 2, 5, Some(&[3]), &device)
        .map(|_| ())
        .unwrap_err();
    assert!(e.contains("1 classes given for 2 samples"), "{e}");
    let u = p.get("mnist-sct").unwrap();
    let e = state::edit(&u, "inpaint", &y, &mask, None, 0.0, 2, 1, 5, Some(&[3]), &device)
        .map(|_| ())
        .unwrap_err();
    assert!(e.contains("not class-conditional"), "{e}");

    // Interpolation within a class.
    let (a, _) = state::interpolate(&m, 0, 1, 3, None, Some(&[4, 4, 4]), &device).unwrap();
    let (b, _) = state::interpolate(&m, 0, 1, 3, None, Some(&[9, 9, 9]), &device).unwrap();
    assert!(rms(&host(a), &host(b)) > 0.05, "the class changes the path's images");
    let e = state::interpolate(&m, 0, 1, 3, None, Some(&[4, 4]), &device).map(|_| ()).unwrap_err();
    assert!(e.contains("2 classes given for 3 samples"), "{e}");
}

/// A card's `name` and `dataset` reach the page's menus and captions, and the dataset decides the view a
/// model joins: markup, an empty name, or a dataset the network cannot produce (a 2-D point model
/// labelled as an image set, or an image model as a 2D set) are refused at load, with the field named.
#[test]
fn cards_with_names_or_datasets_the_page_cannot_show_are_refused() {
    let mut p = Playground::new(Device::flex());
    let (moons, moons_weights) = bundled("moons-ict");
    let (mnist, mnist_weights) = bundled("mnist-ict");
    let card = |text: &str, field: &str, value: &str| {
        let mut v: serde_json::Value = serde_json::from_str(text).unwrap();
        v.as_object_mut().unwrap().remove("weights_sha256");
        v[field] = value.into();
        v.to_string()
    };
    let cases = [
        (card(&moons, "dataset", "<img src=x onerror=alert(1)>"), &moons_weights, "field `dataset`"),
        (card(&moons, "name", ""), &moons_weights, "field `name`"),
        (card(&moons, "name", "a\u{7}b"), &moons_weights, "field `name`"),
        (card(&moons, "dataset", "mnist"), &moons_weights, "2-D point network models one of the 2D datasets"),
        (card(&moons, "dataset", "nosuchset"), &moons_weights, "2D datasets"),
        (card(&mnist, "dataset", "moons"), &mnist_weights, "is not the 2-D point network"),
    ];
    for (text, weights, needle) in cases {
        let err = p.load(&text, weights.clone()).unwrap_err();
        assert!(err.contains(needle) && err.contains("config.json"), "{needle}: {err}");
    }
    assert!(p.datasets().iter().all(|d| d != "nosuchset" && !d.contains('<')), "{:?}", p.datasets());
    // A renamed copy of a bundled model is still welcome.
    p.load(&card(&moons, "name", "my moons"), moons_weights.clone()).unwrap();
}

/// A typed tau list is bounded like a step count: a thousand taus are refused before any step is taken.
#[test]
fn a_tau_list_longer_than_the_step_cap_is_refused() {
    let (p, device) = with_model("moons-ict");
    let m = p.get("moons-ict").unwrap();
    let long: Vec<f64> = (0..1000).map(|i| 79.0 - i as f64 * 0.07).collect();
    let err = state::sample(&m, 1001, Some(long), 4, 0, None, &device).unwrap_err();
    assert!(err.contains("1000 taus") && err.contains("at most 999"), "{err}");
}

/// An image model whose forward pass would not fit the page's memory for its 64-image grids is refused
/// when its card is read (it once loaded, then killed the wasm app mid-sample: 256 px with attention at
/// 64 px holds 4096² attention weights per image). The same weights at 128 px (attention at 32 px) fit.
#[test]
fn a_model_too_big_for_the_pages_memory_is_refused_at_load() {
    let mut p = Playground::new(Device::flex());
    let (mnist, weights) = bundled("mnist-ict");
    let at = |resolution: usize, attention: usize| {
        let mut v: serde_json::Value = serde_json::from_str(&mnist).unwrap();
        v.as_object_mut().unwrap().remove("weights_sha256");
        v["name"] = format!("mnist-{resolution}").into();
        v["model"]["architecture"]["resolution"] = resolution.into();
        v["model"]["architecture"]["attention"] = serde_json::json!([attention]);
        v.to_string()
    };
    let err = p.add_card(&at(256, 64)).unwrap_err();
    assert!(
        err.contains("config.json") && err.contains("working memory") && err.contains("mnist-256"),
        "{err}"
    );
    assert!(p.load(&at(256, 64), weights.clone()).is_err());
    assert_eq!(p.load(&at(128, 32), weights).unwrap(), "mnist-128");
}
