//! [`ExactGeluOps`]: the exact (erf) GELU and its derivative as a Burn backend extension.

// The extension names the ndarray backend, which Burn 0.22 deprecates but still supports.
#![allow(deprecated)]

use burn::backend::{Backend, backend_extension, tensor::FloatTensor};

/// `gelu(x) = x · Φ(x) = x · ½ (1 + erf(x / √2))`, elementwise, and its exact derivative.
///
/// The CPU backends (flex, ndarray) compute both in one vectorized pass each; the CubeCL backend
/// composes Burn's float ops; autodiff registers [`exact_gelu_backward`](Self::exact_gelu_backward)
/// as the backward pass. (Burn 0.22.1's own `gelu` calls libm's `erff` once per element on the
/// CPU, and its backward is the tanh approximation's derivative.)
#[backend_extension(
    Cube: cfg(any(feature = "wgpu", feature = "vulkan")),
    Flex: cfg(feature = "flex"),
    NdArray: cfg(feature = "ndarray"),
    Autodiff,
)]
pub trait ExactGeluOps: Backend {
    /// `x · Φ(x)`, any shape, f32.
    fn exact_gelu(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `grad · (Φ(x) + x · φ(x))`: the gradient of [`exact_gelu`](Self::exact_gelu) at `x`
    /// given the output gradient `grad` (same shape).
    fn exact_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
}
