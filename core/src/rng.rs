//! Seeded, backend-independent randomness.
//!
//! All noise is drawn on the host from counter-based streams and uploaded, so the same seed gives
//! the same samples on every backend (native CPU, WebGPU, wasm CPU) and for every batch size:
//! row `i` of a draw depends only on `(seed, stream, i)` — as in NVlabs/edm, where every image has
//! its own generator.

/// SplitMix64 step (Steele, Lea, Flood 2014): a fast, well-mixed 64-bit generator.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in the open interval (0, 1), 53 bits.
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal by the Box–Muller transform (one of the pair is used).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform();
        let u2 = self.uniform();
        libm::sqrt(-2.0 * libm::log(u1)) * libm::cos(core::f64::consts::TAU * u2)
    }

    /// An index drawn from unnormalised non-negative `weights` (inverse CDF).
    pub fn categorical(&mut self, cumulative: &[f64]) -> usize {
        let total = *cumulative.last().unwrap_or(&0.0);
        let u = self.uniform() * total;
        cumulative.partition_point(|&c| c <= u).min(cumulative.len().saturating_sub(1))
    }
}

/// Mixes a seed with a stream id and a row index into one generator seed.
fn mix(seed: u64, stream: u64, row: u64) -> u64 {
    let mut g = SplitMix64::new(seed ^ 0xA076_1D64_78BD_642F);
    let a = g.next_u64() ^ stream.wrapping_mul(0xE703_7ED1_A0B4_28DB);
    let mut g = SplitMix64::new(a);
    g.next_u64() ^ row.wrapping_mul(0x8EBC_6AF0_9C88_C6E3)
}

/// A named family of per-row generators: `Noise::new(seed).rows(stream, range, dim)`.
#[derive(Clone, Copy, Debug)]
pub struct Noise {
    pub seed: u64,
}

impl Noise {
    pub fn new(seed: u64) -> Self {
        Self { seed }
    }

    /// The generator for row `row` of stream `stream`.
    pub fn generator(&self, stream: u64, row: u64) -> SplitMix64 {
        SplitMix64::new(mix(self.seed, stream, row))
    }

    /// Standard normals for rows `first..first + n`, `dim` each, row-major: shape `[n, dim]`.
    pub fn normals(&self, stream: u64, first: usize, n: usize, dim: usize) -> Vec<f32> {
        self.rows(stream, first, n, dim, SplitMix64::normal)
    }

    /// Uniforms in (0, 1) for rows `first..first + n`, `dim` each: shape `[n, dim]`.
    pub fn uniforms(&self, stream: u64, first: usize, n: usize, dim: usize) -> Vec<f32> {
        self.rows(stream, first, n, dim, SplitMix64::uniform)
    }

    /// `dim` draws of `draw` per row, each row from its own generator.
    fn rows(
        &self,
        stream: u64,
        first: usize,
        n: usize,
        dim: usize,
        draw: fn(&mut SplitMix64) -> f64,
    ) -> Vec<f32> {
        let mut out = Vec::with_capacity(n * dim);
        for row in first..first + n {
            let mut g = self.generator(stream, row as u64);
            out.extend((0..dim).map(|_| draw(&mut g) as f32));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normals_have_unit_moments() {
        let x = Noise::new(7).normals(0, 0, 20_000, 2);
        let n = x.len() as f64;
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var - 1.0).abs() < 0.03, "var {var}");
    }

    #[test]
    fn rows_do_not_depend_on_batching() {
        let noise = Noise::new(3);
        let all = noise.normals(5, 0, 10, 3);
        let tail = noise.normals(5, 4, 6, 3);
        assert_eq!(&all[12..], &tail[..]);
        assert_ne!(noise.normals(6, 0, 1, 3), noise.normals(5, 0, 1, 3));
    }

    #[test]
    fn categorical_follows_weights() {
        let cumulative = [1.0, 1.0, 4.0]; // weights 1, 0, 3
        let mut g = SplitMix64::new(1);
        let mut counts = [0usize; 3];
        for _ in 0..8000 {
            counts[g.categorical(&cumulative)] += 1;
        }
        assert_eq!(counts[1], 0);
        let ratio = counts[2] as f64 / counts[0] as f64;
        assert!((ratio - 3.0).abs() < 0.3, "{counts:?}");
    }
}
