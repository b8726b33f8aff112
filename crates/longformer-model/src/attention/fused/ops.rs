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
    Backend, TensorMetadata, backend_extension,
    tensor::{FloatTensor, IntTensor},
};
use burn::tensor::Shape;

use crate::dropout::{DropoutMaskOps, keep_threshold_and_scale};

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
///
/// The global slots' dropout mask is never a tensor: each implementation computes the factor of
/// slot `s` for query `i` of row `r`, head `h` where it uses it, as one element of
/// [`keep_scale`](crate::dropout::keep_scale)'s mask for the key `seed[1]`, a mask of
/// `rows / slot_chunks · heads · m` rows and `slot_chunks · g` columns: row
/// `((r / slot_chunks) · heads + h) · m + i`, column `(r % slot_chunks) · g + s`. With one run
/// of slots per row that is the `[rows, heads, m, g]` mask of the slots; the global rows' op
/// splits every key of a batch row into `slot_chunks` runs of slots, and it is then the mask
/// of all of them. So the backward pass computes it again, and Burn ops with that mask drop
/// the same probabilities.
#[backend_extension(
    Cube: cfg(any(feature = "wgpu", feature = "vulkan")),
    Flex: cfg(feature = "flex"),
    NdArray: cfg(feature = "ndarray"),
    Autodiff,
    Fusion: cfg(feature = "fusion"),
)]
pub trait LocalAttentionOps: Backend + DropoutMaskOps {
    /// Context and row log-sum-exp of every query over its window and the global keys.
    ///
    /// Query `i` sees band key `j` when `i - window <= j <= i + window` (`j <= i` as well when
    /// `causal`) and `key_ok[row, j] > 0.5`, and global slot `s` when `global_ok[row, s] > 0.5`.
    /// A query that sees no key gets a zero context and a log-sum-exp of 0.
    ///
    /// With `dropout > 0`, each probability is dropped with that probability (kept ones scaled
    /// by `1 / (1 - dropout)`) before the values are weighted: band probabilities by a hash of
    /// `seed[0]` and their position (the backward pass recomputes it), global ones as the
    /// trait's documentation says (key `seed[1]`, `slot_chunks` runs of slots per batch row).
    /// The log-sum-exp is that of the probabilities before dropout. With `dropout == 0`, `seed`
    /// is not read.
    ///
    /// # Shapes
    /// - q (already scaled), k, v: `[rows, heads, m, d]`
    /// - global_k, global_v: `[rows, heads, g, d]`
    /// - key_ok: `[rows, m]`, global_ok: `[rows, g]` (1.0 or 0.0); seed: `[2]`
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
        seed: IntTensor<Self>,
        dropout: f64,
        window: usize,
        causal: bool,
        slot_chunks: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// Gradients of the band part of [`local_attention_forward`](Self::local_attention_forward)
    /// with respect to `q`, `k` and `v`, given the output gradient `grad`, the forward pass's
    /// log-sum-exp `lse` and `delta = sum(grad * context, -1)`, with the forward pass's `seed`
    /// and `dropout`. The global keys' share is
    /// [`local_attention_global_backward`](Self::local_attention_global_backward)'s.
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

    /// The global slots' share of the gradients of
    /// [`local_attention_forward`](Self::local_attention_forward): `dq` (the band's, `dq_band`,
    /// plus the slots' share), and the gradients of `global_k` and `global_v`. Every query sees
    /// every filled slot with probability `p = exp(q·kg - lse)`; with `dp = (grad · vg) · keep`
    /// (`keep` the slots' dropout factors from `seed[1]` and `slot_chunks` as in the forward
    /// pass, 1 without dropout) and `ds = p · (dp - delta)`: `dq = dq_band + ds · kg`,
    /// `dkg = dsᵀ · q`, `dvg = (p · keep)ᵀ · grad`.
    ///
    /// The default body is Burn ops on `[m, g]` products, with the mask from
    /// [`DropoutMaskOps::dropout_keep_scale`] (the CPU backends use it); the CubeCL backend has
    /// two kernels, where the products' operands (token-major head views) would be copied before
    /// each product.
    ///
    /// # Shapes
    /// - q, grad, dq_band: `[rows, heads, m, d]`
    /// - global_k, global_v: `[rows, heads, g, d]`; global_ok: `[rows, g]`; seed: `[2]`
    /// - lse, delta: `[rows, heads, m]`
    /// - output: `(dq [rows, heads, m, d], dkg [rows, heads, g, d], dvg [rows, heads, g, d])`
    #[allow(clippy::too_many_arguments)]
    #[fusion(meta = fusion_outputs::global_backward)]
    fn local_attention_global_backward(
        q: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        global_k: FloatTensor<Self>,
        global_v: FloatTensor<Self>,
        global_ok: FloatTensor<Self>,
        seed: IntTensor<Self>,
        lse: FloatTensor<Self>,
        delta: FloatTensor<Self>,
        dq_band: FloatTensor<Self>,
        dropout: f64,
        slot_chunks: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [rows, heads, m, _] = q.shape().dims::<4>();
        let g = global_k.shape().dims::<4>()[2];
        let lse = Self::float_reshape(lse, Shape::new([rows, heads, m, 1]));
        let delta = Self::float_reshape(delta, Shape::new([rows, heads, m, 1]));
        let scores = Self::float_matmul(q.clone(), Self::float_swap_dims(global_k.clone(), 2, 3));
        // Clamped so that empty slots (scores never in the sum) cannot overflow before the mask.
        let probs = Self::float_mul(
            Self::float_exp(Self::float_clamp_max(
                Self::float_sub(scores, lse),
                0.0.into(),
            )),
            Self::float_reshape(global_ok, Shape::new([rows, 1, 1, g])),
        );
        // Dropout: the context weighs the values by probs · keep, so keep scales both the
        // values' gradient and the probabilities' gradient.
        let keep = (dropout > 0.0)
            .then(|| slot_keep::<Self>(seed, [rows, heads, m, g], dropout, slot_chunks));
        let kept = match &keep {
            Some(keep) => Self::float_mul(probs.clone(), keep.clone()),
            None => probs.clone(),
        };
        let d_global_v = Self::float_matmul(Self::float_swap_dims(kept, 2, 3), grad.clone());
        let mut dp = Self::float_matmul(grad, Self::float_swap_dims(global_v, 2, 3));
        if let Some(keep) = keep {
            dp = Self::float_mul(dp, keep);
        }
        let ds = Self::float_mul(probs, Self::float_sub(dp, delta));
        let d_global_k = Self::float_matmul(Self::float_swap_dims(ds.clone(), 2, 3), q);
        let dq = Self::float_add(dq_band, Self::float_matmul(ds, global_k));
        (dq, d_global_k, d_global_v)
    }

    /// Attention of the global rows: each of `g` queries (the global tokens' own projections)
    /// over every key of its batch row, with the keys split into `chunks` runs of `c` (`rows ·
    /// chunks` key rows, the chunks of row `r` being `r · chunks ..`). Key `j` of a chunk is
    /// seen when `key_ok > 0.5`; a query that sees no key gets a zero context and a log-sum-exp
    /// of 0. Dropout as the global slots' of
    /// [`local_attention_forward`](Self::local_attention_forward) with `slot_chunks = chunks`:
    /// the factors of [`keep_scale`](crate::dropout::keep_scale)'s `[rows, heads, g, chunks ·
    /// c]` mask for the key `seed[1]` (`seed[0]` is not read).
    ///
    /// The default body (every backend's) is
    /// [`local_attention_forward`](Self::local_attention_forward) with the queries as its rows,
    /// each chunk's keys as its global slots and no band, once per chunk side by side
    /// (flash-decoding: `rows · chunks · heads` independent walks over `c` keys, where a single
    /// chunk would leave a GPU with `rows · heads` walks over all of them), then the chunks'
    /// contexts weighed by their share of the softmax. Autodiff recomputes the probabilities
    /// in [`global_rows_backward`](Self::global_rows_backward).
    ///
    /// # Shapes
    /// - q (already scaled): `[rows, heads, g, d]`
    /// - k, v: `[rows · chunks, heads, c, d]`; key_ok: `[rows · chunks, c]`; seed: `[2]`
    /// - output: context `[rows, heads, g, d]`, log-sum-exp `[rows, heads, g]`
    #[allow(clippy::too_many_arguments)]
    #[fusion(default)]
    fn global_rows_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        key_ok: FloatTensor<Self>,
        seed: IntTensor<Self>,
        dropout: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        super::global_rows::forward::<Self>(q, k, v, key_ok, seed, dropout)
    }

    /// The chunks' results of [`global_rows_forward`](Self::global_rows_forward) weighed into
    /// the whole row's: each chunk's softmax is normalized over its own keys, and its share of
    /// the row's is `exp(lse_chunk - lse_row)` with `lse_row = log Σ exp(lse_chunk)` over the
    /// chunks that see a key (`seen > 0.5`; a chunk that sees none has a zero context and a
    /// log-sum-exp of 0, and counts for nothing). `rows` batch rows of `chunks` chunks each; a
    /// row none of whose chunks sees a key gets a zero context and log-sum-exp.
    ///
    /// The default body is Burn ops (about ten launches on a GPU); the CubeCL backend has one
    /// kernel.
    ///
    /// # Shapes
    /// - context: `[rows · chunks, heads, g, d]`; lse: `[rows · chunks, heads, g]`
    /// - seen: `[rows, chunks]`
    /// - output: context `[rows, heads, g, d]`, log-sum-exp `[rows, heads, g]`
    #[fusion(meta = fusion_outputs::combine)]
    fn global_rows_combine(
        context: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        seen: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let [_, heads, g, d] = context.shape().dims::<4>();
        let [rows, chunks] = seen.shape().dims::<2>();
        // 1 for rows where some chunk sees a key, else 0 (their results are zeroed).
        let row_seen = Self::float_reshape(
            Self::float_max_dim(seen.clone(), 1),
            Shape::new([rows, 1, 1]),
        );
        // `lse` where the chunk sees a key, NO_KEYS where it sees none (its lse is 0 then).
        let seen = Self::float_reshape(seen, Shape::new([rows, chunks, 1, 1]));
        let lse = Self::float_add(
            Self::float_reshape(lse, Shape::new([rows, chunks, heads, g])),
            Self::float_mul_scalar(
                Self::float_add_scalar(seen, (-1.0f32).into()),
                (-NO_KEYS).into(),
            ),
        );
        let top = Self::float_max_dim(lse.clone(), 1);
        let weights = Self::float_exp(Self::float_sub(lse, top.clone()));
        let total = Self::float_sum_dim(weights.clone(), 1);
        let share = Self::float_reshape(
            Self::float_div(weights, total.clone()),
            Shape::new([rows, chunks, heads, g, 1]),
        );
        let context = Self::float_reshape(context, Shape::new([rows, chunks, heads, g, d]));
        let context = Self::float_reshape(
            Self::float_sum_dim(Self::float_mul(context, share), 1),
            Shape::new([rows, heads, g, d]),
        );
        let context = Self::float_mul(
            context,
            Self::float_reshape(row_seen.clone(), Shape::new([rows, 1, 1, 1])),
        );
        let lse = Self::float_reshape(
            Self::float_add(top, Self::float_log(total)),
            Shape::new([rows, heads, g]),
        );
        (context, Self::float_mul(lse, row_seen))
    }

    /// Gradients of [`global_rows_forward`](Self::global_rows_forward) with respect to `q`, `k`
    /// and `v`, given the output gradient `grad`, its log-sum-exp `lse` and `delta =
    /// sum(grad * context, -1)`: [`local_attention_global_backward`](
    /// Self::local_attention_global_backward) on every chunk with the whole row's `lse` and
    /// `delta` (so each chunk's probabilities are its share of the whole softmax), the chunks'
    /// `dq` added up.
    ///
    /// # Shapes
    /// As [`global_rows_forward`](Self::global_rows_forward); lse, delta: `[rows, heads, g]`,
    /// grad: `[rows, heads, g, d]`; output: `(dq, dk, dv)` shaped as `q`, `k`, `v`.
    #[allow(clippy::too_many_arguments)]
    #[fusion(default)]
    fn global_rows_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        key_ok: FloatTensor<Self>,
        seed: IntTensor<Self>,
        lse: FloatTensor<Self>,
        delta: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        dropout: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        super::global_rows::backward::<Self>(q, k, v, key_ok, seed, lse, delta, grad, dropout)
    }
}

/// The global slots' dropout factors `[rows, heads, m, g]` for dropout probability `dropout`
/// and `chunks` runs of slots per batch row (see [`LocalAttentionOps`]): [`keep_scale`]'s
/// `[rows / chunks · heads · m, chunks · g]` mask for the key `seed[1]`, each row's chunks
/// moved to rows of their own.
///
/// [`keep_scale`]: crate::dropout::keep_scale
fn slot_keep<B: LocalAttentionOps>(
    seed: IntTensor<B>,
    [rows, heads, m, g]: [usize; 4],
    dropout: f64,
    chunks: usize,
) -> FloatTensor<B> {
    let key = B::int_slice(seed, &[(1..2).into()]);
    let (threshold, scale) = keep_threshold_and_scale(1.0 - dropout);
    let batch = rows / chunks;
    let mask = B::dropout_keep_scale(
        key,
        batch * heads * m,
        chunks * g,
        threshold as usize,
        scale,
    );
    if chunks == 1 {
        return B::float_reshape(mask, Shape::new([rows, heads, m, g]));
    }
    let mask = B::float_reshape(mask, Shape::new([batch, heads, m, chunks, g]));
    B::float_reshape(
        B::float_permute(mask, &[0, 3, 1, 2, 4]),
        Shape::new([rows, heads, m, g]),
    )
}

/// Panics, naming `op`, unless `slot_chunks` runs of slots divide the `rows`.
#[cfg_attr(
    not(any(
        feature = "flex",
        feature = "ndarray",
        feature = "wgpu",
        feature = "vulkan"
    )),
    allow(dead_code)
)]
pub(super) fn expect_slot_chunks(op: &str, rows: usize, slot_chunks: usize) {
    assert!(
        slot_chunks > 0 && rows.is_multiple_of(slot_chunks),
        "{op}: {rows} rows are not batch rows of {slot_chunks} runs of global slots"
    );
}

/// The log-sum-exp [`LocalAttentionOps::global_rows_combine`] gives a chunk that sees no key:
/// its share of the softmax is then `exp(-1e30 - lse) = 0` next to any chunk that sees one.
const NO_KEYS: f32 = -1.0e30;

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
        _seed: &TensorSpec,
        _dropout: &f64,
        _window: &usize,
        _causal: &bool,
        _slot_chunks: &usize,
    ) -> (TensorSpec, TensorSpec) {
        let [rows, heads, m, _] = q.shape.dims::<4>();
        (q.clone(), TensorSpec::new([rows, heads, m].into(), q.dtype))
    }

    /// [`super::LocalAttentionOps::global_rows_combine`]: the context and log-sum-exp of
    /// `seen`'s rows.
    pub(super) fn combine(
        context: &TensorSpec,
        _lse: &TensorSpec,
        seen: &TensorSpec,
    ) -> (TensorSpec, TensorSpec) {
        let [_, heads, g, d] = context.shape.dims::<4>();
        let rows = seen.shape.dims::<2>()[0];
        (
            TensorSpec::new([rows, heads, g, d].into(), context.dtype),
            TensorSpec::new([rows, heads, g].into(), context.dtype),
        )
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

    /// [`super::LocalAttentionOps::local_attention_global_backward`]: `dq` like `q`, the slots'
    /// gradients like `global_k` and `global_v`.
    pub(super) fn global_backward(
        q: &TensorSpec,
        _grad: &TensorSpec,
        global_k: &TensorSpec,
        global_v: &TensorSpec,
        _global_ok: &TensorSpec,
        _seed: &TensorSpec,
        _lse: &TensorSpec,
        _delta: &TensorSpec,
        _dq_band: &TensorSpec,
        _dropout: &f64,
        _slot_chunks: &usize,
    ) -> (TensorSpec, TensorSpec, TensorSpec) {
        (q.clone(), global_k.clone(), global_v.clone())
    }
}
