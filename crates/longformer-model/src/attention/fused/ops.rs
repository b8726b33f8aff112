//! [`LocalAttentionOps`]: the fused local-attention op as a Burn backend extension.

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

use burn::backend::{
    Backend, backend_extension,
    tensor::{FloatTensor, IntTensor},
};

/// Local (band + global keys) attention in one pass, never writing the score tensor.
///
/// Implemented by the CubeCL backend (wgpu, vulkan) with its own kernels, by the CPU backends
/// (flex, ndarray) with blocked `gemm` products, and by autodiff on
/// top of it with a flash-attention style backward (scores recomputed from `q`, `k` and the
/// saved row log-sum-exp). Inputs may have any layout: the CubeCL kernels read the heads of a
/// `[rows, m, heads · d]` projection in place and write their `[rows, heads, m, d]` outputs
/// token-major (so that merging the heads is a view). Axes: `rows` (batch rows, or
/// sub-sequences under dilation), `heads`, `m` (sequence length), `g` (global slots, at least
/// 1: an all-empty slot stands for none), `d` (head size).
#[backend_extension(
    Cube: cfg(any(feature = "wgpu", feature = "vulkan")),
    Flex: cfg(feature = "flex"),
    NdArray: cfg(feature = "ndarray"),
    Autodiff,
    Fusion: cfg(feature = "fusion"),
)]
pub trait LocalAttentionOps: Backend {
    /// Context and row log-sum-exp of every query over its window and the global keys.
    ///
    /// Query `i` sees band key `j` when `i - window <= j <= i + window` (`j <= i` as well when
    /// `causal`) and `key_ok[row, j] > 0.5`, and global slot `s` when `global_ok[row, s] > 0.5`.
    /// A query that sees no key gets a zero context and a log-sum-exp of 0.
    ///
    /// With `dropout > 0`, each probability is dropped with that probability (kept ones scaled
    /// by `1 / (1 - dropout)`) before the values are weighted: band probabilities by a hash of
    /// `seed[0]` and their position (the backward pass recomputes it), global ones by
    /// `global_keep` (`0` or `1 / (1 - dropout)`). The log-sum-exp is that of the probabilities
    /// before dropout. With `dropout == 0`, `global_keep` and `seed` are not read.
    ///
    /// # Shapes
    /// - q (already scaled), k, v: `[rows, heads, m, d]`
    /// - global_k, global_v: `[rows, heads, g, d]`
    /// - key_ok: `[rows, m]`, global_ok: `[rows, g]` (1.0 or 0.0)
    /// - global_keep: `[rows, heads, m, g]`; seed: `[1]`
    /// - output: context `[rows, heads, m, d]`, log-sum-exp `[rows, heads, m]`
    #[allow(clippy::too_many_arguments)]
    #[fusion(meta = fusion_outputs::forward)]
    fn local_attention_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        global_k: FloatTensor<Self>,
        global_v: FloatTensor<Self>,
        key_ok: FloatTensor<Self>,
        global_ok: FloatTensor<Self>,
        global_keep: FloatTensor<Self>,
        seed: IntTensor<Self>,
        dropout: f32,
        window: usize,
        causal: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// Gradients of the band part of [`local_attention_forward`](Self::local_attention_forward)
    /// with respect to `q`, `k` and `v`, given the output gradient `grad`, the forward pass's
    /// log-sum-exp `lse` and `delta = sum(grad * context, -1)`, with the forward pass's `seed`
    /// and `dropout`. The global keys' share is left to the caller (a small `[m, g]` product).
    ///
    /// # Shapes
    /// - q, k, v, grad: `[rows, heads, m, d]`
    /// - key_ok: `[rows, m]`
    /// - lse, delta: `[rows, heads, m]`
    /// - output: `(dq, dk, dv)`, each `[rows, heads, m, d]`
    #[allow(clippy::too_many_arguments)]
    #[fusion(meta = fusion_outputs::band_backward)]
    fn local_attention_band_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        key_ok: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        delta: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        seed: IntTensor<Self>,
        dropout: f32,
        window: usize,
        causal: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// Output metadata for Burn's fusion, which registers the ops before they run.
#[cfg(feature = "fusion")]
#[allow(clippy::too_many_arguments)]
mod fusion_outputs {
    use burn::backend::fusion::custom::TensorSpec;

    /// [`super::LocalAttentionOps::local_attention_forward`]: the context has the queries'
    /// shape and dtype; the log-sum-exp drops their last axis.
    pub(super) fn forward(
        q: &TensorSpec,
        _k: &TensorSpec,
        _v: &TensorSpec,
        _global_k: &TensorSpec,
        _global_v: &TensorSpec,
        _key_ok: &TensorSpec,
        _global_ok: &TensorSpec,
        _global_keep: &TensorSpec,
        _seed: &TensorSpec,
        _dropout: &f32,
        _window: &usize,
        _causal: &bool,
    ) -> (TensorSpec, TensorSpec) {
        let [rows, heads, m, _] = q.shape.dims::<4>();
        (q.clone(), TensorSpec::new([rows, heads, m].into(), q.dtype))
    }

    /// [`super::LocalAttentionOps::local_attention_band_backward`]: `dq`, `dk`, `dv` have the
    /// shapes of `q`, `k`, `v`.
    pub(super) fn band_backward(
        q: &TensorSpec,
        k: &TensorSpec,
        v: &TensorSpec,
        _key_ok: &TensorSpec,
        _lse: &TensorSpec,
        _delta: &TensorSpec,
        _grad: &TensorSpec,
        _seed: &TensorSpec,
        _dropout: &f32,
        _window: &usize,
        _causal: &bool,
    ) -> (TensorSpec, TensorSpec, TensorSpec) {
        (q.clone(), k.clone(), v.clone())
    }
}
