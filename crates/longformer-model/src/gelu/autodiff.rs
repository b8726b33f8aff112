//! [`ExactGeluOps`] under autodiff: saves the input, and the backward pass is the backend's
//! [`ExactGeluOps::exact_gelu_backward`].

use burn::backend::Backend;
use burn::backend::tensor::FloatTensor;
use burn_autodiff::Autodiff;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::CheckpointStrategy;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};

use super::ops::ExactGeluOps;

#[derive(Debug)]
struct ExactGeluBackward;

impl<B: Backend + ExactGeluOps> Backward<B, 1> for ExactGeluBackward {
    type State = FloatTensor<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [x_node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = x_node {
            grads.register::<B>(node.id, B::exact_gelu_backward(ops.state, grad));
        }
    }
}

impl<B: Backend + ExactGeluOps, C: CheckpointStrategy> ExactGeluOps for Autodiff<B, C> {
    fn exact_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let guard = [x.node()];
        let x = x.into_primitive();
        let output = B::exact_gelu(x.clone());
        match ExactGeluBackward
            .prepare::<C>(guard)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(x, output),
            OpsKind::UnTracked(prep) => prep.finish(output),
        }
    }

    fn exact_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        // Not differentiated again: computed on the inner backend, untracked.
        FloatTensor::<Self>::new(B::exact_gelu_backward(
            x.into_primitive(),
            grad.into_primitive(),
        ))
    }
}
