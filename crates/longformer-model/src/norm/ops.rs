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

use burn::backend::{Backend, TensorMetadata, backend_extension, tensor::FloatTensor};
use burn::tensor::Shape;

/// `y = (x - mean) · rstd · gamma + beta` per row, `rstd = 1 / √(var + epsilon)` (biased
/// variance), and its gradients from the saved `mean` and `rstd` (PyTorch's `layer_norm`
/// recipe).
///
/// Under autodiff Burn's LayerNorm is its composition of about ten tensor ops, differentiated
/// one by one: on the CPU backends some 15 passes over `[rows, d]` in the backward pass (about
/// 60 ms at `[4096, 768]` on 2 cores), on GPUs as many kernel launches, most of them unfused.
/// Here the CPU backends (flex, ndarray) make one vectorized pass per direction; the CubeCL
/// backend and Burn's fusion on top of it use the default bodies, fewer Burn ops than the
/// composition's backward.
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
    #[fusion(default)]
    fn layer_norm_forward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [rows, d] = x.shape().dims::<2>();
        let mean = Self::float_mean_dim(x.clone(), 1);
        let centered = Self::float_sub(x, mean.clone());
        let var = Self::float_mean_dim(Self::float_mul(centered.clone(), centered.clone()), 1);
        let rstd = Self::float_recip(Self::float_sqrt(Self::float_add_scalar(
            var,
            epsilon.into(),
        )));
        let y = Self::float_add(
            Self::float_mul(
                Self::float_mul(centered, rstd.clone()),
                Self::float_reshape(gamma, Shape::new([1, d])),
            ),
            Self::float_reshape(beta, Shape::new([1, d])),
        );
        (
            y,
            Self::float_reshape(mean, Shape::new([rows])),
            Self::float_reshape(rstd, Shape::new([rows])),
        )
    }

    /// Gradients of [`layer_norm_forward`](Self::layer_norm_forward)'s `y` with respect to `x`,
    /// `gamma` and `beta`, given the output gradient `grad` and the forward pass's `mean` and
    /// `rstd`: with `x̂ = (x - mean) · rstd` and `g = grad · gamma`,
    /// `dx = rstd · (g - mean(g) - x̂ · mean(g · x̂))` per row, `dgamma = Σ_rows grad · x̂`,
    /// `dbeta = Σ_rows grad`.
    ///
    /// # Shapes
    /// - x, grad: `[rows, d]`; gamma: `[d]`; mean, rstd: `[rows]`
    /// - output: `(dx [rows, d], dgamma [d], dbeta [d])`
    #[fusion(default)]
    fn layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        rstd: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [rows, d] = x.shape().dims::<2>();
        let rstd = Self::float_reshape(rstd, Shape::new([rows, 1]));
        let x_hat = Self::float_mul(
            Self::float_sub(x, Self::float_reshape(mean, Shape::new([rows, 1]))),
            rstd.clone(),
        );
        let d_beta = Self::float_reshape(Self::float_sum_dim(grad.clone(), 0), Shape::new([d]));
        let d_gamma = Self::float_reshape(
            Self::float_sum_dim(Self::float_mul(grad.clone(), x_hat.clone()), 0),
            Shape::new([d]),
        );
        let g = Self::float_mul(grad, Self::float_reshape(gamma, Shape::new([1, d])));
        let mean_g = Self::float_mean_dim(g.clone(), 1);
        let mean_gx = Self::float_mean_dim(Self::float_mul(g.clone(), x_hat.clone()), 1);
        let dx = Self::float_mul(
            Self::float_sub(Self::float_sub(g, mean_g), Self::float_mul(x_hat, mean_gx)),
            rstd,
        );
        (dx, d_gamma, d_beta)
    }
}
