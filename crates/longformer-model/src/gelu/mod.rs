//! The exact GELU, `x · ½ (1 + erf(x / √2))` (HF's `"gelu"`), of the feed-forward layers and
//! the masked-LM head.
//!
//! - [`ops`]: [`ExactGeluOps`], a Burn backend extension: one vectorized pass on the CPU
//!   backends (Burn 0.22.1's `gelu` there calls libm's `erff` per element: about 0.4 s of a
//!   longformer-base forward at n = 4096 on 2 cores), Burn's float ops on GPUs, and the exact
//!   derivative under autodiff.
//! - `cpu`, `cube`, `autodiff`: its implementations.

mod autodiff;
#[cfg(any(feature = "flex", feature = "ndarray"))]
mod cpu;
#[cfg(any(feature = "wgpu", feature = "vulkan"))]
mod cube;
pub mod ops;

use burn::backend::Dispatch;
use burn::tensor::activation::gelu;
use burn::tensor::{DType, Tensor};

pub use ops::ExactGeluOps;

use crate::attention::fused::fused_available;

/// `1 / √(2π)`, the standard normal density's factor (in GELU's derivative).
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// Exact GELU of every element.
///
/// f32 tensors on the backends this crate is built with go through [`ExactGeluOps`]; others
/// (half precision) through Burn's `gelu`, or, under autodiff, the formula written out so that
/// autodiff differentiates `erf` (Burn 0.22.1's `gelu` backward is the tanh approximation's
/// derivative on some backends, off from PyTorch's by up to 9e-4).
///
/// # Shapes
/// - x: any; output: the same
pub fn gelu_exact<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    if x.dtype() == DType::F32 && fused_available(&device) {
        let out = <Dispatch as ExactGeluOps>::exact_gelu(x.into_dispatch());
        return Tensor::from_dispatch(out);
    }
    if !device.is_autodiff() {
        return gelu(x);
    }
    let cdf = x
        .clone()
        .mul_scalar(std::f64::consts::FRAC_1_SQRT_2)
        .erf()
        .add_scalar(1.0)
        .mul_scalar(0.5);
    x * cdf
}
