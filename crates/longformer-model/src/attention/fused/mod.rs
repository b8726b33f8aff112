//! The fused sliding-window + global-key attention: one pass per direction (CubeCL kernels on
//! GPUs, blocked products on CPUs) that keeps no score tensor, instead of the band path's
//! materialized `[m, g + 3w]` scores.
//!
//! - [`ops`]: [`LocalAttentionOps`], the Burn backend extension.
//! - `kernels`, `cube`: its CubeCL kernels and their launch on wgpu/vulkan devices; `tune`:
//!   their launch shape timed on the device (with the `autotune` feature).
//! - `cpu`: the same on flex and ndarray; `cpu_rows`: its vectorized per-row softmax.
//! - `autodiff`: its backward pass (recomputed probabilities, no saved scores).
//! - `global_rows`: the global rows' attention over every key as the same op (its global
//!   slots are every key), the keys in chunks on GPUs ([`fused_global_rows`]).
//!
//! [`LocalAttentionKernel`] says where it runs: by default on every backend (CubeCL kernels on
//! GPUs, blocked `gemm` products on flex and ndarray) in f32 when no attention probabilities
//! are requested; otherwise the band path of [`super::local`] runs.
//! Attention dropout happens inside the op, with no mask tensor: band probabilities by a hash
//! of the site's [`DropoutSeed`] and their position, global ones by the elements of
//! [`keep_scale`](crate::dropout::keep_scale)'s mask for another seed of the site, each hashed
//! where it is used (so the backward pass keeps no mask either).

mod autodiff;
#[cfg(any(feature = "flex", feature = "ndarray"))]
mod cpu;
#[cfg(any(feature = "flex", feature = "ndarray"))]
mod cpu_rows;
#[cfg(any(feature = "wgpu", feature = "vulkan"))]
mod cube;
#[cfg(test)]
mod global_backward_tests;
mod global_rows;
#[cfg(test)]
mod global_rows_tests;
#[cfg(any(feature = "wgpu", feature = "vulkan"))]
mod kernels;
pub mod ops;
#[cfg(any(feature = "wgpu", feature = "vulkan"))]
mod tune;

use burn::backend::Dispatch;
use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::dropout::DropoutSeed;

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
    #[allow(unused_imports)] // no backend of this crate's: no arm names a variant
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

/// Whether `device` is a GPU of this crate's (wgpu or vulkan: CubeCL kernels), with or without
/// autodiff.
pub(crate) fn on_gpu(device: &Device) -> bool {
    #[allow(unused_imports)] // no GPU backend: no arm names a variant
    use burn::backend::DispatchDevice as D;
    #[allow(unreachable_patterns)]
    match device.clone().without_autodiff().as_dispatch() {
        #[cfg(any(feature = "wgpu", feature = "vulkan"))]
        D::Cube(_) => true,
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
/// dropping an attention probability (0 outside training); `seed` says which are dropped
/// (unread without dropout).
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
    seed: DropoutSeed,
) -> Tensor<4> {
    let [rows, heads, _, d] = q.dims();
    let device = q.device();
    let (global_k, global_v) = global.unwrap_or_else(|| {
        let none = Tensor::<4>::zeros([rows, heads, 1, d], &device);
        (none.clone(), none)
    });
    let (context, _lse) = <Dispatch as LocalAttentionOps>::local_attention_forward(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        global_k.into_dispatch(),
        global_v.into_dispatch(),
        key_ok.into_dispatch(),
        global_ok.into_dispatch(),
        // The band's key, then the global slots' (the seeds `keep_scale` would take).
        seed_keys([seed.child(1), seed.child(0)], &device).into_dispatch(),
        dropout,
        window,
        causal,
        1,
    );
    Tensor::from_dispatch(context)
}

/// Keys per chunk of the global rows' attention on GPUs: with `g` global queries, each chunk is
/// one walk of `g` units over `c` keys, so `n / 256` chunks per `(row, head)` pair keep an H200's
/// 132 multiprocessors busy from n = 4,096 on (192 cubes of 64 queries at longformer-base's 12
/// heads), and the chunks' contexts (`[n / 256, g, d]` per pair) stay small.
const GLOBAL_KEYS_PER_CHUNK: usize = 256;

/// How many keys each chunk of the global rows' attention holds for a sequence of `n` keys:
/// `n` itself on CPUs (one `(row, head)` pair per thread already fills them) and for short
/// sequences; else the largest divisor of `n` from a quarter of [`GLOBAL_KEYS_PER_CHUNK`] up
/// to it, or, for a length with no such divisor, [`GLOBAL_KEYS_PER_CHUNK`] itself (the keys
/// are then padded to a multiple of it).
pub(crate) fn global_key_chunk(n: usize, gpu: bool) -> usize {
    if !gpu || n <= GLOBAL_KEYS_PER_CHUNK {
        return n;
    }
    (GLOBAL_KEYS_PER_CHUNK / 4..=GLOBAL_KEYS_PER_CHUNK)
        .rev()
        .find(|c| n.is_multiple_of(*c))
        .unwrap_or(GLOBAL_KEYS_PER_CHUNK)
}

/// The global rows' attention over every key of their batch row, in one fused pass
/// ([`LocalAttentionOps::global_rows_forward`]): no `[g, n]` score or probability tensor is
/// kept. `dropout` is the probability of dropping an attention probability (0 outside
/// training), with the mask [`keep_scale`](crate::dropout::keep_scale) gives
/// `[rows, heads, g, n]` for `seed` (Burn ops with [`crate::dropout::seeded_dropout`] drop the
/// same probabilities). On GPUs the keys are split into chunks of up to 256.
///
/// # Shapes
/// - q (already scaled): `[rows, heads, g, d]`
/// - keys, values: `[rows, n, heads · d]` (projections, heads not split)
/// - key_ok: `[rows, n]` (1.0 for keys the rows see)
/// - output: `[rows, heads, g, d]`
pub fn fused_global_rows(
    q: Tensor<4>,
    keys: Tensor<3>,
    values: Tensor<3>,
    key_ok: Tensor<2>,
    dropout: f64,
    seed: DropoutSeed,
) -> Tensor<4> {
    let chunk = global_key_chunk(keys.dims()[1], on_gpu(&q.device()));
    fused_global_rows_in_chunks(q, keys, values, key_ok, dropout, seed, chunk)
}

/// The keys of `seeds` as a `[2]` tensor: the fused op's `seed`.
fn seed_keys(seeds: [DropoutSeed; 2], device: &Device) -> Tensor<1, Int> {
    Tensor::from_data(
        TensorData::new(seeds.map(|s| s.key()).to_vec(), [2]),
        device,
    )
}

/// [`fused_global_rows`] with `chunk` keys per chunk; unless `chunk` divides `n`, the keys
/// are padded (with keys no row sees) to a multiple of it.
pub(crate) fn fused_global_rows_in_chunks(
    q: Tensor<4>,
    keys: Tensor<3>,
    values: Tensor<3>,
    key_ok: Tensor<2>,
    dropout: f64,
    seed: DropoutSeed,
    chunk: usize,
) -> Tensor<4> {
    let [rows, heads, _, d] = q.dims();
    let n = keys.dims()[1];
    assert!(chunk > 0, "chunks of no keys");
    let chunks = n.div_ceil(chunk);
    let padded = chunks * chunk;
    let device = q.device();
    // Padding keys: zero, and seen by no row (`cat`, whose gradient is a slice, for the
    // tracked projections).
    let pad = |x: Tensor<3>| {
        if padded == n {
            return x;
        }
        let [rows, n, width] = x.dims();
        let zeros = Tensor::zeros([rows, padded - n, width], &device);
        Tensor::cat(vec![x, zeros], 1)
    };
    let (keys, values) = (pad(keys), pad(values));
    let key_ok = if padded == n {
        key_ok
    } else {
        key_ok.pad([(0, padded - n)], 0.0)
    };
    // Chunk `s` of row `r` is row `r · chunks + s`: free reshapes of the projections.
    let split = |x: Tensor<3>| x.reshape([rows * chunks, chunk, heads, d]).swap_dims(1, 2);
    let (context, _lse) = <Dispatch as LocalAttentionOps>::global_rows_forward(
        q.into_dispatch(),
        split(keys).into_dispatch(),
        split(values).into_dispatch(),
        key_ok.reshape([rows * chunks, chunk]).into_dispatch(),
        // No band; the probabilities' mask is `keep_scale`'s for `seed`.
        seed_keys([seed, seed], &device).into_dispatch(),
        dropout,
    );
    Tensor::from_dispatch(context)
}
