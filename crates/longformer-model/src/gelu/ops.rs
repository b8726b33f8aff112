//! [`ExactGeluOps`]: the exact (erf) GELU and its derivative as a Burn backend extension.

// The extension names the ndarray backend, which Burn 0.22 deprecates but still supports.
#![allow(deprecated)]

use burn::backend::{Backend, backend_extension, tensor::FloatTensor};

use super::INV_SQRT_2PI;

/// `gelu(x) = x · Φ(x) = x · ½ (1 + erf(x / √2))`, elementwise, and its exact derivative.
///
/// The CPU backends (flex, ndarray) compute both in one vectorized pass each; autodiff registers
/// [`exact_gelu_backward`](Self::exact_gelu_backward) as the backward pass. The CubeCL backend
/// and Burn's fusion on top of it use the default bodies, which compose Burn's float ops: under
/// fusion they join the neighbouring elementwise ops (bias add, residual) in one generated
/// kernel, which an opaque op would prevent. (Burn 0.22.1's own `gelu` calls libm's `erff` once
/// per element on the CPU, and its backward is the tanh approximation's derivative.)
#[backend_extension(
    Cube: cfg(any(feature = "wgpu", feature = "vulkan")),
    Flex: cfg(feature = "flex"),
    NdArray: cfg(feature = "ndarray"),
    Autodiff,
    Fusion: cfg(feature = "fusion"),
)]
pub trait ExactGeluOps: Backend {
    /// `x · Φ(x)`, any shape, f32.
    #[fusion(default)]
    fn exact_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu(x)
    }

    /// `grad · (Φ(x) + x · φ(x))`: the gradient of [`exact_gelu`](Self::exact_gelu) at `x`
    /// given the output gradient `grad` (same shape).
    #[fusion(default)]
    fn exact_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        let scaled = Self::float_mul_scalar(x.clone(), std::f32::consts::FRAC_1_SQRT_2.into());
        let cdf = Self::float_mul_scalar(
            Self::float_add_scalar(Self::float_erf(scaled), 1.0.into()),
            0.5.into(),
        );
        let half_square =
            Self::float_mul_scalar(Self::float_mul(x.clone(), x.clone()), (-0.5).into());
        // φ(x) = e^(-x²/2) / √(2π)
        let pdf = Self::float_mul_scalar(Self::float_exp(half_square), INV_SQRT_2PI.into());
        Self::float_mul(grad, Self::float_add(cdf, Self::float_mul(x, pdf)))
    }
}
