//! The rows of global tokens: each attends to every real token of its row with its own
//! projections (`query_global`, `key_global`, `value_global`), and its output replaces the local one.

use burn::nn::{Dropout, Linear};
use burn::tensor::activation::softmax;
use burn::tensor::{DType, Tensor};

use crate::dropout::{DropoutSeed, active_dropout, seeded_dropout};
use crate::linear::linear;
use crate::precision::to_f32;

use super::MASKED_SCORE;
use super::fused::{LocalAttentionKernel, fused_available, fused_global_rows};
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

/// How the global rows meet the keys and values of every token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalKeys {
    /// In an f32 model, [`Folded`](Self::Folded) where it takes at most half the multiply-adds
    /// ([`GlobalKeys::choose`]); in a half-precision model, [`Projected`](Self::Projected),
    /// whose projections run in the half type (a GPU's fast matrix units) where the folded
    /// products would run in f32.
    Auto,
    /// As HF: `key_global` and `value_global` project every token (`2 · seq · d²`), and the
    /// global queries meet the projected keys and values.
    Projected,
    /// The projections folded into the global side: each head's query goes through the
    /// transposed key projection and meets the hidden states themselves, and the
    /// probability-weighted hidden states go through the value projection
    /// (`scores = (q Wkᵀ) · hᵀ + q · bk`, `context = (p · h) Wv + (Σp) bv`, the same numbers up
    /// to rounding): `2 · heads · n_global · seq · d` multiply-adds, far fewer when a row has
    /// few global tokens (one `<s>` for classification: 63 × fewer at longformer-base's shape
    /// and n = 4096).
    Folded,
}

impl GlobalKeys {
    /// The way for `n_global` global rows over `seq` tokens of width `d` in `heads` heads, of
    /// a model whose hidden states are `half` precision or not: for [`Auto`](Self::Auto) in
    /// f32, [`Folded`](Self::Folded) when its `heads · n_global · seq · d + n_global · d²`
    /// multiply-adds are under half the projected path's `seq · d² + n_global · seq · d`
    /// (longformer-base: up to 32 global tokens). Near the break-even the projected path is
    /// kept: the folded products have `heads · n_global` rows and a `seq`-long inner dimension,
    /// a shape that fills a GPU less well than the projections' `seq` rows.
    pub fn choose(self, seq: usize, d: usize, heads: usize, n_global: usize, half: bool) -> Self {
        match self {
            Self::Auto if half => Self::Projected,
            Self::Auto => {
                let folded = heads * n_global * seq * d + n_global * d * d;
                let projected = seq * d * d + n_global * seq * d;
                if 2 * folded < projected {
                    Self::Folded
                } else {
                    Self::Projected
                }
            }
            chosen => chosen,
        }
    }
}

/// How the global rows are computed: which [`GlobalKeys`], and whether by the fused op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlobalRowsPath {
    /// How the rows meet every token's keys and values.
    pub keys: GlobalKeys,
    /// Where the fused op may run: with [`GlobalKeys::Projected`] keys, unless
    /// [`LocalAttentionKernel::Reference`], probabilities are requested or the device has no
    /// fused op (then Burn ops: scores, softmax, dropout and the weighted sum).
    pub kernel: LocalAttentionKernel,
    /// Whether the probabilities are wanted (only Burn ops make them).
    pub with_probs: bool,
}

/// Attention of the global rows over the whole sequence.
///
/// Returns the context of every slot and, unless the fused op computed it (never when
/// `path.with_probs`), the probabilities. `seed` seeds the dropout of the probabilities (the
/// same mask on either path). `path` picks how the rows meet every token's keys and values
/// (the same result every way, up to rounding).
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
    path: GlobalRowsPath,
) -> (Tensor<3>, Option<Tensor<4>>) {
    let [b, l, d] = hidden.dims();
    let g = slots.slot_rows.dims()[0] / b;
    let scale = 1.0 / ((d / n_heads) as f64).sqrt();
    let global_tokens = hidden
        .clone()
        .reshape([b * l, d])
        .select(0, slots.slot_rows.clone());
    // In f32 whatever the parameters' dtype, as the local part (see [`crate::precision`]).
    let q = split_heads(
        to_f32(proj.query.forward(global_tokens.reshape([b, g, d]))) * scale,
        n_heads,
    );
    let half = hidden.dtype() != DType::F32;
    let device = hidden.device();
    let keys = path.keys.choose(l, d, n_heads, g, half);
    let fused = keys != GlobalKeys::Folded
        && path.kernel != LocalAttentionKernel::Reference
        && !path.with_probs
        && fused_available(&device);
    let (scores, values) = match keys {
        GlobalKeys::Folded => (
            folded_scores(q, to_f32(hidden.clone()), proj.key),
            Values::Folded(to_f32(hidden)),
        ),
        _ => {
            let k = to_f32(linear(proj.key, hidden.clone()));
            let v = to_f32(linear(proj.value, hidden));
            if fused {
                let context = fused_global_rows(
                    q,
                    k,
                    v,
                    slots.real_keys.clone(),
                    active_dropout(proj.dropout, &device),
                    seed,
                );
                return (merge_heads(context), None);
            }
            let (k, v) = (split_heads(k, n_heads), split_heads(v, n_heads));
            (q.matmul(k.swap_dims(2, 3)), Values::Projected(v))
        }
    };
    let mask = slots.row_mask.clone().expand(scores.dims());
    let probs = softmax(scores.mask_fill(mask, MASKED_SCORE), 3);
    let dropped = seeded_dropout(proj.dropout, probs.clone(), seed);
    let context = match values {
        Values::Projected(v) => dropped.matmul(v),
        Values::Folded(hidden) => folded_context(dropped, hidden, proj.value),
    };
    (merge_heads(context), Some(probs))
}

/// What the probabilities weigh: the projected values `[batch_size, n_heads, seq_length,
/// d_head]`, or the hidden states `[batch_size, seq_length, d_model]` (f32) for
/// [`folded_context`].
enum Values {
    Projected(Tensor<4>),
    Folded(Tensor<3>),
}

/// `linear`'s weight `[d_model, d_model]` split by output head: `[n_heads, d_model, d_head]`, in
/// f32.
fn weight_by_head(linear: &Linear, n_heads: usize) -> Tensor<3> {
    let weight = to_f32(linear.weight.val());
    let [d_in, d_out] = weight.dims();
    weight
        .reshape([d_in, n_heads, d_out / n_heads])
        .swap_dims(0, 1)
}

/// `q · kᵀ` with `k = key(hidden)` split by heads, without projecting the keys:
/// `(q Wk_hᵀ) · hiddenᵀ + q · bk_h` per head `h`.
///
/// # Shapes
/// - q: `[batch_size, n_heads, n_global, d_head]` (f32)
/// - hidden: `[batch_size, seq_length, d_model]` (f32)
/// - output: `[batch_size, n_heads, n_global, seq_length]`
fn folded_scores(q: Tensor<4>, hidden: Tensor<3>, key: &Linear) -> Tensor<4> {
    let [b, h, g, dh] = q.dims();
    let [_, l, d] = hidden.dims();
    // [h, b·g, dh] x [h, dh, d]: each head's queries in the hidden states' space.
    let by_head = q.clone().swap_dims(0, 1).reshape([h, b * g, dh]);
    let lifted = by_head.matmul(weight_by_head(key, h).swap_dims(1, 2));
    let lifted = lifted
        .reshape([h, b, g, d])
        .swap_dims(0, 1)
        .reshape([b, h * g, d]);
    let scores = lifted.matmul(hidden.swap_dims(1, 2)).reshape([b, h, g, l]);
    match &key.bias {
        // The bias adds `q · bk_h` to a whole row of scores, which the softmax does not see; it
        // is kept so that the bias takes the gradient HF's does (zero up to rounding).
        Some(bias) => {
            let bias = to_f32(bias.val()).reshape([1, h, 1, dh]);
            scores + (q * bias).sum_dim(3)
        }
        None => scores,
    }
}

/// `probs · v` with `v = value(hidden)` split by heads, without projecting the values:
/// `(probs · hidden) Wv_h + (Σ probs) bv_h` per head `h`.
///
/// # Shapes
/// - probs: `[batch_size, n_heads, n_global, seq_length]` (after dropout)
/// - hidden: `[batch_size, seq_length, d_model]` (f32)
/// - output: `[batch_size, n_heads, n_global, d_head]`
fn folded_context(probs: Tensor<4>, hidden: Tensor<3>, value: &Linear) -> Tensor<4> {
    let [b, h, g, l] = probs.dims();
    let d = hidden.dims()[2];
    let weighed = probs.clone().reshape([b, h * g, l]).matmul(hidden);
    // [h, b·g, d] x [h, d, dh].
    let by_head = weighed
        .reshape([b, h, g, d])
        .swap_dims(0, 1)
        .reshape([h, b * g, d]);
    let weight = weight_by_head(value, h);
    let dh = weight.dims()[2];
    let context = by_head
        .matmul(weight)
        .reshape([h, b, g, dh])
        .swap_dims(0, 1);
    match &value.bias {
        Some(bias) => {
            let bias = to_f32(bias.val()).reshape([1, h, 1, dh]);
            context + probs.sum_dim(3) * bias
        }
        None => context,
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Param;
    use burn::nn::{DropoutConfig, LinearConfig};
    use burn::tensor::{Device, Distribution, Gradients, TensorData};

    use super::*;
    use crate::attention::masks::AttentionMasks;
    use crate::input::AttentionLayout;
    use crate::test_devices::devices;

    /// Two rows of 11 tokens, the second with 3 padding tokens; 3 global tokens in the first
    /// row, 1 in the second (whose two other slots are empty), one of them on padding.
    fn slots(device: &Device) -> GlobalSlots {
        let (b, l) = (2, 11);
        let is_real: Vec<bool> = (0..b * l).map(|i| i < l || i % l < 8).collect();
        let is_global: Vec<bool> = (0..b * l).map(|i| [0, 4, 10, l + 2].contains(&i)).collect();
        let layout = AttentionLayout::new(b, l, is_real, is_global);
        AttentionMasks::new(layout, device)
            .global
            .expect("global tokens")
    }

    fn linear(d: usize, bias: bool, device: &Device) -> Linear {
        let mut linear = LinearConfig::new(d, d).with_bias(bias).init(device);
        linear.weight = Param::from_tensor(Tensor::random(
            [d, d],
            Distribution::Normal(0.0, 0.3),
            device,
        ));
        linear
    }

    /// The folded path and the fused op give the projected path's context, probabilities (the
    /// folded path) and gradients (of the hidden states and of every projection weight and
    /// bias), with dropout, padding, empty slots and with or without biases, on every backend.
    #[test]
    fn folded_projections_and_the_fused_op_give_the_projected_results() {
        let (d, heads) = (12, 3);
        for device in devices() {
            let device = device.autodiff();
            for bias in [true, false] {
                let [query, key, value] = [0, 1, 2].map(|_| linear(d, bias, &device));
                let dropout = DropoutConfig::new(0.25).init();
                let hidden =
                    Tensor::<3>::random([2, 11, d], Distribution::Default, &device).require_grad();
                // A loss that weighs every context element of a filled slot differently (the
                // output of an empty slot is never used; each path leaves its own there):
                // [2 rows, 3 slots, d].
                let filled = Tensor::<3>::from_data(
                    TensorData::new(vec![1.0f32, 1.0, 1.0, 1.0, 0.0, 0.0], [2, 3, 1]),
                    &device,
                );
                let weights =
                    Tensor::<3>::random([2, 3, d], Distribution::Default, &device) * filled.clone();
                let run = |keys: GlobalKeys, kernel: LocalAttentionKernel| {
                    let proj = GlobalProjections {
                        query: &query,
                        key: &key,
                        value: &value,
                        dropout: &dropout,
                    };
                    let seed = DropoutSeed::new(3);
                    let path = GlobalRowsPath {
                        keys,
                        kernel,
                        with_probs: false,
                    };
                    let (context, probs) =
                        global_rows(hidden.clone(), proj, &slots(&device), heads, seed, path);
                    let grads = (context.clone() * weights.clone()).sum().backward();
                    (context, probs, grads)
                };
                let (a, pa, ga) = run(GlobalKeys::Projected, LocalAttentionKernel::Reference);
                let (b, pb, gb) = run(GlobalKeys::Folded, LocalAttentionKernel::Auto);
                let (c, pc, gc) = run(GlobalKeys::Projected, LocalAttentionKernel::Auto);
                assert!(pc.is_none(), "{device:?}: the fused op made probabilities");
                let (pa, pb) = (pa.expect("probabilities"), pb.expect("probabilities"));
                let close = |what: &str, x: Tensor<3>, y: Tensor<3>| {
                    let apart = (x.clone() - y).abs().max().into_scalar::<f32>();
                    let size = x.abs().max().into_scalar::<f32>();
                    assert!(size > 0.0, "{what}: all zero");
                    assert!(
                        apart <= 1e-5 * size.max(1.0),
                        "{device:?}, bias {bias}: {what} {apart} apart (largest {size})"
                    );
                };
                let filled = filled.clone().inner();
                let [bb, h, g, l] = pa.dims();
                close(
                    "folded probabilities",
                    pa.inner().reshape([bb * h, g, l]),
                    pb.inner().reshape([bb * h, g, l]),
                );
                let grad = |grads: &Gradients, x: &Tensor<2>| {
                    x.grad(grads).expect("a gradient").unsqueeze::<3>()
                };
                for (way, other, grads) in [("folded", b, &gb), ("fused", c, &gc)] {
                    close(
                        &format!("{way} context"),
                        a.clone().inner() * filled.clone(),
                        other.inner() * filled.clone(),
                    );
                    close(
                        &format!("{way} hidden gradient"),
                        hidden.grad(&ga).unwrap(),
                        hidden.grad(grads).unwrap(),
                    );
                    for (name, linear) in [("query", &query), ("key", &key), ("value", &value)] {
                        let weight = linear.weight.val();
                        close(
                            &format!("{way} {name} weight gradient"),
                            grad(&ga, &weight),
                            grad(grads, &weight),
                        );
                        if let Some(b) = &linear.bias {
                            let b = b.val();
                            let (x, y) = (b.grad(&ga).unwrap(), b.grad(grads).unwrap());
                            // The key bias shifts whole rows of scores: its gradient is zero up
                            // to rounding every way.
                            let apart = (x.clone() - y).abs().max().into_scalar::<f32>();
                            let size = x.abs().max().into_scalar::<f32>();
                            assert!(
                                apart <= 1e-5 * size.max(1.0),
                                "{device:?}: {way} {name} bias gradients {apart} apart \
                                 (largest {size})"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn auto_folds_in_f32_when_it_takes_half_the_multiply_adds() {
        let base = |g: usize, half: bool| GlobalKeys::Auto.choose(4096, 768, 12, g, half);
        assert_eq!(base(1, false), GlobalKeys::Folded);
        assert_eq!(base(32, false), GlobalKeys::Folded);
        assert_eq!(base(33, false), GlobalKeys::Projected);
        assert_eq!(base(1, true), GlobalKeys::Projected);
        assert_eq!(
            GlobalKeys::Folded.choose(4096, 768, 12, 500, true),
            GlobalKeys::Folded
        );
    }
}
