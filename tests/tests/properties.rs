//! Invariants that hold for any weights and inputs: the boundary condition, monotone grids,
//! multistep with no taus = one step, EMA limits, distances.

use burn::prelude::*;
use cm_core::ema::ema_update;
use cm_core::net::{AdaNorm, Architecture, MlpConfig, TimeEmbedding, UNetConfig};
use cm_core::param::{NoiseRange, Parameterisation};
use cm_core::rng::Noise;
use cm_core::sample::{consistency_sample, multistep, normals};
use cm_core::schedule::{Curriculum, default_taus, ect_r, ect_stage, karras, karras_sampling};
use cm_core::{Denoiser, ModelConfig};
use cm_tests::{Randomise, host, max_abs_diff, small_unet};
use proptest::prelude::*;

fn model(p: Parameterisation, seed: u64) -> (Denoiser, Device) {
    let mlp = MlpConfig {
        dim: 2,
        hidden: 32,
        blocks: 2,
        emb_dim: 16,
        embedding: TimeEmbedding::Fourier { scale: 1.0, seed },
        dropout: 0.0,
    };
    build(Architecture::Mlp(mlp), p, seed)
}

/// A small image U-Net (2 channels, 8×8, two levels, attention at 4 px) with random weights.
fn unet(p: Parameterisation, seed: u64, dropout: f64) -> (Denoiser, Device) {
    build(Architecture::UNet(unet_config(dropout)), p, seed)
}

fn unet_config(dropout: f64) -> UNetConfig {
    small_unet(2, true, dropout, AdaNorm::Group)
}

fn build(architecture: Architecture, p: Parameterisation, seed: u64) -> (Denoiser, Device) {
    let device = Device::flex();
    device.seed(seed);
    let cfg = ModelConfig { architecture, parameterisation: p, range: NoiseRange::default() };
    let mut m = cfg.init(&device);
    // Zero-initialised output layers would make F = 0 and the test vacuous: perturb every weight.
    m = perturb(m, seed);
    (m, device)
}

/// Adds seeded noise to every parameter so the network output is far from zero.
fn perturb(m: Denoiser, seed: u64) -> Denoiser {
    let device = Device::flex();
    device.seed(seed ^ 0x55);
    let random = m.clone().map(&mut Randomise(0.5));
    ema_update(m, &random, 0.0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// CM eq. 8: f(x, sigma_min) = x for any weights and any x (TrigFlow at sigma = 0).
    #[test]
    fn boundary_condition_holds_for_random_weights(seed in 0u64..1000, scale in 0.1f32..20.0) {
        for p in [Parameterisation::Consistency, Parameterisation::TrigFlow] {
            let (m, device) = model(p, seed);
            let x = normals(&Noise::new(seed), 0, 0, 64, 2, &device) * scale;
            let sigma = p.boundary_sigma(&m.range).unwrap();
            let f = m.forward(x.clone(), &[sigma]);
            let (a, b) = (host(f), host(x));
            prop_assert!(max_abs_diff(&a, &b) <= 1e-5 * scale.max(1.0), "{p:?}: {}", max_abs_diff(&a, &b));
            // ...and the network does matter away from the boundary.
            let away = host(m.forward(normals(&Noise::new(seed), 0, 0, 64, 2, &device), &[1.0]));
            prop_assert!(max_abs_diff(&away, &host(normals(&Noise::new(seed), 0, 0, 64, 2, &device))) > 1e-3);
        }
    }

    /// The same boundary condition for the image U-Net (`D = 2·8·8`).
    #[test]
    fn boundary_condition_holds_for_the_unet(seed in 0u64..1000) {
        let (m, device) = unet(Parameterisation::Consistency, seed, 0.0);
        let d = m.dim();
        prop_assert_eq!(d, 128);
        let x = normals(&Noise::new(seed), 0, 0, 4, d, &device);
        let f = m.forward(x.clone(), &[m.range.sigma_min]);
        prop_assert!(max_abs_diff(&host(f), &host(x.clone())) <= 1e-5);
        prop_assert!(max_abs_diff(&host(m.forward(x.clone(), &[1.0])), &host(x)) > 1e-3);
    }

    /// Karras grids increase strictly from sigma_min to sigma_max.
    #[test]
    fn karras_grid_is_monotone(n in 2usize..2000, smin in 1e-4f64..0.1, ratio in 10f64..1e5, rho in 1f64..10.0) {
        let g = karras(n, smin, smin * ratio, rho);
        prop_assert_eq!(g.len(), n);
        prop_assert_eq!(g[0], smin);
        prop_assert_eq!(g[n - 1], smin * ratio);
        prop_assert!(g.windows(2).all(|w| w[1] > w[0]));
        let s = karras_sampling(n, smin, smin * ratio, rho);
        prop_assert!(s.windows(2).all(|w| w[1] < w[0]));
        prop_assert_eq!(*s.last().unwrap(), 0.0);
    }

    /// Both curricula are non-decreasing in k and end at s1 + 1 levels; CM's mu(k) rises too.
    #[test]
    fn curricula_are_monotone(total in 10u64..1_000_000) {
        for c in [Curriculum::CM, Curriculum::ICT] {
            let ks: Vec<u64> = (0..=50).map(|i| i * total / 50).collect();
            let ns: Vec<usize> = ks.iter().map(|&k| c.n(k, total).unwrap()).collect();
            prop_assert!(ns.windows(2).all(|w| w[1] >= w[0]), "{c:?} {ns:?}");
            let mus: Vec<f64> = ks.iter().map(|&k| c.mu(k, total)).collect();
            prop_assert!(mus.windows(2).all(|w| w[1] >= w[0]));
        }
        prop_assert_eq!(Curriculum::CM.n(total, total), Some(151));
    }

    /// ECT's stages rise from 0 to the last in K steps; its pair `r` lies in `[0, t)`, rises with the
    /// stage and with `t`, and the gap `t - r` shrinks by `q` per stage once `r > 0`.
    #[test]
    fn ect_pairs_close_in(
        total in 8u64..1_000_000, stages in 1u32..16, t in 0.002f64..80.0, q in 1.5f64..4.0,
    ) {
        let ks: Vec<u64> = (0..=64).map(|i| i * (total - 1) / 64).collect();
        let s: Vec<u32> = ks.iter().map(|&k| ect_stage(k, total, stages)).collect();
        prop_assert_eq!(s[0], 0);
        prop_assert!(s.windows(2).all(|w| w[1] >= w[0]), "{s:?}");
        // The last stage is reached (a run shorter than its stages ends at stage K - 1).
        prop_assert_eq!(ect_stage(total - 1, total, stages) as u64, (stages as u64).min(total) - 1);
        let mut before: Option<f64> = None;
        for stage in 0..stages {
            let r = ect_r(t, stage, q, 8.0, 1.0);
            prop_assert!((0.0..t).contains(&r), "t={t} stage={stage} r={r}");
            prop_assert!(ect_r(t * 1.01, stage, q, 8.0, 1.0) >= r);
            if let Some(r0) = before {
                prop_assert!(r >= r0);
                if r0 > 0.0 {
                    let (g0, g) = (t - r0, t - r);
                    // t - r loses the digits of t it cancels: allow a few ulps of t.
                    prop_assert!((g * q - g0).abs() <= 1e-9 * g0 + 1e-14 * t * q, "t={t} stage={stage}: gap {g} after {g0}");
                }
            }
            before = Some(r);
        }
    }

    /// Default taus decrease and stay inside (sigma_min, sigma_max).
    #[test]
    fn default_taus_are_decreasing(k in 1usize..40) {
        let t = default_taus(k, 0.002, 80.0);
        prop_assert_eq!(t.len(), k - 1);
        prop_assert!(t.windows(2).all(|w| w[1] < w[0]));
        prop_assert!(t.iter().all(|&v| v > 0.002 && v < 80.0));
    }
}

/// Multistep sampling with an empty tau list is exactly one-step sampling, and one tau equal to
/// sigma_min changes nothing (the re-noise is zero and f(x, sigma_min) = x).
#[test]
fn multistep_with_one_tau_is_one_step() {
    let (m, device) = model(Parameterisation::Consistency, 3);
    let noise = Noise::new(11);
    let one = host(consistency_sample(&m, None, &noise, 0, 128, &[], &device).unwrap());
    let z = normals(&noise, 0, 0, 128, 2, &device);
    let same = host(multistep(&m, None, z.clone(), &[], |_| panic!("no re-noise for one step"), |x| x));
    assert_eq!(one, same);
    let at_min =
        host(multistep(&m, None, z, &[m.range.sigma_min], |_| normals(&noise, 1, 0, 128, 2, &device), |x| x));
    assert!(max_abs_diff(&one, &at_min) < 1e-5);
}

/// Samples do not depend on the batch they are drawn in.
#[test]
fn samples_do_not_depend_on_batch_size() {
    let (m, device) = model(Parameterisation::Consistency, 5);
    let noise = Noise::new(2);
    let all = host(consistency_sample(&m, None, &noise, 0, 64, &[0.821], &device).unwrap());
    let tail = host(consistency_sample(&m, None, &noise, 32, 32, &[0.821], &device).unwrap());
    assert!(max_abs_diff(&all[64..], &tail) < 1e-5);
}

/// EMA with mu = 0 copies the online weights; mu = 1 keeps the old ones.
#[test]
fn ema_limits() {
    let (a, device) = model(Parameterisation::Consistency, 1);
    let (b, _) = model(Parameterisation::Consistency, 2);
    let x = normals(&Noise::new(0), 0, 0, 16, 2, &device);
    let copy = ema_update(a.clone(), &b, 0.0);
    assert!(max_abs_diff(&host(copy.forward(x.clone(), &[1.0])), &host(b.forward(x.clone(), &[1.0]))) < 1e-6);
    let keep = ema_update(a.clone(), &b, 1.0);
    assert!(max_abs_diff(&host(keep.forward(x.clone(), &[1.0])), &host(a.forward(x, &[1.0]))) < 1e-6);
}

/// U-Net outputs of one image do not depend on the other images in the batch (GroupNorm and attention
/// act within an image), and `[B, C·H·W]` rows go through a save/load round trip unchanged.
#[test]
fn unet_rows_are_independent_and_weights_round_trip() {
    let (m, device) = unet(Parameterisation::Consistency, 7, 0.0);
    let d = m.dim();
    let x = normals(&Noise::new(3), 0, 0, 6, d, &device);
    let sigmas = [0.5, 2.0, 10.0, 0.1, 40.0, 1.0];
    let all = host(m.forward(x.clone(), &sigmas));
    let last = host(m.forward(x.clone().slice([4..6, 0..d]), &sigmas[4..]));
    assert!(max_abs_diff(&all[4 * d..], &last) < 1e-5);
    let bytes = cm_core::card::weights_to_bytes(&m).unwrap();
    let cfg = ModelConfig {
        architecture: Architecture::UNet(unet_config(0.0)),
        parameterisation: Parameterisation::Consistency,
        range: NoiseRange::default(),
    };
    let loaded = cm_core::card::load_denoiser(&cfg, bytes, &device).unwrap();
    assert_eq!(host(loaded.forward(x.clone(), &sigmas)), all);
}

/// The same weights give the same bytes every time they are saved (burn fills the header's metadata
/// from a `HashMap`, whose order differs from one map to the next; `card::weights_to_bytes` sorts it), and
/// the header keeps safetensors' 8-byte alignment.
#[test]
fn saving_the_same_weights_gives_the_same_bytes() {
    let (m, _) = unet(Parameterisation::Consistency, 7, 0.0);
    let first = cm_core::card::weights_to_bytes(&m).unwrap();
    for i in 0..8 {
        assert!(cm_core::card::weights_to_bytes(&m).unwrap() == first, "save {i} differs from the first");
    }
    let n = u64::from_le_bytes(first[..8].try_into().unwrap()) as usize;
    assert_eq!(n % 8, 0, "header length {n}");
    let header: serde_json::Value = serde_json::from_slice(&first[8..8 + n]).unwrap();
    assert_eq!(header["__metadata__"]["producer"], "burn");
}

/// iCT's shared dropout: the same masks give the same output twice, fresh masks a different one.
#[test]
fn unet_dropout_masks_are_shared_when_passed() {
    let (m, device) = unet(Parameterisation::Consistency, 9, 0.3);
    let d = m.dim();
    let x = normals(&Noise::new(4), 0, 0, 3, d, &device);
    let noise = Noise::new(5);
    let masks = m
        .dropout_masks(3, &noise, cm_core::objective::Progress::new(0, 1).streams(), &device)
        .expect("dropout > 0 gives masks");
    let a = host(m.forward_masked(x.clone(), &[1.0], None, Some(&masks)));
    let b = host(m.forward_masked(x.clone(), &[1.0], None, Some(&masks)));
    assert_eq!(a, b);
    let other =
        m.dropout_masks(3, &noise, cm_core::objective::Progress::new(1, 1).streams(), &device).unwrap();
    assert!(max_abs_diff(&a, &host(m.forward_masked(x, &[1.0], None, Some(&other)))) > 1e-4);
}

/// A class-conditional U-Net: no labels and all-zero label rows are the same input (no class); each
/// class changes the output; an unconditional network's card stays as it was (no `classes` field).
#[test]
fn conditional_unet_takes_one_hot_classes_and_zero_rows_mean_no_class() {
    let mut cfg = unet_config(0.0);
    cfg.classes = 3;
    let (m, device) = build(Architecture::UNet(cfg), Parameterisation::Consistency, 21);
    assert_eq!(m.classes(), 3);
    let x = normals(&Noise::new(4), 0, 0, 4, m.dim(), &device);
    let none = host(m.forward(x.clone(), &[2.0]));
    let zero = cm_core::model::one_hot(&[None; 4], 3, &device).unwrap();
    assert_eq!(none, host(m.forward_labelled(x.clone(), &[2.0], Some(&zero))));
    let out = |c: usize| {
        let l = cm_core::model::one_hot(&[Some(c); 4], 3, &device).unwrap();
        host(m.forward_labelled(x.clone(), &[2.0], Some(&l)))
    };
    let (a, b) = (out(0), out(2));
    assert!(max_abs_diff(&a, &none) > 1e-3 && max_abs_diff(&a, &b) > 1e-3);
    // Rows are independent: row 1's class changes row 1 only.
    let mixed = cm_core::model::one_hot(&[Some(0), Some(2), Some(0), Some(0)], 3, &device).unwrap();
    let mix = host(m.forward_labelled(x, &[2.0], Some(&mixed)));
    let d = m.dim();
    assert_eq!(mix[..d], a[..d]);
    assert_eq!(mix[d..2 * d], b[d..2 * d]);
    assert_eq!(mix[2 * d..], a[2 * d..]);
    // The boundary condition holds for every class.
    let at_min = host(m.forward_labelled(
        normals(&Noise::new(5), 0, 0, 4, d, &device),
        &[m.range.sigma_min],
        Some(&cm_core::model::one_hot(&[Some(1); 4], 3, &device).unwrap()),
    ));
    let x5 = host(normals(&Noise::new(5), 0, 0, 4, d, &device));
    assert!(max_abs_diff(&at_min, &x5) < 1e-5);
    let json = serde_json::to_string(&unet_config(0.0)).unwrap();
    assert!(!json.contains("classes"), "{json}");
}

/// Classifier-free guidance `D_w = D + w (D_c - D)`: `w = 1` is the conditional denoiser, `w = 0` the
/// unconditional one, `w = 3` the extrapolation by the formula; no labels means no guidance. Sampling
/// refuses guidance without classes, guidance of consistency jumps, and a weight out of range.
#[test]
fn classifier_free_guidance_is_the_papers_extrapolation_and_is_checked() {
    use cm_core::model::{Guided, one_hot};
    use cm_core::{Plan, Rows, Taus};
    let mut cfg = unet_config(0.0);
    cfg.classes = 3;
    let (m, device) = build(Architecture::UNet(cfg), Parameterisation::Edm, 23);
    let x = normals(&Noise::new(6), 0, 0, 2, m.dim(), &device);
    let labels = one_hot(&[Some(1), Some(2)], 3, &device).unwrap();
    let sigma = [1.5];
    let u = host(m.forward(x.clone(), &sigma));
    let c = host(m.forward_labelled(x.clone(), &sigma, Some(&labels)));
    let guided = |w: f64| host(Guided { labels: Some(&labels), guidance: w }.denoise(&m, x.clone(), &sigma));
    assert!(max_abs_diff(&guided(1.0), &c) < 1e-6);
    assert_eq!(guided(0.0), u, "w = 0 is the unconditional denoiser itself");
    let by_formula: Vec<f32> = u.iter().zip(&c).map(|(u, c)| u + 3.0 * (c - u)).collect();
    assert!(max_abs_diff(&guided(3.0), &by_formula) < 1e-4);
    assert!(max_abs_diff(&c, &u) > 1e-3, "the classes must matter for this test to mean anything");
    assert_eq!(host(Guided { labels: None, guidance: 3.0 }.denoise(&m, x, &sigma)), u);

    let noise = Noise::new(1);
    let ode = Plan::heun(5);
    let classes = [0, 2];
    let rows = Rows::new(&noise, 0, 2).with_classes(Some(&classes));
    assert!(ode.run(&m, rows.with_guidance(2.0), &device, |_| {}).is_ok());
    let err = |plan: &Plan, r: Rows| plan.run(&m, r, &device, |_| {}).map(|_| ()).unwrap_err();
    let e = err(&ode, Rows::new(&noise, 0, 2).with_guidance(2.0));
    assert!(e.contains("guidance 2") && e.contains("class"), "{e}");
    let jumps = Plan::Consistency(Taus::new(vec![], &m.range, m.range.sigma_max).unwrap());
    let e = err(&jumps, rows.with_guidance(2.0));
    assert!(e.contains("built in"), "{e}");
    let (plain, _) = unet(Parameterisation::Edm, 3, 0.0);
    let e =
        ode.run(&plain, Rows::new(&noise, 0, 2).with_guidance(2.0), &device, |_| {}).map(|_| ()).unwrap_err();
    assert!(e.contains("not class-conditional"), "{e}");
    for w in [-1.0, f64::NAN, 1000.0] {
        let e = err(&ode, rows.with_guidance(w));
        assert!(e.contains("guidance must be"), "{w}: {e}");
    }
}

/// `one_hot`: a column per class, zero rows for no class, and a class out of range is an error naming it.
#[test]
fn one_hot_rows_and_their_errors() {
    let device = Device::flex();
    let t = cm_core::model::one_hot(&[Some(2), None, Some(0)], 3, &device).unwrap();
    assert_eq!(host(t), vec![0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
    let err = cm_core::model::one_hot(&[Some(3)], 3, &device).unwrap_err();
    assert!(err.contains("class 3") && err.contains("3 classes"), "{err}");
}

/// The parameter count read from a config (checked against memory caps before anything is built)
/// equals the built network's, for U-Nets of every shape the caps see, and for the MLP.
#[test]
fn parameter_count_from_the_config_matches_the_built_network() {
    let device = Device::flex();
    let mut archs = vec![Architecture::Mlp(MlpConfig {
        dim: 3,
        hidden: 24,
        blocks: 3,
        emb_dim: 8,
        embedding: TimeEmbedding::Positional { scale: 1.0 },
        dropout: 0.0,
    })];
    for (mult, res_blocks, attention, classes) in [
        (vec![1, 2], 1, vec![4], 0),
        (vec![1, 2, 2], 2, vec![], 0),
        (vec![2], 0, vec![8], 0),
        (vec![1, 2], 1, vec![], 7),
    ] {
        let mut u = small_unet(1, true, 0.0, AdaNorm::Group);
        (u.mult, u.res_blocks, u.attention, u.classes) = (mult, res_blocks, attention, classes);
        archs.push(Architecture::UNet(u));
    }
    for a in archs {
        a.validate().unwrap();
        assert_eq!(a.parameters() as usize, a.init(&device).num_params(), "{a:?}");
    }
}

/// Golden value: the JAX peer's layer-by-layer hand count of configs/mnist-ict-scratch.toml's U-Net
/// (bench/jax/unet_ict.py `hand_count`, 303,009), written independently of unet.rs.
#[test]
fn parameter_count_of_the_benchmark_unet_matches_the_jax_peers_hand_count() {
    let u = UNetConfig {
        channels: 1,
        resolution: 16,
        base: 16,
        mult: vec![1, 2, 2],
        res_blocks: 1,
        attention: vec![4],
        groups: 8,
        emb_dim: 64,
        embedding: TimeEmbedding::Fourier { scale: 20.0, seed: 0 },
        dropout: 0.0,
        ada_norm: AdaNorm::Group,
        classes: 0,
    };
    assert_eq!(Architecture::UNet(u).parameters(), 303_009);
}

/// `cm_core::host`: shapes and values survive the trip host -> tensor -> host.
#[test]
fn host_conversions_keep_shape_and_values() {
    use cm_core::host::{column, rows, to_host, vector};
    let device = Device::flex();
    let c = column(&[0.5, 2.0, -1.0], &device);
    assert_eq!(c.dims(), [3, 1]);
    assert_eq!(to_host(c).unwrap(), vec![0.5, 2.0, -1.0]);
    let r = rows(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3, &device);
    assert_eq!(r.dims(), [2, 3]);
    assert_eq!(to_host(r.slice([1..2, 0..3])).unwrap(), vec![4.0, 5.0, 6.0]);
    assert_eq!(to_host(vector(&[1e-3], &device)).unwrap(), vec![1e-3f32]);
}

/// A card read and written again holds the same values: no field is lost or changed and every number
/// survives exactly (serde_json parses floats correctly rounded only with its `float_roundtrip` feature; without
/// it a tuned tau came back one unit in the last place off), and a written card is written again
/// byte for byte.
#[test]
fn bundled_cards_survive_a_read_and_a_write() {
    let x = "0.9662839964152271";
    assert_eq!(serde_json::from_str::<f64>(x).unwrap(), x.parse::<f64>().unwrap());
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../www/models");
    let mut cards = 0;
    for entry in std::fs::read_dir(&models).unwrap() {
        let path = entry.unwrap().path().join("config.json");
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let written = cm_core::ModelCard::from_json(&text).unwrap().to_json();
        let value = |t: &str| serde_json::from_str::<serde_json::Value>(t).unwrap();
        let changed = first_difference(&value(&text), &value(&written), "");
        assert!(changed.is_none(), "{}: a read and a write changed {changed:?}", path.display());
        let again = cm_core::ModelCard::from_json(&written).unwrap().to_json();
        assert!(again == written, "{}: a second write differs from the first", path.display());
        cards += 1;
    }
    assert!(cards >= 20, "found {cards} bundled cards");
}

/// The path of the first value of `a` that `b` does not hold the same (fields `b` adds, such as a newer
/// card format's defaults, are not differences), with both sides.
fn first_difference(a: &serde_json::Value, b: &serde_json::Value, at: &str) -> Option<String> {
    use serde_json::Value::{Array, Object};
    match (a, b) {
        (Object(x), Object(y)) => x.keys().find_map(|k| match (x.get(k), y.get(k)) {
            (Some(u), Some(v)) => first_difference(u, v, &format!("{at}.{k}")),
            (u, v) => Some(format!("{at}.{k}: {u:?} became {v:?}")),
        }),
        (Array(x), Array(y)) if x.len() == y.len() => {
            x.iter().zip(y).enumerate().find_map(|(i, (u, v))| first_difference(u, v, &format!("{at}[{i}]")))
        }
        _ => (a != b).then(|| format!("{at}: {a} became {b}")),
    }
}

/// `rms_distance` is the root mean square of the difference (a golden value by hand: (3, 4) against 0
/// gives sqrt(12.5)), symmetric, 0 for equal inputs, and NaN for inputs that cannot be compared.
#[test]
fn rms_distance_is_the_root_mean_square_difference() {
    use cm_core::host::rms_distance;
    assert!((rms_distance(&[3.0, 4.0], &[0.0, 0.0]) - 12.5f64.sqrt()).abs() < 1e-12);
    assert_eq!(rms_distance(&[1.0, -2.0], &[1.0, -2.0]), 0.0);
    assert_eq!(rms_distance(&[1.0, 5.0], &[2.0, 3.0]), rms_distance(&[2.0, 3.0], &[1.0, 5.0]));
    assert!(rms_distance(&[1.0], &[1.0, 2.0]).is_nan() && rms_distance(&[], &[]).is_nan());
}

proptest! {
    /// An ODE state is drawn scaled by `sigma_data / sqrt(sigma_data^2 + sigma^2)`: 1 at sigma = 0 (the
    /// data as it is), decreasing in sigma, and `x_0 + sigma z` then has the data's spread when `x_0` has.
    #[test]
    fn ode_states_are_drawn_with_the_datas_spread(sigma in 0.0f64..100.0, more in 0.001f64..10.0) {
        use cm_core::host::state_display_scale;
        let sd = 0.5;
        prop_assert_eq!(state_display_scale(0.0, sd), 1.0);
        prop_assert!(state_display_scale(sigma + more, sd) < state_display_scale(sigma, sd));
        let spread = state_display_scale(sigma, sd) * (sd * sd + sigma * sigma).sqrt();
        prop_assert!((spread - sd).abs() < 1e-12);
    }
}
