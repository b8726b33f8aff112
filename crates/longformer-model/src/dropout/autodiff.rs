//! [`DropoutMaskOps`] under autodiff: a mask is a constant, computed on the inner backend and
//! not recorded.

use burn::backend::Backend;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn_autodiff::Autodiff;
use burn_autodiff::checkpoint::strategy::CheckpointStrategy;

use super::ops::DropoutMaskOps;

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
}
