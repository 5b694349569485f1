//! 2D datasets generated from a seed: moons, swiss roll, 8 gaussians, checkerboard.
//!
//! Each is scaled so that its per-coordinate standard deviation is close to `sigma_data = 0.5`.

use serde::{Deserialize, Serialize};

use crate::rng::Noise;

/// A 2D toy distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dataset2d {
    Moons,
    SwissRoll,
    EightGaussians,
    Checkerboard,
}

impl Dataset2d {
    pub const ALL: [Dataset2d; 4] =
        [Dataset2d::Moons, Dataset2d::SwissRoll, Dataset2d::EightGaussians, Dataset2d::Checkerboard];

    /// The name used in configs, model folders and the command line.
    pub fn name(self) -> &'static str {
        match self {
            Dataset2d::Moons => "moons",
            Dataset2d::SwissRoll => "swiss-roll",
            Dataset2d::EightGaussians => "8gaussians",
            Dataset2d::Checkerboard => "checkerboard",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Rows `first..first + n` of the stream `stream` drawn with `seed`, flattened `[n, 2]`.
    /// Row `i` depends only on `(seed, stream, i)`.
    pub fn sample(self, seed: u64, stream: u64, first: usize, n: usize) -> Vec<f32> {
        let noise = Noise::new(seed ^ 0xDA7A_5E7D);
        let mut out = Vec::with_capacity(2 * n);
        for row in first..first + n {
            let mut g = noise.generator(stream, row as u64);
            let (x, y) = match self {
                // sklearn's make_moons with noise 0.1, centred and scaled.
                Dataset2d::Moons => {
                    let t = core::f64::consts::PI * g.uniform();
                    let (x, y) = if g.uniform() < 0.5 {
                        (libm::cos(t), libm::sin(t))
                    } else {
                        (1.0 - libm::cos(t), 0.5 - libm::sin(t))
                    };
                    let (x, y) = (x + 0.1 * g.normal(), y + 0.1 * g.normal());
                    ((x - 0.5) * 0.58, (y - 0.25) * 0.92)
                }
                // sklearn's make_swiss_roll projected on (x, z), noise 0.5, scaled.
                Dataset2d::SwissRoll => {
                    let t = 1.5 * core::f64::consts::PI * (1.0 + 2.0 * g.uniform());
                    let (x, y) = (t * libm::cos(t) + 0.5 * g.normal(), t * libm::sin(t) + 0.5 * g.normal());
                    (x * 0.066, y * 0.066)
                }
                Dataset2d::EightGaussians => {
                    let k = (g.uniform() * 8.0) as usize % 8;
                    let a = k as f64 * core::f64::consts::FRAC_PI_4;
                    (0.7 * libm::cos(a) + 0.05 * g.normal(), 0.7 * libm::sin(a) + 0.05 * g.normal())
                }
                // 4x4 board, the 8 black cells, on [-1, 1]^2 scaled.
                Dataset2d::Checkerboard => {
                    let cell = (g.uniform() * 8.0) as usize % 8;
                    let (row, col2) = (cell / 2, cell % 2);
                    let col = 2 * col2 + (row % 2);
                    let x = -1.0 + 0.5 * (col as f64 + g.uniform());
                    let y = -1.0 + 0.5 * (row as f64 + g.uniform());
                    (x * 0.87, y * 0.87)
                }
            };
            out.push(x as f32);
            out.push(y as f32);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dataset_has_scale_near_sigma_data() {
        for d in Dataset2d::ALL {
            let s = d.sample(0, 0, 0, 20_000);
            for c in 0..2 {
                let v: Vec<f64> = s.iter().skip(c).step_by(2).map(|&v| v as f64).collect();
                let mean = v.iter().sum::<f64>() / v.len() as f64;
                let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
                assert!(mean.abs() < 0.15, "{} mean {mean}", d.name());
                assert!((0.3..0.7).contains(&std), "{} coordinate {c} std {std}", d.name());
            }
        }
    }
}
