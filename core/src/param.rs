//! Parameterisations: how a raw network `F` becomes a denoiser or a consistency function.
//!
//! Every model is exposed in EDM coordinates as `D(x_sigma, sigma) = c_skip x + c_out F(c_in x, c_noise)`
//! (EDM eq. 7; CM eq. 8; TrigFlow rewritten through `sigma = sigma_data tan t`, `x_t = cos t x_sigma`),
//! so every sampler, objective and editing task works in one coordinate system.

use serde::{Deserialize, Serialize};

/// Which preconditioning turns the network into the model's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Parameterisation {
    /// EDM diffusion denoiser (EDM Table 1): no boundary condition, a teacher.
    Edm,
    /// Consistency function in EDM form (CM eq. 8 with Appendix C scalings): `f(x, sigma_min) = x`.
    Consistency,
    /// TrigFlow (sCM eq. 6): `f(x_t, t) = cos t x_t - sin t sigma_data F(x_t / sigma_data, t)`; `f(x, 0) = x`.
    TrigFlow,
}

/// The noise range and data scale shared by a model, its objective and its samplers.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoiseRange {
    /// Smallest noise level `sigma_min` (CM: 0.002).
    pub sigma_min: f64,
    /// Largest noise level `sigma_max` (CM: 80).
    pub sigma_max: f64,
    /// Data standard deviation `sigma_data` (EDM: 0.5).
    pub sigma_data: f64,
}

impl Default for NoiseRange {
    fn default() -> Self {
        Self { sigma_min: 0.002, sigma_max: 80.0, sigma_data: 0.5 }
    }
}

impl NoiseRange {
    /// The span every level and `sigma_data` must lie in: far beyond the papers' (0.002 to 80, and
    /// 0.5), and well inside what f32 states (`sigma z`, `sigma^2`) hold.
    pub const SPAN: (f64, f64) = (1e-6, 1e4);

    /// Checks the ordering `sigma_min < sigma_max`, and that every value lies in [`SPAN`](Self::SPAN).
    pub fn validate(&self) -> Result<(), String> {
        let (lo, hi) = Self::SPAN;
        if let Some((name, v)) =
            [("sigma_min", self.sigma_min), ("sigma_max", self.sigma_max), ("sigma_data", self.sigma_data)]
                .into_iter()
                .find(|&(_, v)| !(lo..=hi).contains(&v))
        {
            return Err(format!("{name} must be in [{lo:e}, {hi:e}], got {v}"));
        }
        let ok = |v: f64| v.is_finite() && v > 0.0;
        if !ok(self.sigma_min) || !ok(self.sigma_max) || self.sigma_min >= self.sigma_max {
            return Err(format!(
                "need 0 < sigma_min < sigma_max, got sigma_min = {}, sigma_max = {}",
                self.sigma_min, self.sigma_max
            ));
        }
        if !ok(self.sigma_data) {
            return Err(format!("need sigma_data > 0, got {}", self.sigma_data));
        }
        Ok(())
    }
}

/// The four preconditioning coefficients at one noise level.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scalings {
    pub c_skip: f64,
    pub c_out: f64,
    pub c_in: f64,
    pub c_noise: f64,
}

impl Parameterisation {
    /// `c_skip, c_out, c_in, c_noise` at noise level `sigma` (EDM coordinates).
    pub fn scalings(self, sigma: f64, range: &NoiseRange) -> Scalings {
        let sd = range.sigma_data;
        match self {
            // EDM Table 1: c_skip = sd^2/(s^2+sd^2), c_out = s sd / sqrt(s^2+sd^2).
            Parameterisation::Edm => Scalings {
                c_skip: sd * sd / (sigma * sigma + sd * sd),
                c_out: sigma * sd / libm::sqrt(sigma * sigma + sd * sd),
                c_in: 1.0 / libm::sqrt(sigma * sigma + sd * sd),
                c_noise: 0.25 * libm::log(sigma),
            },
            // CM Appendix C: shifted by sigma_min so that c_skip(sigma_min) = 1, c_out(sigma_min) = 0.
            Parameterisation::Consistency => {
                let s = sigma - range.sigma_min;
                Scalings {
                    c_skip: sd * sd / (s * s + sd * sd),
                    c_out: sd * s / libm::sqrt(sd * sd + sigma * sigma),
                    c_in: 1.0 / libm::sqrt(sigma * sigma + sd * sd),
                    c_noise: 0.25 * libm::log(sigma),
                }
            }
            // sCM eq. 6 with t = arctan(sigma / sd) and x_t = cos t x_sigma.
            Parameterisation::TrigFlow => {
                let t = trigflow_t(sigma, sd);
                let (sin_t, cos_t) = (libm::sin(t), libm::cos(t));
                Scalings { c_skip: cos_t * cos_t, c_out: -sin_t * sd, c_in: cos_t / sd, c_noise: t }
            }
        }
    }

    /// The noise level at which `f(x, sigma) = x` holds exactly, if any.
    pub fn boundary_sigma(self, range: &NoiseRange) -> Option<f64> {
        match self {
            Parameterisation::Edm => None,
            Parameterisation::Consistency => Some(range.sigma_min),
            Parameterisation::TrigFlow => Some(0.0),
        }
    }
}

/// TrigFlow time of an EDM noise level: `t = arctan(sigma / sigma_data)` (sCM §2).
pub fn trigflow_t(sigma: f64, sigma_data: f64) -> f64 {
    libm::atan(sigma / sigma_data)
}

/// EDM noise level of a TrigFlow time: `sigma = sigma_data tan t` (sCM §2).
pub fn trigflow_sigma(t: f64, sigma_data: f64) -> f64 {
    sigma_data * libm::tan(t)
}
