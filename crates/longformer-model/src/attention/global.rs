//! The rows of global tokens: each attends to every real token of its row with its own
//! projections (`query_global`, `key_global`, `value_global`), and its output replaces the local one.

use burn::nn::{Dropout, Linear};
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

use crate::dropout::{DropoutSeed, seeded_dropout};
use crate::precision::to_f32;

use super::MASKED_SCORE;
use super::masks::GlobalSlots;

/// Splits `[batch_size, rows, d_model]` into heads: `[batch_size, n_heads, rows, d_head]`.
pub fn split_heads(x: Tensor<3>, n_heads: usize) -> Tensor<4> {
    let [b, n, d] = x.dims();
    x.reshape([b, n, n_heads, d / n_heads]).swap_dims(1, 2)
}

/// Inverse of [`split_heads`].
pub fn merge_heads(x: Tensor<4>) -> Tensor<3> {
    let [b, h, n, dh] = x.dims();
    x.swap_dims(1, 2).reshape([b, n, h * dh])
}

/// The global projections of one layer.
pub struct GlobalProjections<'a> {
    /// `query_global`.
    pub query: &'a Linear,
    /// `key_global`.
    pub key: &'a Linear,
    /// `value_global`.
    pub value: &'a Linear,
    /// Attention dropout.
    pub dropout: &'a Dropout,
}

/// Attention of the global rows over the whole sequence.
///
/// Returns the context of every slot and the probabilities. `seed` seeds the dropout of the
/// probabilities.
///
/// # Shapes
/// - hidden: `[batch_size, seq_length, d_model]`
/// - output.0: `[batch_size, n_global, d_model]`
/// - output.1: `[batch_size, n_heads, n_global, seq_length]`
pub fn global_rows(
    hidden: Tensor<3>,
    proj: GlobalProjections<'_>,
    slots: &GlobalSlots,
    n_heads: usize,
    seed: DropoutSeed,
) -> (Tensor<3>, Tensor<4>) {
    let [b, l, d] = hidden.dims();
    let g = slots.slot_rows.dims()[0] / b;
    let scale = 1.0 / ((d / n_heads) as f64).sqrt();
    let global_tokens = hidden
        .clone()
        .reshape([b * l, d])
        .select(0, slots.slot_rows.clone());
    // In f32 whatever the parameters' dtype, as the local part (see [`crate::precision`]).
    let q = split_heads(
        to_f32(proj.query.forward(global_tokens.reshape([b, g, d]))),
        n_heads,
    ) * scale;
    let k = split_heads(to_f32(proj.key.forward(hidden.clone())), n_heads);
    let v = split_heads(to_f32(proj.value.forward(hidden)), n_heads);
    let scores = q.matmul(k.swap_dims(2, 3));
    let mask = slots.row_mask.clone().expand(scores.dims());
    let probs = softmax(scores.mask_fill(mask, MASKED_SCORE), 3);
    let context = seeded_dropout(proj.dropout, probs.clone(), seed).matmul(v);
    (merge_heads(context), probs)
}
