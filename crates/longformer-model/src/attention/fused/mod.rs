//! The fused sliding-window + global-key attention: one pass per direction (CubeCL kernels on
//! GPUs, blocked products on CPUs) that keeps no score tensor, instead of the band path's
//! materialized `[m, g + 3w]` scores.
//!
//! - [`ops`]: [`LocalAttentionOps`], the Burn backend extension.
//! - `kernels`, `cube`: its CubeCL kernels and their launch on wgpu/vulkan devices; `tune`:
//!   their launch shape timed on the device (with the `autotune` feature).
//! - `cpu`: the same on flex and ndarray; `cpu_rows`: its vectorized per-row softmax.
//! - `autodiff`: its backward pass (recomputed probabilities, no saved scores).
//!
//! [`LocalAttentionKernel`] says where it runs: by default on every backend (CubeCL kernels on
//! GPUs, blocked `gemm` products on flex and ndarray) in f32 when no attention probabilities
//! are requested; otherwise the band path of [`super::local`] runs.
//! Attention dropout happens inside the op (band probabilities by a hash of a seed drawn
//! from the device's generator and their position, global ones by a `[m, g]` mask).

mod autodiff;
#[cfg(any(feature = "flex", feature = "ndarray"))]
mod cpu;
#[cfg(any(feature = "flex", feature = "ndarray"))]
mod cpu_rows;
#[cfg(any(feature = "wgpu", feature = "vulkan"))]
mod cube;
#[cfg(any(feature = "wgpu", feature = "vulkan"))]
mod kernels;
pub mod ops;
#[cfg(any(feature = "wgpu", feature = "vulkan"))]
mod tune;

use burn::backend::Dispatch;
use burn::tensor::{DType, Device, Distribution, Int, Tensor};
use serde::{Deserialize, Serialize};

pub use ops::LocalAttentionOps;

/// Which implementation computes the local attention (band + global keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalAttentionKernel {
    /// The fused op where it applies (f32, no probabilities requested), the band path
    /// elsewhere.
    #[default]
    Auto,
    /// The fused op wherever it applies; an error on a device without it.
    Fused,
    /// Always the band path (the reference: Burn tensor ops only).
    Reference,
}

/// Whether `device` has the fused op: every backend this crate is built with (CubeCL devices
/// run GPU kernels, flex and ndarray blocked CPU products), with or without autodiff.
pub fn fused_available(device: &Device) -> bool {
    use burn::backend::DispatchDevice as D;
    #[allow(unreachable_patterns)]
    match device.clone().without_autodiff().as_dispatch() {
        #[cfg(any(feature = "wgpu", feature = "vulkan"))]
        D::Cube(_) => true,
        #[cfg(feature = "flex")]
        D::Flex(_) => true,
        #[cfg(feature = "ndarray")]
        D::NdArray(_) => true,
        _ => false,
    }
}

/// Whether the fused kernel computes a tensor of this dtype (f32 only for now).
pub fn fused_dtype(dtype: DType) -> bool {
    dtype == DType::F32
}

/// Local attention of every query over its window and the global slots, in one fused pass.
///
/// See [`LocalAttentionOps::local_attention_forward`] for the window and masks. Without global
/// slots (`global` is `None`) a single empty slot stands in. `dropout` is the probability of
/// dropping an attention probability (0 outside training).
///
/// # Shapes
/// - q (already scaled), k, v: `[rows, heads, m, d]`
/// - global: keys and values `[rows, heads, g, d]`
/// - key_ok: `[rows, m]`; global_ok: `[rows, g]` (`[rows, 1]` of zeros without global slots)
/// - output: `[rows, heads, m, d]`
#[allow(clippy::too_many_arguments)]
pub fn fused_local_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    global: Option<(Tensor<4>, Tensor<4>)>,
    key_ok: Tensor<2>,
    global_ok: Tensor<2>,
    window: usize,
    causal: bool,
    dropout: f64,
) -> Tensor<4> {
    let [rows, heads, m, d] = q.dims();
    let device = q.device();
    let (global_k, global_v) = global.unwrap_or_else(|| {
        let none = Tensor::<4>::zeros([rows, heads, 1, d], &device);
        (none.clone(), none)
    });
    let g = global_k.dims()[2];
    let (global_keep, seed) = if dropout > 0.0 {
        let keep = 1.0 - dropout;
        (
            Tensor::<4>::random([rows, heads, m, g], Distribution::Bernoulli(keep), &device) / keep,
            dropout_seed(&device),
        )
    } else {
        // Not read without dropout.
        (
            global_ok.clone().reshape([rows, 1, 1, g]),
            Tensor::zeros([1], &device),
        )
    };
    let (context, _lse) = <Dispatch as LocalAttentionOps>::local_attention_forward(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        global_k.into_dispatch(),
        global_v.into_dispatch(),
        key_ok.into_dispatch(),
        global_ok.into_dispatch(),
        global_keep.into_dispatch(),
        seed.into_dispatch(),
        dropout as f32,
        window,
        causal,
    );
    Tensor::from_dispatch(context)
}

/// A random seed for the band's dropout hash, in `0..2^30`, from the device's generator. Burn
/// draws integers through f32, whose 24-bit mantissa would leave one draw in `0..2^31` only
/// 2^24 distinct seeds (two layers of a long run would then share their masks after some
/// four thousand draws); two draws of 15 bits each give every seed of 30 bits.
fn dropout_seed(device: &Device) -> Tensor<1, Int> {
    let halves = Tensor::<1, Int>::random([2], Distribution::Uniform(0.0, 32_768.0), device);
    halves.clone().narrow(0, 0, 1) * 32_768 + halves.narrow(0, 1, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every 30-bit seed can be drawn on every device: one draw in `0..2^30` through f32 gives
    /// only multiples of 64 above 2^24 on the GPU backends.
    #[test]
    fn dropout_seeds_use_all_their_bits() {
        #[allow(unused_mut)]
        let mut devices = vec![Device::flex()];
        #[cfg(any(feature = "wgpu", feature = "vulkan"))]
        if std::env::var("LONGFORMER_SKIP_WGPU").map_or(true, |v| v != "1") {
            devices.push(Device::wgpu(Default::default()));
        }
        for device in devices {
            let seeds: Vec<i64> = (0..64)
                .map(|_| dropout_seed(&device).into_scalar::<i64>())
                .collect();
            assert!(seeds.iter().all(|s| (0..1 << 30).contains(s)), "{seeds:?}");
            let coarse = seeds.iter().filter(|&&s| s % 64 == 0).count();
            assert!(
                coarse < 8,
                "{device:?}: {coarse} of 64 seeds are multiples of 64: {seeds:?}"
            );
            assert!(seeds.iter().any(|&s| s >= 1 << 24), "{seeds:?}");
        }
    }
}
