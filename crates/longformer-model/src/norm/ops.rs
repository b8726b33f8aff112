//! [`LayerNormOps`]: LayerNorm over the last axis and its backward pass as a Burn backend
//! extension.

// The extension names the ndarray backend, which Burn 0.22 deprecates but still supports.
#![allow(deprecated)]
// Built with no backend at all (`--no-default-features` alone), the generated dispatch has no
// arm to pass the scalar arguments to.
#![cfg_attr(
    not(any(
        feature = "flex",
        feature = "ndarray",
        feature = "wgpu",
        feature = "vulkan"
    )),
    allow(unused_variables)
)]

use burn::backend::{Backend, backend_extension, tensor::FloatTensor};

/// `y = (x - mean) · rstd · gamma + beta` per row, `rstd = 1 / √(var + epsilon)` (biased
/// variance), and its gradients from the saved `mean` and `rstd` (PyTorch's `layer_norm`
/// recipe).
///
/// Under autodiff Burn's LayerNorm is its composition of about ten tensor ops, differentiated
/// one by one: on the CPU backends some 15 passes over `[rows, d]` in the backward pass (about
/// 60 ms at `[4096, 768]` on 2 cores), on GPUs 14 kernel launches per LayerNorm and training
/// step, most of them unfused. Here each direction is one pass over the rows: vectorized loops
/// on the CPU backends (flex, ndarray), one CubeCL kernel on GPUs (plus, backward, one
/// reduction of the blocks' `dgamma` and `dbeta` sums), an opaque op in Burn's fusion stream.
#[backend_extension(
    Cube: cfg(any(feature = "wgpu", feature = "vulkan")),
    Flex: cfg(feature = "flex"),
    NdArray: cfg(feature = "ndarray"),
    Autodiff,
    Fusion: cfg(feature = "fusion"),
)]
pub trait LayerNormOps: Backend {
    /// The normalized rows, and each row's mean and `rstd`.
    ///
    /// # Shapes
    /// - x: `[rows, d]`; gamma, beta: `[d]`
    /// - output: `(y [rows, d], mean [rows], rstd [rows])`
    #[fusion(meta = fusion_outputs::forward)]
    fn layer_norm_forward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// Gradients of [`layer_norm_forward`](Self::layer_norm_forward)'s `y` with respect to `x`,
    /// `gamma` and `beta`, given the output gradient `grad` and the forward pass's `mean` and
    /// `rstd`: with `x̂ = (x - mean) · rstd` and `g = grad · gamma`,
    /// `dx = rstd · (g - mean(g) - x̂ · mean(g · x̂))` per row, `dgamma = Σ_rows grad · x̂`,
    /// `dbeta = Σ_rows grad`.
    ///
    /// # Shapes
    /// - x, grad: `[rows, d]`; gamma: `[d]`; mean, rstd: `[rows]`
    /// - output: `(dx [rows, d], dgamma [d], dbeta [d])`
    #[fusion(meta = fusion_outputs::backward)]
    fn layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        rstd: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// Output metadata for Burn's fusion, which registers the ops before they run.
#[cfg(feature = "fusion")]
mod fusion_outputs {
    use burn::backend::fusion::custom::TensorSpec;

    /// [`super::LayerNormOps::layer_norm_forward`]: `y` like `x`, `mean` and `rstd` one per row.
    pub(super) fn forward(
        x: &TensorSpec,
        _gamma: &TensorSpec,
        _beta: &TensorSpec,
        _epsilon: &f32,
    ) -> (TensorSpec, TensorSpec, TensorSpec) {
        let [rows, _] = x.shape.dims::<2>();
        let stat = TensorSpec::new([rows].into(), x.dtype);
        (x.clone(), stat.clone(), stat)
    }

    /// [`super::LayerNormOps::layer_norm_backward`]: `dx` like `x`, `dgamma` and `dbeta` like
    /// `gamma`.
    pub(super) fn backward(
        x: &TensorSpec,
        gamma: &TensorSpec,
        _mean: &TensorSpec,
        _rstd: &TensorSpec,
        _grad: &TensorSpec,
    ) -> (TensorSpec, TensorSpec, TensorSpec) {
        (x.clone(), gamma.clone(), gamma.clone())
    }
}
