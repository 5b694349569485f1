//! RAdam (Liu et al. 2020, "On the Variance of the Adaptive Learning Rate and Beyond", Algorithm 2),
//! the optimiser iCT used; burn 0.22 ships Adam but not RAdam. Its state is burn's Adam state (time, first
//! and second moments), so checkpoints and `--resume` work the same way for both.
//!
//! `m_t = b1 m + (1-b1) g`, `v_t = b2 v + (1-b2) g^2`, `m^ = m_t / (1-b1^t)`,
//! `rho_inf = 2/(1-b2) - 1`, `rho_t = rho_inf - 2 t b2^t / (1-b2^t)`; if `rho_t > 5`:
//! `r_t = sqrt((rho_t-4)(rho_t-2) rho_inf / ((rho_inf-4)(rho_inf-2) rho_t))`,
//! `theta -= lr r_t m^ sqrt(1-b2^t) / (sqrt(v_t) + eps)`, else `theta -= lr m^` (PyTorch's threshold).

use burn::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamState, AdaptiveMomentumState, LearningRate, ModuleOptimizer, Optimizer};
use burn::prelude::*;

#[derive(Clone, Debug)]
pub struct RAdam {
    pub beta_1: f64,
    pub beta_2: f64,
    pub epsilon: f64,
}

impl RAdam {
    pub fn new(beta_2: f64) -> Self {
        Self { beta_1: 0.9, beta_2, epsilon: 1e-8 }
    }

    /// The step size multiplying `m^ / (sqrt(v^) + eps)` at step `t` (1-based), or `None` for the
    /// un-adapted (SGD with momentum) steps while the variance is not tractable.
    pub fn rectification(&self, t: usize) -> Option<f64> {
        let b2t = self.beta_2.powi(t as i32);
        let rho_inf = 2.0 / (1.0 - self.beta_2) - 1.0;
        let rho_t = rho_inf - 2.0 * t as f64 * b2t / (1.0 - b2t);
        (rho_t > 5.0).then(|| {
            ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)).sqrt()
        })
    }

    /// A module optimiser, with optional global-norm gradient clipping.
    pub fn init(self, grad_clip: Option<f64>) -> ModuleOptimizer {
        let mut optim = ModuleOptimizer::from(self);
        if let Some(c) = grad_clip {
            optim = optim.with_grad_clipping(GradientClippingConfig::Norm(c as f32).init());
        }
        optim
    }
}

impl Optimizer for RAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let (b1, b2) = (self.beta_1, self.beta_2);
        let s = match state {
            Some(AdamState { momentum: mut s }) => {
                s.moment_1 = s.moment_1.mul_scalar(b1).add(grad.clone().mul_scalar(1.0 - b1));
                s.moment_2 = s.moment_2.mul_scalar(b2).add(grad.square().mul_scalar(1.0 - b2));
                s.time += 1;
                s
            }
            None => AdaptiveMomentumState::new(
                1,
                grad.clone().mul_scalar(1.0 - b1),
                grad.square().mul_scalar(1.0 - b2),
            ),
        };
        let t = s.time;
        let m_hat = s.moment_1.clone().div_scalar(1.0 - b1.powi(t as i32));
        let update = match self.rectification(t) {
            Some(r) => {
                let bc2 = (1.0 - b2.powi(t as i32)).sqrt();
                m_hat.div(s.moment_2.clone().sqrt().div_scalar(bc2).add_scalar(self.epsilon)).mul_scalar(r)
            }
            None => m_hat,
        };
        (tensor - update.mul_scalar(lr), Some(AdamState::new(s)))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device) -> Self::State<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden values from the formula written out by hand (PyTorch's RAdam agrees: the first four
    /// steps are un-rectified for beta_2 = 0.999, `rho_5 ≈ 5.0`).
    #[test]
    fn rectification_switches_on_after_the_first_steps() {
        let r = RAdam::new(0.999);
        assert!((1..=5).all(|t| r.rectification(t).is_none()));
        let r6 = r.rectification(6).unwrap();
        assert!(r6 > 0.0 && r6 < 0.2, "{r6}");
        // r_t -> 1 as t -> infinity.
        assert!((r.rectification(1_000_000).unwrap() - 1.0).abs() < 1e-3);
        let r100 = r.rectification(100).unwrap();
        let r1000 = r.rectification(1000).unwrap();
        assert!(r6 < r100 && r100 < r1000 && r1000 < 1.0);
    }

    /// One scalar parameter, constant gradient: the first step is plain momentum (`m^ = g`), so the
    /// parameter moves by exactly `lr · g`.
    #[test]
    fn first_step_is_unrectified_momentum() {
        let device = Device::flex();
        let x = Tensor::<1>::from_floats([1.0], &device);
        let g = Tensor::<1>::from_floats([0.5], &device);
        let (x1, _) = RAdam::new(0.999).step(0.1, x, g, None);
        let v = x1.into_data().try_to_vec::<f32>().unwrap()[0];
        assert!((v - (1.0 - 0.1 * 0.5)).abs() < 1e-6, "{v}");
    }
}
