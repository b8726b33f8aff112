//! [`LayerNormOps`] under autodiff: the forward pass saves `x`, `gamma`, and each row's mean
//! and `rstd`; the backward pass is the backend's [`LayerNormOps::layer_norm_backward`].

use burn::backend::Backend;
use burn::backend::tensor::FloatTensor;
use burn_autodiff::Autodiff;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::CheckpointStrategy;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};

use super::ops::LayerNormOps;

/// What the backward pass needs, as the inner backend's tensors.
#[derive(Debug, Clone)]
struct Saved<B: Backend> {
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    mean: FloatTensor<B>,
    rstd: FloatTensor<B>,
}

#[derive(Debug)]
struct LayerNormBackward;

impl<B: Backend + LayerNormOps> Backward<B, 3> for LayerNormBackward {
    type State = Saved<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [x_node, gamma_node, beta_node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let s = ops.state;
        let (dx, d_gamma, d_beta) = B::layer_norm_backward(s.x, s.gamma, s.mean, s.rstd, grad);
        for (node, grad) in [(x_node, dx), (gamma_node, d_gamma), (beta_node, d_beta)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: Backend + LayerNormOps, C: CheckpointStrategy> LayerNormOps for Autodiff<B, C> {
    fn layer_norm_forward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let guards = [x.node(), gamma.node(), beta.node()];
        let [x, gamma, beta] = [x, gamma, beta].map(|t| t.into_primitive());
        let (y, mean, rstd) = B::layer_norm_forward(x.clone(), gamma.clone(), beta, epsilon);
        let y = match LayerNormBackward
            .prepare::<C>(guards)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(
                Saved {
                    x,
                    gamma,
                    mean: mean.clone(),
                    rstd: rstd.clone(),
                },
                y,
            ),
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        (
            y,
            FloatTensor::<Self>::new(mean),
            FloatTensor::<Self>::new(rstd),
        )
    }

    fn layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        rstd: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        // Not differentiated again: computed on the inner backend, untracked.
        let [x, gamma, mean, rstd, grad] = [x, gamma, mean, rstd, grad].map(|t| t.into_primitive());
        let (dx, d_gamma, d_beta) = B::layer_norm_backward(x, gamma, mean, rstd, grad);
        (
            FloatTensor::<Self>::new(dx),
            FloatTensor::<Self>::new(d_gamma),
            FloatTensor::<Self>::new(d_beta),
        )
    }
}
