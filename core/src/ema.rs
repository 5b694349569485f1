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
