//! Exponential moving averages of parameters: `theta- <- mu theta- + (1 - mu) theta` (CM Alg. 2-3),
//! used for the CT target network and the evaluation EMA.

use burn::module::{ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;

struct Collect(Vec<Tensor<1>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.val().inner().flatten::<1>(0, D - 1));
    }
}

struct Blend {
    online: std::vec::IntoIter<Tensor<1>>,
    mu: f64,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let online = self.online.next().expect("EMA and online modules have the same parameters");
        let mu = self.mu;
        param.map(|ema| {
            let shape = ema.shape();
            ema.inner().mul_scalar(mu) + online.reshape(shape).mul_scalar(1.0 - mu)
        })
    }
}

/// Moves `ema` towards `online` with decay `mu` (`mu = 0` copies `online`). Both must be built from
/// the same config. The result carries no autodiff: keep EMA copies as inference modules
/// (`online.valid()`), which an autodiff forward pass treats as constants.
pub fn ema_update<M: Module>(ema: M, online: &M, mu: f64) -> M {
    let mut collect = Collect(Vec::new());
    online.visit(&mut collect);
    ema.map(&mut Blend { online: collect.0.into_iter(), mu })
}

/// The evaluation EMA's decay for update `k` (0-based) with EDM's ramp-up (Karras et al. 2022,
/// `ema_rampup_ratio`): the half-life, in updates, is at most `ratio (k + 1)`, so early in a run the
/// average forgets the initial weights quickly; `decay` (half-life `ln 0.5 / ln decay`) caps it.
/// `ratio = None` keeps the constant `decay`.
pub fn ema_decay_at(decay: f64, ratio: Option<f64>, k: u64) -> f64 {
    match ratio {
        Some(r) => decay.min(0.5f64.powf(1.0 / (r * (k + 1) as f64))),
        None => decay,
    }
}

#[cfg(test)]
mod tests {
    use super::ema_decay_at;

    /// Golden values from Python, `0.5 ** (1 / (r * (k + 1)))` capped by the decay.
    #[test]
    fn rampup_shortens_the_half_life_early_and_the_decay_caps_it() {
        assert_eq!(ema_decay_at(0.999, None, 0), 0.999);
        assert!((ema_decay_at(0.999, Some(0.05), 0) - 9.5367431640625e-07).abs() < 1e-15);
        assert!((ema_decay_at(0.999, Some(0.05), 1999) - 0.9930924954370359).abs() < 1e-12);
        assert_eq!(ema_decay_at(0.999, Some(0.05), 19_999), 0.999);
        let mut last = 0.0;
        for k in 0..30_000 {
            let d = ema_decay_at(0.999, Some(0.05), k);
            assert!(d >= last && d <= 0.999, "step {k}: {d} after {last}");
            last = d;
        }
    }
}
