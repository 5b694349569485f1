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
}

impl Curriculum {
    /// CM's CIFAR-10 constants: `s0 = 2, s1 = 150, mu0 = 0.9`.
    pub const CM: Curriculum = Curriculum::Cm { s0: 2, s1: 150, mu0: 0.9 };
    /// iCT's constants: `s0 = 10, s1 = 1280`.
    pub const ICT: Curriculum = Curriculum::Ict { s0: 10, s1: 1280 };

    /// Number of discretisation levels `N(k)` at training step `k` of `total` (= K).
    pub fn n(&self, k: u64, total: u64) -> usize {
        let total = total.max(1);
        match *self {
            Curriculum::Cm { s0, s1, .. } => {
                let (s0, s1) = (s0 as f64, s1 as f64);
                let frac = k.min(total) as f64 / total as f64;
                let inner = libm::sqrt(frac * ((s1 + 1.0).powi(2) - s0 * s0) + s0 * s0);
                (libm::ceil(inner - 1.0) as usize + 1).max(2)
            }
            Curriculum::Ict { s0, s1 } => {
                let doublings = libm::floor(libm::log2(libm::floor(s1 as f64 / s0 as f64)));
                let k_prime = libm::floor(total as f64 / (doublings + 1.0)).max(1.0) as u64;
                let exp = (k / k_prime).min(62) as u32;
                let n = (s0 as u64).saturating_mul(1u64 << exp).min(s1 as u64);
                n as usize + 1
            }
        }
    }

    /// Target-network EMA decay `mu(k)` (0 means the target is `stopgrad(theta)`).
    pub fn mu(&self, k: u64, total: u64) -> f64 {
        match *self {
            Curriculum::Cm { s0, mu0, .. } => libm::exp(s0 as f64 * libm::log(mu0) / self.n(k, total) as f64),
            Curriculum::Ict { .. } => 0.0,
        }
    }
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

/// Default `tau` list for `k`-step consistency sampling (CM Alg. 1), descending, `k - 1` values.
/// Two steps use iCT's `tau = 0.821`; more steps use the interior of a Karras grid with `k + 1`
/// levels, so each added step refines at a lower noise level.
pub fn default_taus(k: usize, sigma_min: f64, sigma_max: f64) -> Vec<f64> {
    match k {
        0 | 1 => vec![],
        2 => vec![0.821f64.clamp(sigma_min, sigma_max)],
        _ => {
            let grid = karras(k + 1, sigma_min, sigma_max, 7.0);
            grid[1..k].iter().rev().copied().collect()
        }
    }
}
