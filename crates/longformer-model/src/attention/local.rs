//! The local part of one layer's attention for a group of heads with one window pattern: band
//! scores (plus the scores of global keys), softmax, and the weighted values. Dilated windows run
//! as plain windows over interleaved sub-sequences (see [`super::pattern`]).

use burn::nn::Dropout;
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use super::MASKED_SCORE;
use super::band::{
    band_scores, band_to_diagonals, key_span_with_globals, pad_rows, query_blocks, span_blocks,
};
use super::fused::{LocalAttentionKernel, fused_available, fused_dtype, fused_local_attention};
use super::masks::{AttentionMasks, padded_length};
use crate::dropout::{DropoutSeed, active_dropout, seeded_dropout};

/// The window of a group of heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BandPattern {
    /// One-sided window `w`.
    pub window: usize,
    /// Dilation `d >= 1`.
    pub dilation: usize,
    /// Causal window.
    pub causal: bool,
}

/// Local attention (band + global keys) of a group of heads that share one window pattern:
/// the attention core, without projections.
///
/// Every query block is scored against one span holding the global keys and then its band
/// ([`key_span_with_globals`]), so global and band scores come from one product, already in HF's
/// column order. Without autodiff and without probabilities requested (inference), the span goes
/// through Burn's fused `attention` op (a flash-style kernel on flex); otherwise the softmax is
/// written out, with dropout, so autodiff differentiates it. That is the band path; `kernel`
/// says when the fused op of [`super::fused`] runs instead (by default on every backend that
/// has it, for f32; never when probabilities are requested). `seed` is this group's dropout
/// seed: both paths take their masks from it (each its own way).
///
/// # Shapes
/// - heads.q, heads.k, heads.v: `[batch_size, n_group_heads, seq_length, d_head]`
/// - heads.global: `[batch_size, n_group_heads, n_global, d_head]` (keys, values)
/// - output.0: `[batch_size, n_group_heads, seq_length, d_head]`
/// - output.1: `[batch_size, n_group_heads, seq_length, n_global + 2 * window + 1]`
pub fn local_attention(
    heads: LocalHeads,
    masks: &AttentionMasks,
    pattern: BandPattern,
    dropout: &Dropout,
    seed: DropoutSeed,
    with_probs: bool,
    kernel: LocalAttentionKernel,
) -> (Tensor<4>, Option<Tensor<4>>) {
    let [b, hg, l, dh] = heads.q.dims();
    let BandPattern {
        window: w,
        dilation,
        causal,
    } = pattern;
    // Sub-sequences as batch rows: a dilated window is a plain one over each.
    let heads = if dilation == 1 {
        heads
    } else {
        LocalHeads {
            q: interleave(heads.q, dilation),
            k: interleave(heads.k, dilation),
            v: interleave(heads.v, dilation),
            global: heads
                .global
                .map(|(kg, vg)| (repeat_rows(kg, dilation), repeat_rows(vg, dilation))),
        }
    };
    let device = heads.q.device();
    // The fused op is the faster path on every backend that has it: on GPUs, and on flex and
    // ndarray in training (no kept scores, dropout in place) and inference (flex, base shape,
    // n = 4096: 7.8 s against 9.5 s for the band path through Burn's fused `attention` op).
    let wanted = match kernel {
        LocalAttentionKernel::Reference => false,
        LocalAttentionKernel::Fused | LocalAttentionKernel::Auto => true,
    };
    let fused = wanted && !with_probs && fused_available(&device) && fused_dtype(heads.q.dtype());
    if fused {
        let keys = masks.fused_keys(dilation);
        let context = fused_local_attention(
            heads.q,
            heads.k,
            heads.v,
            heads.global,
            keys.key_ok,
            keys.global_ok,
            w,
            causal,
            active_dropout(dropout, &device),
            seed,
        );
        return (restore_rows(context, dilation, b, l), None);
    }
    let [rows, _, m, _] = heads.q.dims();
    let lp = padded_length(m, w);
    let nb = lp / w;
    let (kg, vg) = heads.global.unzip();
    let g = kg.as_ref().map_or(0, |t| t.dims()[2]);
    let span = span_blocks(causal) * w;
    let cols = g + span;

    let q = query_blocks(pad_rows(heads.q, lp), w);
    let k = key_span_with_globals(pad_rows(heads.k, lp), kg, w, causal);
    let v = key_span_with_globals(pad_rows(heads.v, lp), vg, w, causal);

    if !with_probs && !q.device().is_autodiff() {
        // Blocks as heads: [rows, hg · nb, w | cols, dh], all free reshapes.
        let mask = masks.band_per_head(w, dilation, causal, hg);
        let context = attention(
            q.reshape([rows, hg * nb, w, dh]),
            k.reshape([rows, hg * nb, cols, dh]),
            v.reshape([rows, hg * nb, cols, dh]),
            Some(mask),
            None,
            AttentionModuleOptions {
                scale: Some(1.0), // the queries are scaled already
                softcap: None,
                is_causal: false, // the band mask says it
            },
        )
        .reshape([rows, hg, lp, dh])
        .narrow(2, 0, m);
        return (restore_rows(context, dilation, b, l), None);
    }

    let band_mask = masks.band(w, dilation, causal);
    assert_eq!(
        [band_mask.masked.dims()[0], band_mask.masked.dims()[2]],
        [rows, nb],
        "the band mask belongs to another pattern or length"
    );
    let scores = band_scores(q, k);
    let mask = band_mask.masked.clone().expand(scores.dims());
    let probs = softmax(scores.mask_fill(mask, MASKED_SCORE), 4);
    let context = seeded_dropout(dropout, probs.clone(), seed)
        .matmul(v)
        .reshape([rows, hg, lp, dh])
        .narrow(2, 0, m);

    let probs = with_probs.then(|| {
        let probs = probs * band_mask.real_query.clone();
        let band = band_to_diagonals(probs.clone().narrow(4, g, span));
        let full = if g > 0 {
            Tensor::cat(
                vec![probs.narrow(4, 0, g).reshape([rows, hg, lp, g]), band],
                3,
            )
        } else {
            band
        };
        restore_rows(full.narrow(2, 0, m), dilation, b, l)
    });
    (restore_rows(context, dilation, b, l), probs)
}

/// Sub-sequence rows back to the sequence (nothing to do without dilation).
fn restore_rows(x: Tensor<4>, dilation: usize, batch_size: usize, seq_length: usize) -> Tensor<4> {
    if dilation == 1 {
        x
    } else {
        deinterleave(x, dilation, batch_size, seq_length)
    }
}

/// Queries, keys and values of a group of heads, with the local keys and values of the global
/// tokens (`None` without global tokens).
pub struct LocalHeads {
    /// Queries, already scaled by `1 / sqrt(d_head)`, `[batch_size, n_heads, seq_length, d_head]`.
    pub q: Tensor<4>,
    /// Keys, `[batch_size, n_heads, seq_length, d_head]`.
    pub k: Tensor<4>,
    /// Values, `[batch_size, n_heads, seq_length, d_head]`.
    pub v: Tensor<4>,
    /// Keys and values of the global slots, `[batch_size, n_heads, n_global, d_head]` each.
    pub global: Option<(Tensor<4>, Tensor<4>)>,
}

/// The `dilation` interleaved sub-sequences of every row as rows of their own: position
/// `t · d + r` of row `b` goes to position `t` of row `b · d + r` (zero-padded to a multiple of `d`).
///
/// # Shapes
/// - x: `[batch_size, n_heads, seq_length, e]`
/// - output: `[batch_size * d, n_heads, ceil(seq_length / d), e]`
fn interleave(x: Tensor<4>, d: usize) -> Tensor<4> {
    let [b, h, l, e] = x.dims();
    let m = l.div_ceil(d);
    pad_rows(x, m * d)
        .reshape([b, h, m, d, e])
        .permute([0, 3, 1, 2, 4])
        .reshape([b * d, h, m, e])
}

/// Inverse of [`interleave`], cut back to `seq_length`.
///
/// # Shapes
/// - x: `[batch_size * d, n_heads, m, e]`
/// - output: `[batch_size, n_heads, seq_length, e]`
fn deinterleave(x: Tensor<4>, d: usize, batch_size: usize, seq_length: usize) -> Tensor<4> {
    let [_, h, m, e] = x.dims();
    x.reshape([batch_size, d, h, m, e])
        .permute([0, 2, 3, 1, 4])
        .reshape([batch_size, h, m * d, e])
        .narrow(2, 0, seq_length)
}

/// The same rows for every sub-sequence of a batch row.
///
/// Built with `cat`, not `expand` or `repeat_dim`: on Burn 0.22.1's wgpu backend the gradient of
/// an expanded or repeated tensor that is then transposed into a matmul comes out wrong.
///
/// # Shapes
/// - x: `[batch_size, n_heads, n, e]`
/// - output: `[batch_size * d, n_heads, n, e]`
fn repeat_rows(x: Tensor<4>, d: usize) -> Tensor<4> {
    let [b, h, n, e] = x.dims();
    Tensor::cat(vec![x.unsqueeze_dim::<5>(1); d], 1).reshape([b * d, h, n, e])
}
