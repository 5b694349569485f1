//! Forward-mode JVP (`cm_core::jvp`) against central finite differences, in f64, on random weights and
//! inputs, for every network and layer our models use (MLP; U-Net with GroupNorm, SiLU, attention,
//! both adaptive norms, dropout masks, up/down sampling, skip concatenation).
//!
//! This file is its own test binary because it switches the flex device's default float type to f64
//! (a per-process setting).

use burn::prelude::*;
use burn::tensor::{FloatDType, TensorData};
use cm_core::ModelConfig;
use cm_core::jvp::Dual;
use cm_core::net::{AdaNorm, Architecture, DropoutMasks, MlpConfig, Network, TimeEmbedding};
use cm_core::param::{NoiseRange, Parameterisation};
use cm_core::rng::Noise;
use cm_tests::{Randomise, small_unet};

/// The flex device with f64 as its default float type (configured once per process).
fn f64_device() -> Device {
    let mut device = Device::flex();
    let _ = device.configure(FloatDType::F64);
    assert_eq!(device.settings().float_dtype, FloatDType::F64, "device must compute in f64");
    device
}

fn tensor<const D: usize>(values: Vec<f64>, shape: [usize; D], device: &Device) -> Tensor<D> {
    let t = Tensor::<D>::from_data(TensorData::new(values, shape), device);
    assert_eq!(t.dtype(), burn::tensor::DType::F64);
    t
}

fn randn(seed: u64, stream: u64, n: usize, scale: f64) -> Vec<f64> {
    Noise::new(seed).normals(stream, 0, n, 1).into_iter().map(|v| v as f64 * scale).collect()
}

fn host(t: Tensor<2>) -> Vec<f64> {
    t.into_data().convert::<f64>().try_to_vec::<f64>().expect("f64 data")
}

fn network(architecture: Architecture, seed: u64, device: &Device) -> Network {
    device.seed(seed);
    let cfg = ModelConfig {
        architecture,
        parameterisation: Parameterisation::TrigFlow,
        range: NoiseRange::default(),
    };
    cfg.init(device).net.map(&mut Randomise(0.4))
}

/// Checks `forward_dual`'s tangent against `(F(x + h ẋ, c + h ċ) - F(x - h ẋ, c - h ċ)) / 2h`, and its value
/// against the plain forward pass.
fn check(net: &Network, b: usize, seed: u64, masks: Option<&DropoutMasks>, device: &Device) -> f64 {
    check_labelled(net, b, seed, None, masks, device)
}

/// [`check`] for a class-conditional network given `labels` (one-hot rows, constants of the JVP).
fn check_labelled(
    net: &Network,
    b: usize,
    seed: u64,
    labels: Option<&Tensor<2>>,
    masks: Option<&DropoutMasks>,
    device: &Device,
) -> f64 {
    let d = net.data_dim();
    let x = randn(seed, 1, b * d, 1.0);
    let xdot = randn(seed, 2, b * d, 1.0);
    let c = randn(seed, 3, b, 0.5);
    let cdot = randn(seed, 4, b, 1.0);
    let x_at = |h: f64| {
        let v: Vec<f64> = x.iter().zip(&xdot).map(|(a, t)| a + h * t).collect();
        tensor(v, [b, d], device)
    };
    let c_at = |h: f64| tensor(c.iter().zip(&cdot).map(|(a, t)| a + h * t).collect(), [b], device);
    let dual = net.forward_dual(
        Dual::new(x_at(0.0), tensor(xdot.clone(), [b, d], device)),
        Dual::new(c_at(0.0), tensor(cdot.clone(), [b], device)),
        labels,
        masks,
    );
    let plain = host(net.forward(x_at(0.0), c_at(0.0), labels, masks));
    let value = host(dual.v);
    let exact = host(dual.t.expect("a tangent"));
    // Central differences err by O(h^2 f'''): measured 1e-3 -> 2e-3, 1e-4 -> 2e-5, 1e-5 -> 2e-7, 1e-6 -> 2e-9
    // on the worst seed, i.e. truncation, not a wrong rule; 1e-6 keeps round-off (~1e-10) below it.
    let h = 1e-6;
    let plus = host(net.forward(x_at(h), c_at(h), labels, masks));
    let minus = host(net.forward(x_at(-h), c_at(-h), labels, masks));
    let fd: Vec<f64> = plus.iter().zip(&minus).map(|(p, m)| (p - m) / (2.0 * h)).collect();
    let scale = exact.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let err = exact.iter().zip(&fd).fold(0.0f64, |m, (e, f)| m.max((e - f).abs())) / scale;
    let value_err = value.iter().zip(&plain).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!(value_err < 1e-9, "forward_dual's value differs from forward by {value_err}");
    assert!(scale > 1e-3, "tangent is ~0 ({scale}): the check would be vacuous");
    err
}

fn unet(ada_norm: AdaNorm, dropout: f64) -> Architecture {
    Architecture::UNet(small_unet(2, true, dropout, ada_norm))
}

#[test]
fn mlp_jvp_matches_finite_differences() {
    let device = f64_device();
    for seed in 0..3 {
        let arch = Architecture::Mlp(MlpConfig {
            dim: 2,
            hidden: 16,
            blocks: 2,
            emb_dim: 8,
            embedding: TimeEmbedding::Fourier { scale: 1.0, seed },
            dropout: 0.0,
        });
        let net = network(arch, seed, &device);
        let err = check(&net, 5, seed, None, &device);
        assert!(err < 2e-8, "seed {seed}: relative JVP error {err}");
    }
}

#[test]
fn unet_jvp_matches_finite_differences_with_both_adaptive_norms_and_dropout() {
    let device = f64_device();
    for (seed, ada) in [(0, AdaNorm::Group), (1, AdaNorm::Double)] {
        let arch = unet(ada, 0.3);
        let net = network(arch, seed, &device);
        let b = 3;
        let sizes = net.mask_sizes();
        let masks = DropoutMasks(
            sizes
                .iter()
                .enumerate()
                .map(|(k, &n)| {
                    let m: Vec<f64> = Noise::new(seed)
                        .uniforms(10 + k as u64, 0, b, n)
                        .into_iter()
                        .map(|u| if u < 0.3 { 0.0 } else { 1.0 / 0.7 })
                        .collect();
                    tensor(m, [b, n], &device)
                })
                .collect(),
        );
        let err = check(&net, b, seed, Some(&masks), &device);
        assert!(err < 2e-8, "{ada:?}: relative JVP error {err}");
        let err = check(&net, b, seed + 7, None, &device);
        assert!(err < 2e-8, "{ada:?} without dropout: relative JVP error {err}");
    }
}

/// A TrigFlow (or EDM) denoiser around a random MLP, on the f64 device.
fn denoiser(p: Parameterisation, seed: u64, device: &Device) -> cm_core::Denoiser {
    let arch = Architecture::Mlp(MlpConfig {
        dim: 2,
        hidden: 16,
        blocks: 2,
        emb_dim: 8,
        embedding: TimeEmbedding::Positional { scale: 3.0 },
        dropout: 0.0,
    });
    let cfg = ModelConfig { architecture: arch, parameterisation: p, range: NoiseRange::default() };
    device.seed(seed);
    let mut m = cfg.init(device);
    m.net = m.net.map(&mut Randomise(0.4));
    m
}

/// A class-conditional U-Net: the label embedding is a constant of the JVP (mixed classes and a no-class
/// row), and the tangent still matches finite differences.
#[test]
fn conditional_unet_jvp_matches_finite_differences() {
    let device = f64_device();
    let mut cfg = small_unet(2, true, 0.0, AdaNorm::Double);
    cfg.classes = 4;
    let net = network(Architecture::UNet(cfg), 3, &device);
    let labels = tensor(vec![0., 1., 0., 0., 0., 0., 0., 0., 0., 0., 0., 1.], [3, 4], &device);
    let err = check_labelled(&net, 3, 3, Some(&labels), None, &device);
    assert!(err < 2e-8, "relative JVP error {err}");
}

/// The exact EDM -> TrigFlow conversion: an EDM teacher's velocity is `-sigma_data F_edm(x_t / sigma_data,
/// ln(sigma) / 4)` at `sigma = sigma_data tan t`, computed here straight from the raw network.
#[test]
fn edm_teacher_velocity_is_its_negated_network_in_trigflow_time() {
    let device = f64_device();
    let teacher = denoiser(Parameterisation::Edm, 5, &device);
    let sd = teacher.range.sigma_data;
    let b = 6;
    let t: Vec<f64> = (0..b).map(|i| 0.05 + 1.45 * i as f64 / (b - 1) as f64).collect();
    let x_t = tensor(randn(5, 1, b * 2, 1.0), [b, 2], &device);
    let got =
        host(cm_core::objective::trigflow_velocity(&teacher, cm_core::model::Guided::NONE, x_t.clone(), &t));
    let c_noise: Vec<f64> = t.iter().map(|&t| 0.25 * (sd * t.tan()).ln()).collect();
    let f = host(teacher.net.forward(x_t / sd, tensor(c_noise, [b], &device), None, None));
    let err = got.iter().zip(&f).fold(0.0f64, |m, (g, f)| m.max((g + sd * f).abs()));
    // f32 host-side coefficients (the denoiser's scalings) bound the agreement.
    assert!(err < 1e-5, "velocity differs from -sigma_data F_edm by {err}");
}

/// sCM Algorithm 1 assembled independently on the host: at initialisation (`w_phi = 0`, student =
/// target) the loss is `mean ||g||^2 / (||g|| + c)^2 / D`, with `dF/dt` by central differences along the
/// trajectory. Checks sCT and sCD (EDM teacher), exact JVP and the finite-difference fallback.
#[test]
fn scm_loss_matches_a_host_computation_of_algorithm_1() {
    use cm_core::objective::{AdaptiveWeight, JvpMode, Progress, ScmConfig, scm_loss};
    let device = f64_device();
    let model = denoiser(Parameterisation::TrigFlow, 1, &device);
    let teacher = denoiser(Parameterisation::Edm, 2, &device);
    let sd = model.range.sigma_data;
    let (b, d) = (16, 2);
    let x0_v = randn(9, 7, b * d, 1.0);
    let x0 = tensor(x0_v.clone(), [b, d], &device);
    let noise = Noise::new(4);
    let progress = Progress::new(2, 10);
    let weight = AdaptiveWeight::new(&device);
    for (distil, mode) in
        [(false, JvpMode::Exact), (true, JvpMode::Exact), (false, JvpMode::FiniteDifference { h: 1e-4 })]
    {
        let cfg = ScmConfig { tangent_warmup: 4, jvp: mode, ..ScmConfig::default() };
        let teach = distil.then_some(&teacher);
        let step = scm_loss(
            &model,
            &model,
            &weight,
            x0.clone(),
            None,
            &cfg,
            progress,
            &noise,
            teach.map(|t| (t, 1.0)),
        );
        assert_eq!(step.r, 0.5);
        let got: f64 = step.loss.into_data().convert::<f64>().try_to_vec::<f64>().unwrap()[0];

        // Host side: the same draws (streams of step k), then Algorithm 1 line by line.
        let s = progress.streams();
        let t: Vec<f64> = noise
            .normals(s.level(), 0, b, 1)
            .into_iter()
            .map(|n| ((cfg.p_mean + cfg.p_std * n as f64).exp() / sd).atan())
            .collect();
        let z: Vec<f64> = noise.normals(s.z(), 0, b, d).into_iter().map(|v| v as f64 * sd).collect();
        let at = |i: usize, j: usize| i * d + j;
        let x_t: Vec<f64> = (0..b * d).map(|k| t[k / d].cos() * x0_v[k] + t[k / d].sin() * z[k]).collect();
        let dxdt: Vec<f64> = if distil {
            let c_noise: Vec<f64> = t.iter().map(|&t| 0.25 * (sd * t.tan()).ln()).collect();
            let f = host(teacher.net.forward(
                tensor(x_t.iter().map(|v| v / sd).collect(), [b, d], &device),
                tensor(c_noise, [b], &device),
                None,
                None,
            ));
            f.iter().map(|f| -sd * f).collect()
        } else {
            (0..b * d).map(|k| t[k / d].cos() * z[k] - t[k / d].sin() * x0_v[k]).collect()
        };
        let net_at = |h: f64| {
            let x: Vec<f64> = (0..b * d).map(|k| (x_t[k] + h * dxdt[k]) / sd).collect();
            let tt: Vec<f64> = t.iter().map(|t| t + h).collect();
            host(model.net.forward(tensor(x, [b, d], &device), tensor(tt, [b], &device), None, None))
        };
        let f = net_at(0.0);
        let h = 1e-6;
        let (plus, minus) = (net_at(h), net_at(-h));
        let r = 0.5;
        let mut want = 0.0;
        for (i, ti) in t.iter().enumerate() {
            let (c, sn) = (ti.cos(), ti.sin());
            let g: Vec<f64> = (0..d)
                .map(|j| {
                    let k = at(i, j);
                    let df_dt = (plus[k] - minus[k]) / (2.0 * h);
                    -c * c * (sd * f[k] - dxdt[k]) - r * c * sn * (x_t[k] + sd * df_dt)
                })
                .collect();
            let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
            want += (norm / (norm + cfg.tangent_c)).powi(2) / d as f64;
        }
        want /= b as f64;
        let rel = (got - want).abs() / want;
        // The loss takes its per-row coefficients (cos t, sin t) through f32 columns.
        assert!(rel < 1e-5, "distil {distil}, {mode:?}: loss {got} vs host {want} (rel {rel})");
    }
}

/// ECT (Geng et al. 2024) assembled independently on the host: `t` from the step's level stream, `r` from
/// the mapping, the target `f(x0 + r z, r)` of the same network (`stopgrad(theta)`) or the data itself
/// where `r <= sigma_min`, pseudo-Huber distance, weight `1 / (t - r)`. The consistency scalings are
/// written out here (CM Appendix C), not taken from the crate. Checked at stage 0, where the data is the
/// target for most rows, and at a late stage, where every row's pair is close.
#[test]
fn ect_loss_matches_a_host_computation() {
    use cm_core::objective::{CtConfig, IndexSampling, Levels, Progress, ct_loss};
    use cm_core::schedule::{Curriculum, ect_r};
    let device = f64_device();
    let model = denoiser(Parameterisation::Consistency, 3, &device);
    let NoiseRange { sigma_min, sigma_max, sigma_data: sd } = model.range;
    let (b, d) = (32, 2);
    let x0_v = randn(11, 2, b * d, 1.0);
    let x0 = tensor(x0_v.clone(), [b, d], &device);
    let noise = Noise::new(7);
    let (p_mean, p_std) = (0.0, 1.5);
    let cfg = CtConfig {
        curriculum: Curriculum::ECT,
        index_sampling: IndexSampling::Lognormal { p_mean, p_std },
        ..CtConfig::ect()
    };
    let f = |x: &[f64], sigma: &[f64]| -> Vec<f64> {
        let c_in: Vec<f64> = (0..b * d).map(|k| x[k] / (sigma[k / d].powi(2) + sd * sd).sqrt()).collect();
        let c_noise: Vec<f64> = sigma.iter().map(|s| 0.25 * s.ln()).collect();
        let net =
            host(model.net.forward(tensor(c_in, [b, d], &device), tensor(c_noise, [b], &device), None, None));
        (0..b * d)
            .map(|k| {
                let s = sigma[k / d];
                let c_skip = sd * sd / ((s - sigma_min).powi(2) + sd * sd);
                let c_out = sd * (s - sigma_min) / (sd * sd + s * s).sqrt();
                c_skip * x[k] + c_out * net[k]
            })
            .collect()
    };
    for (k, total, want_stage) in [(0, 80, 0), (75, 80, 7)] {
        let progress = Progress::new(k, total);
        let step = ct_loss(&model, &model.valid(), x0.clone(), None, &cfg, progress, &noise, None);
        assert_eq!(step.levels, Levels::Ect { stage: want_stage });
        assert_eq!(step.mu, 0.0);
        let got: f64 = step.loss.into_data().convert::<f64>().try_to_vec::<f64>().unwrap()[0];

        let s = progress.streams();
        let t: Vec<f64> = (0..b)
            .map(|i| {
                (p_mean + p_std * noise.generator(s.level(), i as u64).normal())
                    .exp()
                    .clamp(sigma_min, sigma_max)
            })
            .collect();
        let r: Vec<f64> = t.iter().map(|&t| ect_r(t, want_stage, 2.0, 8.0, 1.0)).collect();
        let data_rows = r.iter().filter(|&&r| r <= sigma_min).count();
        if want_stage == 0 {
            assert!(data_rows > 0 && data_rows < b, "stage 0 should mix data and model targets: {data_rows}");
        }
        let z: Vec<f64> = noise.normals(s.z(), 0, b, d).into_iter().map(|v| v as f64).collect();
        let x_t: Vec<f64> = (0..b * d).map(|k| x0_v[k] + t[k / d] * z[k]).collect();
        let x_r: Vec<f64> = (0..b * d).map(|k| x0_v[k] + r[k / d] * z[k]).collect();
        let student = f(&x_t, &t);
        let target = f(&x_r, &r.iter().map(|&r| r.max(sigma_min)).collect::<Vec<_>>());
        let c = 0.00054 * (d as f64).sqrt();
        let mut want = 0.0;
        for i in 0..b {
            let (goal, lambda) = if r[i] > sigma_min {
                (&target[i * d..(i + 1) * d], 1.0 / (t[i] - r[i]))
            } else {
                (&x0_v[i * d..(i + 1) * d], 1.0 / t[i])
            };
            let sq: f64 = (0..d).map(|j| (student[i * d + j] - goal[j]).powi(2)).sum();
            want += lambda * ((sq + c * c).sqrt() - c);
        }
        want /= b as f64;
        let rel = (got - want).abs() / want;
        // Per-row levels and weights reach the loss through f32 columns.
        assert!(rel < 1e-5, "stage {want_stage}: loss {got} vs host {want} (rel {rel})");
    }
}
