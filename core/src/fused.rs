//! Group normalisation fused with a per-sample affine map and SiLU, `act(GroupNorm(x) · s + t)`: the
//! U-Net's `GroupNorm -> SiLU` and adaptive `GroupNorm · (1 + scale) + shift -> SiLU` in one operation.
//!
//! On burn's Flex CPU backend (and autodiff over it) this runs as one kernel each way
//! (`vendor/burn-flex/src/cm_norm.rs`, through burn's backend-extension mechanism) instead of a dozen
//! element-wise operations, each a pass over the activations, forward and again backward. Every other
//! backend, other float types and norms without affine parameters take the composition of burn's own
//! operations, the same maths. The choice depends only on the tensor's device and dtype, never on the
//! caller: results agree to float rounding (tests/tests/fused_norm.rs).

// The gradient returns five tensors as one tuple: the backend-extension macro reads tensor outputs from
// the written-out return type, so it cannot be a type alias.
#![allow(clippy::type_complexity)]

use burn::backend::{Dispatch, DispatchDevice, Flex, backend_extension, tensor::FloatTensor};
use burn::nn::GroupNorm;
use burn::tensor::{DType, Tensor, activation};

/// The fused operation as a backend extension; see the module documentation. `stats` is the forward
/// pass's `[B, G, 2]` mean and reciprocal standard deviation per sample and group, which the
/// gradient reads.
#[backend_extension(Flex, Autodiff: cfg(feature = "autodiff"))]
pub trait FusedNorm: burn::backend::Backend {
    /// `(act((x - mu) rstd gamma s + beta s + t), stats)`: `x` `[B, C, ...]`, `gamma`, `beta` `[C]`,
    /// `scale` (`s`), `shift` (`t`) `[B, C]`, all f32.
    #[allow(clippy::too_many_arguments)]
    fn cm_group_norm_act(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        groups: usize,
        epsilon: f64,
        silu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// The gradients `(dx, dgamma, dbeta, dscale, dshift)` of `cm_group_norm_act` for the output
    /// gradient `grad`.
    #[allow(clippy::too_many_arguments)]
    fn cm_group_norm_act_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        groups: usize,
        silu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl FusedNorm for Flex {
    fn cm_group_norm_act(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        groups: usize,
        epsilon: f64,
        silu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        burn::backend::flex::cm_norm::group_norm_act(x, gamma, beta, scale, shift, groups, epsilon, silu)
    }

    fn cm_group_norm_act_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        groups: usize,
        silu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [dx, dgamma, dbeta, dscale, dshift] = burn::backend::flex::cm_norm::group_norm_act_backward(
            x, gamma, beta, scale, shift, stats, grad, groups, silu,
        );
        (dx, dgamma, dbeta, dscale, dshift)
    }
}

#[cfg(feature = "autodiff")]
mod autodiff {
    use super::FusedNorm;
    use burn::backend::AutodiffBackend;
    use burn::backend::autodiff::{
        Autodiff,
        checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
        grads::Gradients,
        ops::{Backward, Ops, OpsKind},
    };
    use burn::backend::tensor::FloatTensor;

    #[derive(Debug)]
    struct GroupNormAct;

    /// What the gradient reads: `x`, `gamma`, `beta`, `scale`, `shift`, `stats`, `groups`, `silu`.
    type State<B> = (
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        usize,
        bool,
    );

    impl<B: FusedNorm> Backward<B, 5> for GroupNormAct {
        type State = State<B>;

        fn backward(self, ops: Ops<Self::State, 5>, grads: &mut Gradients, _: &mut Checkpointer) {
            let grad = grads.consume::<B>(&ops.node);
            let (x, gamma, beta, scale, shift, stats, groups, silu) = ops.state;
            let (dx, dgamma, dbeta, dscale, dshift) =
                B::cm_group_norm_act_backward(x, gamma, beta, scale, shift, stats, grad, groups, silu);
            for (node, g) in ops.parents.into_iter().zip([dx, dgamma, dbeta, dscale, dshift]) {
                if let Some(node) = node {
                    grads.register::<B>(node.id, g);
                }
            }
        }
    }

    impl<B: FusedNorm, C: CheckpointStrategy> FusedNorm for Autodiff<B, C> {
        fn cm_group_norm_act(
            x: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            beta: FloatTensor<Self>,
            scale: FloatTensor<Self>,
            shift: FloatTensor<Self>,
            groups: usize,
            epsilon: f64,
            silu: bool,
        ) -> (FloatTensor<Self>, FloatTensor<Self>) {
            let prep = GroupNormAct
                .prepare::<C>([x.node(), gamma.node(), beta.node(), scale.node(), shift.node()])
                .compute_bound()
                .stateful();
            let (x, gamma, beta) = (x.into_primitive(), gamma.into_primitive(), beta.into_primitive());
            let (scale, shift) = (scale.into_primitive(), shift.into_primitive());
            match prep {
                OpsKind::Tracked(prep) => {
                    let (y, stats) = B::cm_group_norm_act(
                        x.clone(),
                        gamma.clone(),
                        beta.clone(),
                        scale.clone(),
                        shift.clone(),
                        groups,
                        epsilon,
                        silu,
                    );
                    let state = (x, gamma, beta, scale, shift, stats.clone(), groups, silu);
                    (prep.finish(state, y), Self::from_inner(stats))
                }
                OpsKind::UnTracked(prep) => {
                    let (y, stats) =
                        B::cm_group_norm_act(x, gamma, beta, scale, shift, groups, epsilon, silu);
                    (prep.finish(y), Self::from_inner(stats))
                }
            }
        }

        fn cm_group_norm_act_backward(
            _x: FloatTensor<Self>,
            _gamma: FloatTensor<Self>,
            _beta: FloatTensor<Self>,
            _scale: FloatTensor<Self>,
            _shift: FloatTensor<Self>,
            _stats: FloatTensor<Self>,
            _grad: FloatTensor<Self>,
            _groups: usize,
            _silu: bool,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>)
        {
            // The gradient runs on the inner backend inside the autodiff node above; nothing in cm
            // differentiates it a second time (forward-mode tangents take the unfused path).
            unreachable!("cm_group_norm_act_backward is called on the inner backend only")
        }
    }
}

/// Whether [`group_norm_act`] runs the fused kernel for `x`: f32 on burn's CPU backend, or on autodiff
/// over it when this crate's `autodiff` feature routes the extension there.
pub fn fused_path(x: &Tensor<4>) -> bool {
    if x.dtype() != DType::F32 {
        return false;
    }
    let device = x.device().as_dispatch().clone();
    match device {
        DispatchDevice::Flex(_) => true,
        #[cfg(feature = "autodiff")]
        DispatchDevice::Autodiff(_) => matches!(device.inner(), DispatchDevice::Flex(_)),
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// `act(GroupNorm(x) · s + t)` for `x` `[B, C, H, W]`, `st = (s, t)` `[B, C]` (`None`: `s = 1`,
/// `t = 0`) and `act` SiLU when `silu`, else the identity.
pub fn group_norm_act(
    layer: &GroupNorm,
    x: Tensor<4>,
    st: Option<(Tensor<2>, Tensor<2>)>,
    silu: bool,
) -> Tensor<4> {
    let [b, c, _, _] = x.dims();
    if let (Some(gamma), Some(beta), true) = (&layer.gamma, &layer.beta, fused_path(&x)) {
        let device = x.device();
        let (s, t) = st.unwrap_or_else(|| (Tensor::ones([b, c], &device), Tensor::zeros([b, c], &device)));
        let (y, _stats) = Dispatch::cm_group_norm_act(
            x.into_dispatch(),
            gamma.val().into_dispatch(),
            beta.val().into_dispatch(),
            s.into_dispatch(),
            t.into_dispatch(),
            layer.num_groups,
            layer.epsilon,
            silu,
        );
        return Tensor::from_dispatch(y);
    }
    let mut y = layer.forward(x);
    if let Some((s, t)) = st {
        y = y * s.reshape([b, c, 1, 1]) + t.reshape([b, c, 1, 1]);
    }
    if silu { activation::silu(y) } else { y }
}
