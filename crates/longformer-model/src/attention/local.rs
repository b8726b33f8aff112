//! The local part of one layer's attention for a group of heads with one window pattern: band
//! scores (plus the scores of global keys), softmax, and the weighted values. Dilated windows run
//! as plain windows over interleaved sub-sequences (see [`super::pattern`]).

use burn::nn::Dropout;
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

use super::MASKED_SCORE;
use super::band::{band_scores, band_to_diagonals, key_span, pad_rows, query_blocks, span_blocks};
use super::masks::{BandMask, padded_length};

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
/// # Shapes
/// - heads.q, heads.k, heads.v: `[batch_size, n_group_heads, seq_length, d_head]`
/// - heads.global: `[batch_size, n_group_heads, n_global, d_head]` (keys, values)
/// - output.0: `[batch_size, n_group_heads, seq_length, d_head]`
/// - output.1: `[batch_size, n_group_heads, seq_length, n_global + 2 * window + 1]`
///
/// `band_mask` is [`AttentionMasks::band`](super::AttentionMasks::band) of the same window,
/// dilation and direction as `pattern`.
///
/// # Panics
/// If `band_mask` was built for another dilation or sequence length.
pub fn local_attention(
    heads: LocalHeads,
    band_mask: &BandMask,
    pattern: BandPattern,
    dropout: &Dropout,
    with_probs: bool,
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
    let [rows, _, m, _] = heads.q.dims();
    let lp = padded_length(m, w);
    let nb = lp / w;
    assert_eq!(
        [band_mask.masked.dims()[0], band_mask.masked.dims()[2]],
        [rows, nb],
        "the band mask belongs to another pattern or length"
    );

    // Scores: global keys first (as HF), then the band.
    let q = pad_rows(heads.q, lp);
    let span = span_blocks(causal) * w;
    let k_span = key_span(pad_rows(heads.k, lp), w, causal);
    let band = band_scores(query_blocks(q.clone(), w), k_span);
    let (scores, global_values, g) = match heads.global {
        Some((kg, vg)) => {
            let g = kg.dims()[2];
            let s = q.matmul(kg.swap_dims(2, 3)).reshape([rows, hg, nb, w, g]);
            (Tensor::cat(vec![s, band], 4), Some(vg), g)
        }
        None => (band, None, 0),
    };
    let mask = band_mask.masked.clone().expand(scores.dims());
    let probs = softmax(scores.mask_fill(mask, MASKED_SCORE), 4);
    let dropped = dropout.forward(probs.clone());

    let band_probs = dropped.clone().narrow(4, g, span);
    let v_span = key_span(pad_rows(heads.v, lp), w, causal);
    let mut context = band_probs.matmul(v_span).reshape([rows, hg, lp, dh]);
    if let Some(vg) = global_values {
        let p = dropped.narrow(4, 0, g).reshape([rows, hg, lp, g]);
        context = context + p.matmul(vg);
    }
    let context = context.narrow(2, 0, m);

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
        full.narrow(2, 0, m)
    });
    if dilation == 1 {
        (context, probs)
    } else {
        (
            deinterleave(context, dilation, b, l),
            probs.map(|p| deinterleave(p, dilation, b, l)),
        )
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
