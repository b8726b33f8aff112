//! [`DropoutMaskOps`] under autodiff: a mask's factors are a constant, computed on the inner
//! backend and not recorded; [`DropoutMaskOps::seeded_dropout_apply`] keeps only its seed, and
//! its backward pass applies the same mask to the output gradient.

use burn::backend::Backend;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn_autodiff::Autodiff;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::CheckpointStrategy;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};

use super::ops::DropoutMaskOps;

/// What the backward pass makes the mask from again.
#[derive(Debug, Clone)]
struct MaskOf<B: Backend> {
    seed: IntTensor<B>,
    threshold: usize,
    scale: f32,
}

#[derive(Debug)]
struct SeededDropoutBackward;

impl<B: Backend + DropoutMaskOps> Backward<B, 1> for SeededDropoutBackward {
    type State = MaskOf<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [x_node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = x_node {
            let MaskOf {
                seed,
                threshold,
                scale,
            } = ops.state;
            // d(x · f)/dx = f: the same factors on the gradient.
            grads.register::<B>(
                node.id,
                B::seeded_dropout_apply(grad, seed, threshold, scale),
            );
        }
    }
}

impl<B: Backend + DropoutMaskOps, C: CheckpointStrategy> DropoutMaskOps for Autodiff<B, C> {
    fn dropout_keep_scale(
        seed: IntTensor<Self>,
        rows: usize,
        cols: usize,
        threshold: usize,
        scale: f32,
    ) -> FloatTensor<Self> {
        FloatTensor::<Self>::new(B::dropout_keep_scale(seed, rows, cols, threshold, scale))
    }

    fn seeded_dropout_apply(
        x: FloatTensor<Self>,
        seed: IntTensor<Self>,
        threshold: usize,
        scale: f32,
    ) -> FloatTensor<Self> {
        let guard = [x.node()];
        let output = B::seeded_dropout_apply(x.into_primitive(), seed.clone(), threshold, scale);
        match SeededDropoutBackward
            .prepare::<C>(guard)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(
                MaskOf {
                    seed,
                    threshold,
                    scale,
                },
                output,
            ),
            OpsKind::UnTracked(prep) => prep.finish(output),
        }
    }
}
