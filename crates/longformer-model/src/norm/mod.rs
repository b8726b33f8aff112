//! LayerNorm in training: [`layer_norm`] runs Burn's `LayerNorm` module's parameters through
//! [`LayerNormOps`], whose backward pass is one op, where Burn differentiates its LayerNorm's
//! composition of tensor ops one by one.
//!
//! - [`ops`]: [`LayerNormOps`], a Burn backend extension: one vectorized pass per direction on
//!   the CPU backends, one CubeCL kernel per direction on GPUs, its own backward under autodiff.
//! - `cpu`, `cube` (with `kernels`), `autodiff`: its implementations.

mod autodiff;
#[cfg(any(feature = "flex", feature = "ndarray"))]
mod cpu;
#[cfg(any(feature = "wgpu", feature = "vulkan"))]
mod cube;
#[cfg(any(feature = "wgpu", feature = "vulkan"))]
mod kernels;
pub mod ops;

use burn::backend::Dispatch;
use burn::nn::LayerNorm;
use burn::tensor::{DType, Tensor};

pub use ops::LayerNormOps;

use crate::attention::fused::{fused_available, on_gpu};

/// `norm.forward(x)` with epsilon `epsilon` (the one `norm` was built with: Burn keeps it
/// private).
///
/// In f32 on a backend of this crate's it goes through [`LayerNormOps`] in a recorded pass, and
/// on GPUs in inference too (one kernel where Burn's LayerNorm is five launches); otherwise
/// (CPU inference, where flex has its own one-pass LayerNorm; half precision, which Burn
/// normalizes in f32) it is Burn's.
///
/// # Shapes
/// - x: `[..., d]`; output: the same
pub fn layer_norm<const D: usize>(norm: &LayerNorm, epsilon: f64, x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    let gamma = norm.gamma.val();
    let Some(beta) = norm.beta.as_ref().map(|b| b.val()) else {
        return norm.forward(x);
    };
    let f32s = [x.dtype(), gamma.dtype(), beta.dtype()] == [DType::F32; 3];
    let ours = device.is_autodiff() || on_gpu(&device);
    if !ours || !f32s || !fused_available(&device) {
        return norm.forward(x);
    }
    let dims = x.dims();
    let d = dims[D - 1];
    let rows = dims.iter().product::<usize>() / d.max(1);
    let (y, _mean, _rstd) = <Dispatch as LayerNormOps>::layer_norm_forward(
        x.reshape([rows, d]).into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon as f32,
    );
    Tensor::<2>::from_dispatch(y).reshape(dims)
}

#[cfg(test)]
mod tests;
