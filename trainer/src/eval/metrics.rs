//! Sample-quality distances between two point clouds (rows of `dim` floats): sliced Wasserstein-2,
//! MMD and energy distance. Pure f64 host code, used by `cm eval`, the training loop and the tests.

use cm_core::rng::Noise;

fn rows(x: &[f32], dim: usize) -> impl Iterator<Item = &[f32]> {
    x.chunks_exact(dim)
}

fn dist(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&p, &q)| (p as f64 - q as f64).powi(2)).sum::<f64>().sqrt()
}

/// Sliced Wasserstein-2: `sqrt(mean_theta W2^2(<theta, X>, <theta, Y>))` over `projections` random
/// unit directions (seeded). Uses the first `min(n_x, n_y)` rows of each set.
pub fn sliced_w2(x: &[f32], y: &[f32], dim: usize, projections: usize, seed: u64) -> f64 {
    let n = (x.len() / dim).min(y.len() / dim);
    if n == 0 {
        return f64::NAN;
    }
    let noise = Noise::new(seed);
    let mut total = 0.0;
    for p in 0..projections {
        let mut theta: Vec<f64> = noise.normals(0x51, p, 1, dim).into_iter().map(f64::from).collect();
        let norm = theta.iter().map(|v| v * v).sum::<f64>().sqrt();
        theta.iter_mut().for_each(|v| *v /= norm);
        let project = |set: &[f32]| {
            let mut v: Vec<f64> = rows(set, dim)
                .take(n)
                .map(|r| r.iter().zip(&theta).map(|(&a, b)| a as f64 * b).sum())
                .collect();
            v.sort_by(f64::total_cmp);
            v
        };
        let (px, py) = (project(x), project(y));
        total += px.iter().zip(&py).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / n as f64;
    }
    (total / projections as f64).sqrt()
}

/// Mean of `k(a, b)` over distinct pairs of rows within one set (the unbiased U-statistic).
fn mean_within(s: &[f32], dim: usize, k: impl Fn(&[f32], &[f32]) -> f64) -> f64 {
    let r: Vec<&[f32]> = rows(s, dim).collect();
    let n = r.len() as f64;
    let mut sum = 0.0;
    for i in 0..r.len() {
        for j in i + 1..r.len() {
            sum += k(r[i], r[j]);
        }
    }
    2.0 * sum / (n * (n - 1.0))
}

/// Mean of `k(a, b)` over all pairs with `a` from `x` and `b` from `y`.
fn mean_cross(x: &[f32], y: &[f32], dim: usize, k: impl Fn(&[f32], &[f32]) -> f64) -> f64 {
    let total: f64 = rows(x, dim).map(|a| rows(y, dim).map(|b| k(a, b)).sum::<f64>()).sum();
    total / ((x.len() / dim) * (y.len() / dim)) as f64
}

/// Unbiased squared MMD with a sum of Gaussian kernels of bandwidths `[0.05, 0.1, 0.2, 0.5, 1]`
/// (for data with `sigma_data = 0.5`).
pub fn mmd2(x: &[f32], y: &[f32], dim: usize) -> f64 {
    const H: [f64; 5] = [0.05, 0.1, 0.2, 0.5, 1.0];
    let k = |a: &[f32], b: &[f32]| {
        let d2 = dist(a, b).powi(2);
        H.iter().map(|h| (-d2 / (2.0 * h * h)).exp()).sum::<f64>()
    };
    mean_within(x, dim, k) + mean_within(y, dim, k) - 2.0 * mean_cross(x, y, dim, k)
}

/// Energy distance `2 E|X - Y| - E|X - X'| - E|Y - Y'|` (Székely & Rizzo), unbiased within-set terms.
pub fn energy_distance(x: &[f32], y: &[f32], dim: usize) -> f64 {
    2.0 * mean_cross(x, y, dim, dist) - mean_within(x, dim, dist) - mean_within(y, dim, dist)
}

/// All three distances at once.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub struct Distances {
    pub sliced_w2: f64,
    pub mmd2: f64,
    pub energy: f64,
}

impl Distances {
    pub fn between(x: &[f32], y: &[f32], dim: usize, seed: u64) -> Self {
        Self {
            sliced_w2: sliced_w2(x, y, dim, 128, seed),
            mmd2: mmd2(x, y, dim),
            energy: energy_distance(x, y, dim),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliced_w2_of_a_shift_is_the_shift_projected() {
        // Shifting a cloud by (a, 0) moves every 1D projection by a cos(phi); the mean of a^2 cos^2
        // over random directions in 2D is a^2 / 2, so SW2 -> a / sqrt(2).
        let x = Noise::new(1).normals(0, 0, 2000, 2);
        let y: Vec<f32> = x.chunks(2).flat_map(|r| [r[0] + 1.0, r[1]]).collect();
        let sw = sliced_w2(&x, &y, 2, 2000, 0);
        assert!((sw - 1.0 / 2f64.sqrt()).abs() < 0.03, "{sw}");
        assert!(sliced_w2(&x, &x, 2, 64, 0) < 1e-12);
    }

    #[test]
    fn mmd_and_energy_separate_different_sets() {
        let x = Noise::new(1).normals(0, 0, 500, 2);
        let x2 = Noise::new(2).normals(0, 0, 500, 2);
        let y: Vec<f32> = Noise::new(3).normals(0, 0, 500, 2).iter().map(|v| v * 2.0).collect();
        assert!(mmd2(&x, &x2, 2).abs() < mmd2(&x, &y, 2) / 10.0);
        assert!(energy_distance(&x, &x2, 2).abs() < energy_distance(&x, &y, 2) / 10.0);
    }
}
