//! Image-quality metrics on classifier feature vectors: Fréchet distance (FID formula), KID, improved
//! precision/recall, class-histogram statistics and nearest-neighbour distances (memorisation check).
//!
//! Every set of features is row-major `&[f32]`, `n` rows of `d` columns; sums run in f64. A shape that
//! does not fit (`d == 0`, a length that is not a multiple of `d`, too few rows) gives `f64::NAN`
//! rather than a panic, as in [`super::metrics`]. Pure host code: no burn, no IO.

use cm_core::rng::SplitMix64;

/// Number of rows of `x` if it holds whole rows of `d > 0` columns.
fn rows_of(x: &[f32], d: usize) -> Option<usize> {
    (d > 0 && x.len().is_multiple_of(d)).then(|| x.len() / d)
}

/// `sum_l term(a_l, b_l)` in f64 with eight independent partial sums, so the loop vectorises.
#[inline]
fn sum8(a: &[f32], b: &[f32], term: impl Fn(f64, f64) -> f64) -> f64 {
    let mut acc = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(&p, &q)| term(p as f64, q as f64)).sum();
    for (u, v) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += term(u[l] as f64, v[l] as f64);
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// `|a - b|^2` in f32 with eight independent partial sums (the hot loop of [`nearest_distances`]).
#[inline]
fn sq_dist_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(&p, &q)| (p - q) * (p - q)).sum();
    for (u, v) in ca.zip(cb) {
        for l in 0..8 {
            let t = u[l] - v[l];
            acc[l] += t * t;
        }
    }
    acc.iter().sum::<f32>() + tail
}

// ---------------------------------------------------------------------------------------------------
// Fréchet distance (Heusel et al. 2017)
// ---------------------------------------------------------------------------------------------------

/// A Gaussian `N(mu, Sigma)` fitted to feature vectors.
#[derive(Clone, Debug, PartialEq)]
pub struct Gaussian {
    /// `mu`, length `d`.
    pub mean: Vec<f64>,
    /// `Sigma`, `d x d` row-major, unbiased (divided by `n - 1`).
    pub cov: Vec<f64>,
    /// Feature dimension.
    pub d: usize,
}

impl Gaussian {
    /// Sample mean and unbiased covariance of `n` rows of `d` features (two passes: mean, then
    /// centred products). With `n < 2` rows, or a length that is not a multiple of `d`, the unknown
    /// parts are NaN (`mean` too when there are no whole rows).
    pub fn fit(features: &[f32], d: usize) -> Gaussian {
        let nan = || Gaussian { mean: vec![f64::NAN; d], cov: vec![f64::NAN; d * d], d };
        let n = match rows_of(features, d) {
            Some(n) if n > 0 => n,
            _ => return nan(),
        };
        let mut mean = vec![0.0; d];
        for row in features.chunks_exact(d) {
            mean.iter_mut().zip(row).for_each(|(m, &x)| *m += x as f64);
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        if n < 2 {
            return Gaussian { mean, ..nan() };
        }
        // Upper triangle of sum_r (x_r - mu)(x_r - mu)^T, then mirrored.
        let mut cov = vec![0.0; d * d];
        let mut c = vec![0.0; d];
        for row in features.chunks_exact(d) {
            c.iter_mut().zip(row).zip(&mean).for_each(|((c, &x), m)| *c = x as f64 - m);
            for i in 0..d {
                let ci = c[i];
                cov[i * d + i..(i + 1) * d].iter_mut().zip(&c[i..]).for_each(|(s, cj)| *s += ci * cj);
            }
        }
        for i in 0..d {
            for j in i..d {
                let v = cov[i * d + j] / (n - 1) as f64;
                cov[i * d + j] = v;
                cov[j * d + i] = v;
            }
        }
        Gaussian { mean, cov, d }
    }

    /// Whether the shapes agree with `d` and every entry is finite.
    fn is_valid(&self) -> bool {
        self.d > 0
            && self.mean.len() == self.d
            && self.cov.len() == self.d * self.d
            && self.mean.iter().chain(&self.cov).all(|v| v.is_finite())
    }
}

/// Fréchet distance between two Gaussians, the FID formula of Heusel et al. (2017):
/// `|mu_a - mu_b|^2 + tr(Sigma_a + Sigma_b - 2 (Sigma_a^{1/2} Sigma_b Sigma_a^{1/2})^{1/2})`.
///
/// The inner matrix is symmetric PSD and has the eigenvalues of `Sigma_a Sigma_b`, so the trace of its
/// square root is `sum_i sqrt(lambda_i)` (negative rounding noise clamped to 0). NaN if the
/// dimensions differ or any entry is not finite.
pub fn frechet_distance(a: &Gaussian, b: &Gaussian) -> f64 {
    if a.d != b.d || !a.is_valid() || !b.is_valid() {
        return f64::NAN;
    }
    let d = a.d;
    let mean_term: f64 = a.mean.iter().zip(&b.mean).map(|(x, y)| (x - y).powi(2)).sum();
    let trace = |s: &[f64]| (0..d).map(|i| s[i * d + i]).sum::<f64>();
    let root_a = sym_sqrt(&a.cov, d);
    let mut m = matmul(&matmul(&root_a, &b.cov, d), &root_a, d);
    symmetrise(&mut m, d);
    let (lambda, _) = sym_eigen(&m, d);
    let tr_root: f64 = lambda.iter().map(|l| l.max(0.0).sqrt()).sum();
    mean_term + trace(&a.cov) + trace(&b.cov) - 2.0 * tr_root
}

/// `A B` for `d x d` row-major matrices (i-k-j order: contiguous inner loop).
fn matmul(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    let mut c = vec![0.0; d * d];
    for i in 0..d {
        for k in 0..d {
            let aik = a[i * d + k];
            c[i * d..(i + 1) * d].iter_mut().zip(&b[k * d..(k + 1) * d]).for_each(|(c, b)| *c += aik * b);
        }
    }
    c
}

/// `A <- (A + A^T) / 2`, removing the rounding asymmetry of a product.
fn symmetrise(a: &mut [f64], d: usize) {
    for i in 0..d {
        for j in i + 1..d {
            let v = 0.5 * (a[i * d + j] + a[j * d + i]);
            a[i * d + j] = v;
            a[j * d + i] = v;
        }
    }
}

/// PSD square root `V diag(sqrt(max(lambda, 0))) V^T` of a symmetric `d x d` matrix.
fn sym_sqrt(a: &[f64], d: usize) -> Vec<f64> {
    let (lambda, v) = sym_eigen(a, d);
    let root: Vec<f64> = lambda.iter().map(|l| l.max(0.0).sqrt()).collect();
    let mut s = vec![0.0; d * d];
    for i in 0..d {
        for j in i..d {
            let x: f64 = (0..d).map(|k| v[i * d + k] * root[k] * v[j * d + k]).sum();
            s[i * d + j] = x;
            s[j * d + i] = x;
        }
    }
    s
}

/// Eigen-decomposition of a symmetric `d x d` row-major matrix by the cyclic Jacobi method
/// (Golub & Van Loan, *Matrix Computations*, §8.5; rotation formulas as in Numerical Recipes §11.1).
///
/// Returns `(lambda, V)` with `A = V diag(lambda) V^T`: `lambda` unsorted, `V` row-major with the
/// eigenvector of `lambda_j` in column `j`. Sweeps until the off-diagonal norm is below `1e-14` of the
/// Frobenius norm (at most 100 sweeps).
fn sym_eigen(a: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    // Rows of `vt` are the columns of V, so each rotation updates two contiguous rows.
    let mut vt = vec![0.0; d * d];
    (0..d).for_each(|i| vt[i * d + i] = 1.0);
    let frobenius = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    for _sweep in 0..100 {
        let off = (0..d).flat_map(|p| (p + 1..d).map(move |q| (p, q))).map(|(p, q)| a[p * d + q].powi(2));
        if off.sum::<f64>().sqrt() <= 1e-14 * frobenius {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                jacobi_rotate(&mut a, &mut vt, d, p, q);
            }
        }
    }
    let lambda = (0..d).map(|i| a[i * d + i]).collect();
    let v = (0..d * d).map(|ij| vt[(ij % d) * d + ij / d]).collect();
    (lambda, v)
}

/// One Jacobi rotation `A <- J^T A J`, `V <- V J` that zeroes `a_pq` (`p < q`); `vt` holds `V^T`.
/// With `theta = (a_qq - a_pp) / (2 a_pq)`, `t = sgn(theta) / (|theta| + sqrt(theta^2 + 1))`,
/// `c = 1 / sqrt(t^2 + 1)`, `s = t c`.
fn jacobi_rotate(a: &mut [f64], vt: &mut [f64], d: usize, p: usize, q: usize) {
    let apq = a[p * d + q];
    if apq == 0.0 {
        return;
    }
    let (app, aqq) = (a[p * d + p], a[q * d + q]);
    let theta = (aqq - app) / (2.0 * apq);
    let t = theta.signum() / (theta.abs() + theta.hypot(1.0));
    let c = 1.0 / (t * t + 1.0).sqrt();
    let s = t * c;
    for k in 0..d {
        if k == p || k == q {
            continue;
        }
        let (akp, akq) = (a[k * d + p], a[k * d + q]);
        let (new_kp, new_kq) = (c * akp - s * akq, s * akp + c * akq);
        a[k * d + p] = new_kp;
        a[p * d + k] = new_kp;
        a[k * d + q] = new_kq;
        a[q * d + k] = new_kq;
    }
    a[p * d + p] = app - t * apq;
    a[q * d + q] = aqq + t * apq;
    a[p * d + q] = 0.0;
    a[q * d + p] = 0.0;
    let (head, tail) = vt.split_at_mut(q * d);
    let (vp, vq) = (&mut head[p * d..(p + 1) * d], &mut tail[..d]);
    for (x, y) in vp.iter_mut().zip(vq.iter_mut()) {
        let (xp, xq) = (*x, *y);
        *x = c * xp - s * xq;
        *y = s * xp + c * xq;
    }
}

// ---------------------------------------------------------------------------------------------------
// Kernel Inception Distance (Bińkowski et al. 2018)
// ---------------------------------------------------------------------------------------------------

/// KID (Bińkowski et al. 2018, "Demystifying MMD GANs"): the unbiased MMD² with the cubic polynomial
/// kernel `k(a, b) = (a . b / d + 1)^3`, on `subsets` pairs of random subsets of `m = min(subset_size,
/// n_x, n_y)` rows drawn without replacement (seeded partial Fisher–Yates) from `x` and `y`:
/// `MMD² = sum_{i != j} k(x_i, x_j) / (m (m-1)) + sum_{i != j} k(y_i, y_j) / (m (m-1))
///        - 2 sum_{i,j} k(x_i, y_j) / m²`.
///
/// Returns `(mean, std)` over the subsets (population std, as `numpy.std` in the reference code). The
/// estimator is unbiased, so it can be slightly negative. NaN for bad shapes, `m < 2` or `subsets == 0`.
pub fn kid(x: &[f32], y: &[f32], d: usize, subsets: usize, subset_size: usize, seed: u64) -> (f64, f64) {
    let (Some(n_x), Some(n_y)) = (rows_of(x, d), rows_of(y, d)) else {
        return (f64::NAN, f64::NAN);
    };
    let m = subset_size.min(n_x).min(n_y);
    if m < 2 || subsets == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = SplitMix64::new(seed);
    let (mut idx_x, mut idx_y): (Vec<usize>, Vec<usize>) = ((0..n_x).collect(), (0..n_y).collect());
    let (mut sub_x, mut sub_y) = (vec![0.0f32; m * d], vec![0.0f32; m * d]);
    let mmd2: Vec<f64> = (0..subsets)
        .map(|_| {
            draw_subset(x, d, &mut idx_x, &mut sub_x, &mut rng);
            draw_subset(y, d, &mut idx_y, &mut sub_y, &mut rng);
            polynomial_mmd2(&sub_x, &sub_y, d)
        })
        .collect();
    let mean = mmd2.iter().sum::<f64>() / subsets as f64;
    let var = mmd2.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / subsets as f64;
    (mean, var.sqrt())
}

/// Copies `out.len() / d` distinct rows of `set`, chosen uniformly by a partial Fisher–Yates shuffle of
/// `idx` (any permutation of the row indices), into `out`.
fn draw_subset(set: &[f32], d: usize, idx: &mut [usize], out: &mut [f32], rng: &mut SplitMix64) {
    let n = idx.len();
    for (i, dst) in out.chunks_exact_mut(d).enumerate() {
        // Uniform in [i, n) by the multiply-shift range reduction (Lemire 2019).
        let j = i + ((rng.next_u64() as u128 * (n - i) as u128) >> 64) as usize;
        idx.swap(i, j);
        dst.copy_from_slice(&set[idx[i] * d..(idx[i] + 1) * d]);
    }
}

/// Unbiased MMD² of two equal-size sets with `k(a, b) = (a . b / d + 1)^3`.
fn polynomial_mmd2(x: &[f32], y: &[f32], d: usize) -> f64 {
    let k = |a: &[f32], b: &[f32]| (sum8(a, b, |p, q| p * q) / d as f64 + 1.0).powi(3);
    let m = x.len() / d;
    let within = |s: &[f32]| {
        let rows: Vec<&[f32]> = s.chunks_exact(d).collect();
        let sum: f64 =
            (0..m).flat_map(|i| (i + 1..m).map(move |j| (i, j))).map(|(i, j)| k(rows[i], rows[j])).sum();
        2.0 * sum / (m * (m - 1)) as f64
    };
    let cross: f64 = x.chunks_exact(d).map(|a| y.chunks_exact(d).map(|b| k(a, b)).sum::<f64>()).sum();
    within(x) + within(y) - 2.0 * cross / (m * m) as f64
}

// ---------------------------------------------------------------------------------------------------
// Improved precision and recall (Kynkäänniemi et al. 2019)
// ---------------------------------------------------------------------------------------------------

/// Improved precision and recall (Kynkäänniemi et al. 2019, §2): each point of a set owns a ball whose
/// radius is the Euclidean distance to its `k`-th nearest *other* point of the same set; precision is
/// the fraction of `fake` rows inside at least one `real` ball, recall the fraction of `real` rows
/// inside at least one `fake` ball. `O(n^2 d)`.
///
/// Returns `(precision, recall)`; each is NaN when `k == 0`, a shape is bad, or the set owning the
/// balls has `<= k` rows (or the other set has none).
pub fn precision_recall(real: &[f32], fake: &[f32], d: usize, k: usize) -> (f64, f64) {
    let (Some(n_r), Some(n_f)) = (rows_of(real, d), rows_of(fake, d)) else {
        return (f64::NAN, f64::NAN);
    };
    let coverage = |balls: &[f32], n_b: usize, points: &[f32], n_p: usize| {
        if k == 0 || n_b <= k || n_p == 0 {
            return f64::NAN;
        }
        let r2 = kth_neighbour_sq_radii(balls, d, k);
        let inside = points
            .chunks_exact(d)
            .filter(|p| {
                balls.chunks_exact(d).zip(&r2).any(|(b, r2)| sum8(p, b, |u, v| (u - v).powi(2)) <= *r2)
            })
            .count();
        inside as f64 / n_p as f64
    };
    (coverage(real, n_r, fake, n_f), coverage(fake, n_f, real, n_r))
}

/// Squared distance from each row to its `k`-th nearest other row (`1 <= k < n`).
fn kth_neighbour_sq_radii(set: &[f32], d: usize, k: usize) -> Vec<f64> {
    let rows: Vec<&[f32]> = set.chunks_exact(d).collect();
    let mut buf = Vec::with_capacity(rows.len());
    rows.iter()
        .enumerate()
        .map(|(i, a)| {
            buf.clear();
            buf.extend(
                rows.iter()
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .map(|(_, b)| sum8(a, b, |u, v| (u - v).powi(2))),
            );
            *buf.select_nth_unstable_by(k - 1, f64::total_cmp).1
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------
// Class statistics and memorisation
// ---------------------------------------------------------------------------------------------------

/// Statistics of classifier probabilities over generated images.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassStats {
    /// `KL(h || U) = sum_c h_c ln(h_c C)` of the argmax histogram against the uniform over `C` classes
    /// (`0 ln 0 = 0`): 0 when every class is equally frequent, `ln C` when all rows pick one class.
    pub kl_to_uniform: f64,
    /// Mean over rows of `max_c p_c` (a confidence proxy).
    pub mean_max_prob: f64,
    /// `h_c`: fraction of rows whose argmax is class `c`, length `C`.
    pub histogram: Vec<f64>,
    /// Each row's argmax class.
    pub predicted: Vec<usize>,
}

/// Argmax histogram, its KL divergence to the uniform distribution and the mean top probability of
/// `n` rows of `classes` probabilities (ties go to the lowest class). NaN everywhere (histogram of
/// length `classes`) for a bad shape or no rows.
pub fn class_stats(probs: &[f32], classes: usize) -> ClassStats {
    let n = match rows_of(probs, classes) {
        Some(n) if n > 0 => n,
        _ => {
            return ClassStats {
                kl_to_uniform: f64::NAN,
                mean_max_prob: f64::NAN,
                histogram: vec![f64::NAN; classes],
                predicted: Vec::new(),
            };
        }
    };
    let mut counts = vec![0usize; classes];
    let mut max_sum = 0.0;
    let mut predicted = Vec::with_capacity(n);
    for row in probs.chunks_exact(classes) {
        let (c, &p) =
            row.iter().enumerate().fold((0, &row[0]), |best, cur| if cur.1 > best.1 { cur } else { best });
        counts[c] += 1;
        max_sum += p as f64;
        predicted.push(c);
    }
    let histogram: Vec<f64> = counts.iter().map(|&c| c as f64 / n as f64).collect();
    let kl_to_uniform =
        histogram.iter().filter(|&&h| h > 0.0).map(|h| h * (h * classes as f64).ln()).sum::<f64>();
    ClassStats { kl_to_uniform, mean_max_prob: max_sum / n as f64, histogram, predicted }
}

/// For each query row, `min_r |q - r| / sqrt(d)` over the `reference` rows: the RMS per-dimension
/// distance to the nearest reference (e.g. training) feature; values near 0 flag memorised images.
/// Squared distances accumulate in f32. One value per whole query row; NaN for each when `reference`
/// is empty or either length is not a multiple of `d` (empty when `d == 0`).
pub fn nearest_distances(queries: &[f32], reference: &[f32], d: usize) -> Vec<f64> {
    if d == 0 {
        return Vec::new();
    }
    let n_q = queries.len() / d;
    match (rows_of(queries, d), rows_of(reference, d)) {
        (Some(_), Some(n_r)) if n_r > 0 => queries
            .chunks_exact(d)
            .map(|q| {
                let best =
                    reference.chunks_exact(d).fold(f32::INFINITY, |best, r| best.min(sq_dist_f32(q, r)));
                (best as f64 / d as f64).sqrt()
            })
            .collect(),
        _ => vec![f64::NAN; n_q],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cm_core::rng::Noise;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    fn random_symmetric(d: usize, seed: u64) -> Vec<f64> {
        let mut g = SplitMix64::new(seed);
        let mut a = vec![0.0; d * d];
        for i in 0..d {
            for j in i..d {
                let v = g.normal();
                a[i * d + j] = v;
                a[j * d + i] = v;
            }
        }
        a
    }

    #[test]
    fn sym_eigen_reconstructs_and_is_orthonormal() {
        for (d, seed) in [(1, 1), (2, 2), (17, 3)] {
            let a = random_symmetric(d, seed);
            let (lambda, v) = sym_eigen(&a, d);
            for i in 0..d {
                for j in 0..d {
                    let recon: f64 = (0..d).map(|k| v[i * d + k] * lambda[k] * v[j * d + k]).sum();
                    assert!(
                        (recon - a[i * d + j]).abs() < 1e-12,
                        "d={d} A[{i},{j}]: {recon} vs {}",
                        a[i * d + j]
                    );
                    let gram: f64 = (0..d).map(|k| v[k * d + i] * v[k * d + j]).sum();
                    assert!((gram - (i == j) as u8 as f64).abs() < 1e-12, "d={d} (V^T V)[{i},{j}] = {gram}");
                }
            }
        }
    }

    #[test]
    fn fit_matches_hand_computed_moments() {
        // Rows (1,2), (3,6), (5,7): mean (3,5); deviations x (-2,0,2), y (-3,1,2);
        // var x = 8/2 = 4, var y = 14/2 = 7, cov = (6+0+4)/2 = 5.
        let g = Gaussian::fit(&[1.0, 2.0, 3.0, 6.0, 5.0, 7.0], 2);
        assert_eq!(g.mean, vec![3.0, 5.0]);
        assert_eq!(g.cov, vec![4.0, 5.0, 5.0, 7.0]);
        assert!(Gaussian::fit(&[1.0, 2.0], 2).cov.iter().all(|v| v.is_nan()));
        assert!(Gaussian::fit(&[1.0, 2.0, 3.0], 2).mean.iter().all(|v| v.is_nan()));
    }

    #[test]
    fn frechet_of_a_gaussian_with_itself_is_zero_and_a_shift_costs_its_square() {
        let d = 17;
        let x = Noise::new(1).normals(0, 0, 400, d);
        // Correlate the columns so Sigma is not diagonal.
        let x: Vec<f32> = x
            .chunks(d)
            .flat_map(|r| (0..d).map(|j| r[j] + 0.7 * r[(j + 1) % d]).collect::<Vec<_>>())
            .collect();
        let a = Gaussian::fit(&x, d);
        assert!(frechet_distance(&a, &a).abs() < 1e-9, "{}", frechet_distance(&a, &a));
        // Shifting every row by c leaves Sigma unchanged, so FD = |c|^2 exactly.
        let c: Vec<f32> = (0..d).map(|j| 0.1 * j as f32 - 0.5).collect();
        let shifted: Vec<f32> =
            x.chunks(d).flat_map(|r| r.iter().zip(&c).map(|(v, c)| v + c).collect::<Vec<_>>()).collect();
        let b = Gaussian::fit(&shifted, d);
        let c2: f64 = c.iter().map(|&c| (c as f64).powi(2)).sum();
        assert!(close(frechet_distance(&a, &b), c2, 1e-6), "{} vs {c2}", frechet_distance(&a, &b));
    }

    #[test]
    fn frechet_of_diagonal_covariances_is_the_closed_form() {
        let (mu_a, mu_b) = ([0.0, 1.0, -2.0, 0.5], [1.0, 1.0, 0.0, -0.5]);
        let (s_a, s_b) = ([1.0, 4.0, 0.25, 2.0], [9.0, 1.0, 0.25, 0.5]);
        let diag = |s: &[f64; 4]| (0..16).map(|ij| if ij % 5 == 0 { s[ij / 5] } else { 0.0 }).collect();
        let a = Gaussian { mean: mu_a.to_vec(), cov: diag(&s_a), d: 4 };
        let b = Gaussian { mean: mu_b.to_vec(), cov: diag(&s_b), d: 4 };
        let expected: f64 = (0..4)
            .map(|i| (mu_a[i] - mu_b[i]).powi(2) + s_a[i] + s_b[i] - 2.0 * (s_a[i] * s_b[i]).sqrt())
            .sum();
        assert!(
            close(frechet_distance(&a, &b), expected, 1e-12),
            "{} vs {expected}",
            frechet_distance(&a, &b)
        );
    }

    #[test]
    fn frechet_matches_a_hand_computed_2x2_value_and_is_symmetric() {
        // Golden value from plain Python (no numpy): sqrt of a 2x2 PSD matrix in closed form,
        // sqrt(M) = (M + sqrt(det M) I) / sqrt(tr M + 2 sqrt(det M)); R = sqrt(S_a), C = sqrt(R S_b R),
        // FD = |mu_a - mu_b|^2 + tr S_a + tr S_b - 2 tr C = 3.678871820709161. Cross-checked with
        // tr sqrt(S_a S_b) = sqrt(tr(S_a S_b) + 2 sqrt(det S_a det S_b)) (agrees to 1e-15).
        let a = Gaussian { mean: vec![0.5, -1.0], cov: vec![2.0, 0.6, 0.6, 1.0], d: 2 };
        let b = Gaussian { mean: vec![-0.5, 0.5], cov: vec![1.5, -0.4, -0.4, 0.8], d: 2 };
        assert!(close(frechet_distance(&a, &b), 3.678871820709161, 1e-12), "{}", frechet_distance(&a, &b));
        assert!(close(frechet_distance(&b, &a), 3.678871820709161, 1e-12), "{}", frechet_distance(&b, &a));
        let c = Gaussian { mean: vec![0.0; 3], cov: vec![0.0; 9], d: 3 };
        assert!(frechet_distance(&a, &c).is_nan());
        assert!(frechet_distance(&Gaussian::fit(&[1.0], 1), &Gaussian::fit(&[1.0], 1)).is_nan());
    }

    #[test]
    fn kid_matches_a_hand_computed_value_when_the_subset_is_the_whole_set() {
        // x = (0,1),(1,0),(2,2); y = (1,1),(0,-1),(3,1); k = (a.b/2 + 1)^3. By hand (and plain Python):
        // within x: pairs k = 1, 8, 8 -> 2*17/6; within y: 1/8, 27, 1/8 -> 2*27.25/6;
        // cross sum 178.875 / 9 = 19.875. MMD^2 = 17/3 + 54.5/6 - 39.75 = -25 for any row order.
        let x = [0.0, 1.0, 1.0, 0.0, 2.0, 2.0];
        let y = [1.0, 1.0, 0.0, -1.0, 3.0, 1.0];
        let (mean, std) = kid(&x, &y, 2, 5, 10, 7);
        assert!(close(mean, -25.0, 1e-12) && std < 1e-12, "{mean} {std}");
        assert!(kid(&x, &y, 2, 0, 3, 0).0.is_nan());
        assert!(kid(&x[..2], &y, 2, 1, 3, 0).0.is_nan());
        assert!(kid(&x[..5], &y, 2, 1, 3, 0).0.is_nan());
    }

    #[test]
    fn kid_is_near_zero_for_one_distribution_and_positive_for_a_shift() {
        let d = 8;
        let x = Noise::new(1).normals(0, 0, 1000, d);
        let x2 = Noise::new(2).normals(0, 0, 1000, d);
        let shifted: Vec<f32> = Noise::new(3).normals(0, 0, 1000, d).iter().map(|v| v + 0.5).collect();
        let (same, same_std) = kid(&x, &x2, d, 20, 200, 0);
        let (diff, _) = kid(&x, &shifted, d, 20, 200, 0);
        assert!(diff > 0.0 && same.abs() < diff / 20.0, "same {same}, shifted {diff}");
        assert!(same_std > 0.0);
        assert_eq!(kid(&x, &x2, d, 4, 50, 9), kid(&x, &x2, d, 4, 50, 9));
        assert_ne!(kid(&x, &x2, d, 4, 50, 9), kid(&x, &x2, d, 4, 50, 10));
    }

    #[test]
    fn precision_recall_match_a_hand_computed_1d_case() {
        // k = 1. Real 0,1,3,10 -> radii 1,1,2,7. Fake 0.5,2.5,5.5,6,40,41 -> radii 2,2,0.5,0.5,1,1.
        // Fakes inside a real ball: 0.5 (0), 2.5 (3), 5.5 and 6 (10); not 40, 41 -> precision 4/6.
        // Reals inside a fake ball: 0, 1 (0.5), 3 (2.5); not 10 -> recall 3/4.
        let real = [0.0, 1.0, 3.0, 10.0];
        let fake = [0.5, 2.5, 5.5, 6.0, 40.0, 41.0];
        let (p, r) = precision_recall(&real, &fake, 1, 1);
        assert!(close(p, 4.0 / 6.0, 1e-12) && close(r, 0.75, 1e-12), "{p} {r}");
        let (p, r) = precision_recall(&real, &fake[..1], 1, 1);
        assert!(close(p, 1.0, 1e-12) && r.is_nan(), "{p} {r}");
        assert!(precision_recall(&real, &fake, 1, 0).0.is_nan());
    }

    #[test]
    fn precision_recall_are_one_for_identical_sets_and_precision_zero_for_far_fakes() {
        let d = 8;
        let real = Noise::new(4).normals(0, 0, 300, d);
        let (p, r) = precision_recall(&real, &real, d, 3);
        assert_eq!((p, r), (1.0, 1.0));
        let far: Vec<f32> = Noise::new(5).normals(0, 0, 300, d).iter().map(|v| v + 50.0).collect();
        let (p, r) = precision_recall(&real, &far, d, 3);
        assert_eq!((p, r), (0.0, 0.0));
    }

    #[test]
    fn class_stats_of_uniform_and_collapsed_histograms() {
        // Rows 0..6 pick classes 0,1,2,0,1,2 with top probability 0.5.
        let c = 3;
        let uniform: Vec<f32> =
            (0..6).flat_map(|i| (0..c).map(move |j| if j == i % c { 0.5 } else { 0.25 })).collect();
        let s = class_stats(&uniform, c);
        assert!(s.kl_to_uniform.abs() < 1e-15 && close(s.mean_max_prob, 0.5, 1e-12), "{s:?}");
        assert!(s.histogram.iter().all(|&h| close(h, 1.0 / 3.0, 1e-15)));
        let collapsed: Vec<f32> = (0..5).flat_map(|_| [0.1, 0.8, 0.1]).collect();
        let s = class_stats(&collapsed, c);
        assert!(close(s.kl_to_uniform, 3f64.ln(), 1e-12), "{s:?}");
        assert_eq!(s.histogram, vec![0.0, 1.0, 0.0]);
        // Histogram (1/2, 1/4, 1/4): KL = 1/2 ln(3/2) + 2 (1/4) ln(3/4) = 1/2 ln(9/8).
        let s = class_stats(&[0.9, 0.05, 0.05, 0.6, 0.3, 0.1, 0.2, 0.7, 0.1, 0.1, 0.1, 0.8], c);
        assert!(close(s.kl_to_uniform, 0.5 * (9.0f64 / 8.0).ln(), 1e-12), "{s:?}");
        assert!(close(s.mean_max_prob, (0.9 + 0.6 + 0.7 + 0.8) / 4.0, 1e-6), "{s:?}");
        assert!(class_stats(&[], c).kl_to_uniform.is_nan());
        assert!(class_stats(&[0.5, 0.5], 0).mean_max_prob.is_nan());
    }

    #[test]
    fn nearest_distances_are_zero_for_members_and_rms_otherwise() {
        let d = 11;
        let reference = Noise::new(6).normals(0, 0, 50, d);
        let queries = reference[7 * d..10 * d].to_vec();
        assert_eq!(nearest_distances(&queries, &reference, d), vec![0.0; 3]);
        // (3,4) vs {(0,0), (10,10)}: nearest is the origin at distance 5, RMS 5 / sqrt(2).
        let out = nearest_distances(&[3.0, 4.0], &[0.0, 0.0, 10.0, 10.0], 2);
        assert!(close(out[0], 5.0 / 2f64.sqrt(), 1e-7), "{out:?}");
        assert!(nearest_distances(&[3.0, 4.0], &[], 2)[0].is_nan());
        assert!(nearest_distances(&[3.0, 4.0], &[1.0], 2)[0].is_nan());
        assert!(nearest_distances(&[3.0, 4.0], &[1.0], 0).is_empty());
    }
}
