//! Noise-level grids and training curricula: pure functions returning plain vectors.

/// Karras grid (EDM eq. 5; CM §3): `sigma_i = (sigma_min^(1/rho) + (i-1)/(N-1) (sigma_max^(1/rho) - sigma_min^(1/rho)))^rho`,
/// `i = 1..N`, ascending (`sigma_1 = sigma_min`, `sigma_N = sigma_max`). Needs `n >= 2`.
pub fn karras(n: usize, sigma_min: f64, sigma_max: f64, rho: f64) -> Vec<f64> {
    assert!(n >= 2, "a Karras grid needs at least two levels");
    let lo = libm::pow(sigma_min, 1.0 / rho);
    let hi = libm::pow(sigma_max, 1.0 / rho);
    (0..n)
        .map(|i| {
            if i == 0 {
                sigma_min
            } else if i == n - 1 {
                sigma_max
            } else {
                libm::pow(lo + i as f64 / (n - 1) as f64 * (hi - lo), rho)
            }
        })
        .collect()
}

/// EDM's sampling grid: the Karras grid descending from `sigma_max` with a final `0` (EDM Alg. 1-2).
pub fn karras_sampling(steps: usize, sigma_min: f64, sigma_max: f64, rho: f64) -> Vec<f64> {
    let mut s = if steps == 1 { vec![sigma_max] } else { karras(steps, sigma_min, sigma_max, rho) };
    s.reverse();
    s.push(0.0);
    s
}

/// Discretisation curricula for consistency training.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", deny_unknown_fields)]
pub enum Curriculum {
    /// CM (Song et al. 2023, Appendix C): `N(k) = ceil(sqrt(k/K ((s1+1)^2 - s0^2) + s0^2) - 1) + 1`,
    /// target EMA `mu(k) = exp(s0 ln mu0 / N(k))`.
    Cm { s0: u32, s1: u32, mu0: f64 },
    /// iCT (Song & Dhariwal 2024, §3.4): `N(k) = min(s0 2^floor(k/K'), s1) + 1`,
    /// `K' = floor(K / (log2 floor(s1/s0) + 1))`; target EMA `mu = 0`.
    Ict { s0: u32, s1: u32 },
    /// A fixed grid of `n` levels and a constant target EMA `mu` (CD: CM Table 3 uses `N = 18` on CIFAR-10).
    Fixed { n: u32, mu: f64 },
    /// ECT (Geng et al. 2024, "Consistency Models Made Easy"): no grid. `t` is drawn continuously and
    /// paired with `r = max(0, t (1 - q^-(s+1) n(t)))`, `n(t) = 1 + k sigmoid(-b t)` ([`ect_r`]), at stage
    /// `s = min(floor(k_step / floor(K / stages)), stages - 1)` ([`ect_stage`]); target EMA `mu = 0`. Stage
    /// 0 pairs most `t` with `r = 0`, the data itself: diffusion training, which a diffusion model's
    /// weights already solve; each stage halves (`q = 2`) the gap `t - r`.
    Ect { q: f64, k: f64, b: f64, stages: u32 },
}

impl Curriculum {
    /// CM's CIFAR-10 constants: `s0 = 2, s1 = 150, mu0 = 0.9`.
    pub const CM: Curriculum = Curriculum::Cm { s0: 2, s1: 150, mu0: 0.9 };
    /// iCT's constants: `s0 = 10, s1 = 1280`.
    pub const ICT: Curriculum = Curriculum::Ict { s0: 10, s1: 1280 };
    /// ECT's CIFAR-10 constants (its code's defaults, `run_ecm.sh`): `q = 2, k = 8, b = 1`, the gap halved
    /// every 250 of 2000 ticks: 8 stages.
    pub const ECT: Curriculum = Curriculum::Ect { q: 2.0, k: 8.0, b: 1.0, stages: 8 };

    /// Number of discretisation levels `N(k)` at training step `k` of `total` (= K); `None` for ECT,
    /// which has no grid.
    pub fn n(&self, k: u64, total: u64) -> Option<usize> {
        let total = total.max(1);
        Some(match *self {
            Curriculum::Cm { s0, s1, .. } => cm_n(s0, s1, k, total),
            Curriculum::Ict { s0, s1 } => {
                let doublings = libm::floor(libm::log2(libm::floor(s1 as f64 / s0 as f64)));
                let k_prime = libm::floor(total as f64 / (doublings + 1.0)).max(1.0) as u64;
                let exp = (k / k_prime).min(62) as u32;
                let n = (s0 as u64).saturating_mul(1u64 << exp).min(s1 as u64);
                n as usize + 1
            }
            Curriculum::Fixed { n, .. } => (n as usize).max(2),
            Curriculum::Ect { .. } => return None,
        })
    }

    /// Target-network EMA decay `mu(k)` (0 means the target is `stopgrad(theta)`).
    pub fn mu(&self, k: u64, total: u64) -> f64 {
        match *self {
            Curriculum::Cm { s0, s1, mu0 } => {
                libm::exp(s0 as f64 * libm::log(mu0) / cm_n(s0, s1, k, total.max(1)) as f64)
            }
            Curriculum::Ict { .. } | Curriculum::Ect { .. } => 0.0,
            Curriculum::Fixed { mu, .. } => mu,
        }
    }
}

/// CM's `N(k)` (`total >= 1`).
fn cm_n(s0: u32, s1: u32, k: u64, total: u64) -> usize {
    let (s0, s1) = (s0 as f64, s1 as f64);
    let frac = k.min(total) as f64 / total as f64;
    let inner = libm::sqrt(frac * ((s1 + 1.0).powi(2) - s0 * s0) + s0 * s0);
    (libm::ceil(inner - 1.0) as usize + 1).max(2)
}

/// ECT's stage at training step `k` of `total` (= K): `min(floor(k / floor(K / stages)), stages - 1)`,
/// so the last stage is reached and kept (ECT's `stage = tick // double`, its run 8 stages long).
pub fn ect_stage(k: u64, total: u64, stages: u32) -> u32 {
    let stages = stages.max(1) as u64;
    let period = (total.max(1) / stages).max(1);
    (k / period).min(stages - 1) as u32
}

/// ECT's mapping from `t` to the paired level `r` at stage `s` ("Consistency Models Made Easy", §3; its
/// code's `t_to_r_sigmoid`): `r = max(0, t (1 - q^-(s+1) n(t)))`, `n(t) = 1 + k sigmoid(-b t)`. `r < t` for
/// every `t > 0`; `r / t` grows with `t` and with `s`, towards 1.
pub fn ect_r(t: f64, stage: u32, q: f64, k: f64, b: f64) -> f64 {
    let sigmoid = |x: f64| 1.0 / (1.0 + libm::exp(-x));
    let n_t = 1.0 + k * sigmoid(-b * t);
    let decay = libm::pow(q, -(stage as f64 + 1.0));
    (t * (1.0 - decay * n_t)).max(0.0)
}

/// iCT lognormal index distribution (iCT §3.5): `p(i) ∝ erf((ln sigma_{i+1} - P_mean)/(sqrt2 P_std)) - erf((ln sigma_i - P_mean)/(sqrt2 P_std))`
/// for `i = 1..N-1` (returned 0-based, length `N - 1`, normalised).
pub fn lognormal_index_probs(sigmas: &[f64], p_mean: f64, p_std: f64) -> Vec<f64> {
    let cdf = |s: f64| libm::erf((libm::log(s) - p_mean) / (core::f64::consts::SQRT_2 * p_std));
    let w: Vec<f64> = sigmas.windows(2).map(|p| cdf(p[1]) - cdf(p[0])).collect();
    let total: f64 = w.iter().sum();
    w.into_iter().map(|v| v / total).collect()
}

/// Cumulative sums, for drawing indices with [`crate::rng::SplitMix64::categorical`].
pub fn cumulative(p: &[f64]) -> Vec<f64> {
    p.iter()
        .scan(0.0, |acc, &v| {
            *acc += v;
            Some(*acc)
        })
        .collect()
}

/// iCT's two-step intermediate level (iCT §4, CIFAR-10): `tau = 0.821`.
pub const TAU_ICT: f64 = 0.821;

/// Ratio between consecutive default `tau`s, `e^1.3 ≈ 3.67`. Measured on the bundled moons-ict
/// model (`cm eval`, sliced W2 at 4 steps): 0.0209 for `[3.01, 0.821, 0.224]`, against 0.0272 for
/// the interior of a 5-level Karras grid `[17.5, 2.5, 0.17]` and 0.0227 for two steps.
pub const TAU_RATIO: f64 = 3.669_296_667_619_244;

/// Default `tau` list for `k`-step consistency sampling (CM Alg. 1), strictly decreasing, `k - 1`
/// values. Two steps use iCT's `tau = 0.821`; more steps spread geometrically (ratio [`TAU_RATIO`])
/// around it, `0.821 r^((k-2)/2) .. 0.821 r^(-(k-2)/2)`, kept inside `(sigma_min, sigma_max)`.
pub fn default_taus(k: usize, sigma_min: f64, sigma_max: f64) -> Vec<f64> {
    taus_around(TAU_ICT, k, sigma_min, sigma_max)
}

/// sCM's two-step intermediate time `t_mid = 1.1` (sCM §5), as an EDM noise level `sigma_data tan t_mid`.
pub fn tau_trigflow(sigma_data: f64) -> f64 {
    crate::param::trigflow_sigma(1.1, sigma_data)
}

/// The `k`-step list of [`default_taus`] centred on `centre` instead of iCT's 0.821.
pub fn taus_around(centre: f64, k: usize, sigma_min: f64, sigma_max: f64) -> Vec<f64> {
    let inside = |t: f64| t.clamp(sigma_min * 1.1, sigma_max * 0.9);
    match k {
        0 | 1 => vec![],
        2 => vec![inside(centre)],
        _ => {
            let half = (k - 2) as f64 / 2.0;
            let (hi, lo) =
                (inside(centre * libm::pow(TAU_RATIO, half)), inside(centre / libm::pow(TAU_RATIO, half)));
            let (hi, lo) = if hi > lo { (hi, lo) } else { (sigma_max * 0.9, sigma_min * 1.1) };
            (0..k - 1)
                .map(|j| {
                    libm::exp(libm::log(hi) + j as f64 / (k - 2) as f64 * (libm::log(lo) - libm::log(hi)))
                })
                .collect()
        }
    }
}
