//! [`SlidingWindowAttention`]: Longformer's self-attention (HF `LongformerSelfAttention`).
//!
//! Every token attends to the `window` tokens on each side of it (minus padding and global
//! tokens) and to every global token; global tokens attend to every token with separate
//! projections. Scores are scaled on the query, softmax runs in f32, padding rows are zero.
//! Upstream: `transformers/models/longformer/modeling_longformer.py`, `LongformerSelfAttention`.
//!
//! Beyond HF, a [`WindowPattern`] dilates the window per head and can make it causal; with no
//! dilation and both sides (the default) the computation is exactly HF's.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, IndexingUpdateOp, Int, Tensor, TensorData};

use super::MASKED_SCORE;
use super::band::{band_scores, band_to_diagonals, key_span, pad_rows, query_blocks, span_blocks};
use super::global::{GlobalProjections, global_rows, merge_heads, split_heads};
use super::masks::{AttentionMasks, BandMask, padded_length};
use super::pattern::WindowPattern;

/// Configuration of [`SlidingWindowAttention`].
#[derive(Config, Debug)]
pub struct SlidingWindowAttentionConfig {
    /// Width of the hidden states (`d_model`).
    pub d_model: usize,
    /// Number of heads; must divide `d_model`.
    pub n_heads: usize,
    /// Full attention window (HF `attention_window`): even; each side sees half of it.
    pub attention_window: usize,
    /// Dropout on attention probabilities.
    #[config(default = 0.1)]
    pub dropout: f64,
    /// Dilation of each head (`n_heads` entries, each `>= 1`); empty means 1 for every head.
    #[config(default = "Vec::new()")]
    pub head_dilation: Vec<usize>,
    /// Causal window: each token sees itself and the `attention_window / 2` tokens before it.
    #[config(default = false)]
    pub causal: bool,
}

impl SlidingWindowAttentionConfig {
    /// Builds the module with random projections.
    ///
    /// # Panics
    /// If `n_heads` does not divide `d_model`, the window is odd or zero, or `head_dilation` is
    /// neither empty nor `n_heads` positive entries
    /// ([`LongformerConfig::validate`](crate::LongformerConfig::validate) reports these as errors).
    pub fn init(&self, device: &Device) -> SlidingWindowAttention {
        assert!(
            self.n_heads > 0 && self.d_model.is_multiple_of(self.n_heads),
            "n_heads {} must divide d_model {}",
            self.n_heads,
            self.d_model
        );
        assert!(
            self.attention_window > 0 && self.attention_window.is_multiple_of(2),
            "attention_window {} must be even and positive",
            self.attention_window
        );
        let dilation = if self.head_dilation.is_empty() {
            vec![1; self.n_heads]
        } else {
            self.head_dilation.clone()
        };
        assert!(
            dilation.len() == self.n_heads && dilation.iter().all(|d| *d > 0),
            "head_dilation {:?} must hold {} positive entries",
            self.head_dilation,
            self.n_heads
        );
        let linear = || LinearConfig::new(self.d_model, self.d_model).init(device);
        SlidingWindowAttention {
            query: linear(),
            key: linear(),
            value: linear(),
            query_global: linear(),
            key_global: linear(),
            value_global: linear(),
            dropout: DropoutConfig::new(self.dropout).init(),
            n_heads: self.n_heads,
            window: self.attention_window / 2,
            pattern: WindowPattern {
                dilation,
                causal: self.causal,
            },
        }
    }
}

/// Sliding-window + global self-attention of one layer.
#[derive(Module, Debug)]
pub struct SlidingWindowAttention {
    /// Local query projection.
    pub query: Linear,
    /// Local key projection (also used for global keys seen by local queries).
    pub key: Linear,
    /// Local value projection.
    pub value: Linear,
    /// Query projection of global tokens.
    pub query_global: Linear,
    /// Key projection for global rows.
    pub key_global: Linear,
    /// Value projection for global rows.
    pub value_global: Linear,
    /// Dropout on attention probabilities.
    pub dropout: Dropout,
    /// Number of heads.
    pub n_heads: usize,
    /// One-sided window `w`.
    pub window: usize,
    /// Dilation per head and direction of the window.
    #[module(skip)]
    pub pattern: WindowPattern,
}

/// Attention probabilities in HuggingFace's shapes.
#[derive(Debug, Clone)]
pub struct AttentionProbs {
    /// Probabilities of every query over the global keys then its band, `[batch_size, n_heads,
    /// seq_length, n_global + 2 * window + 1]`; column `n_global + c` is key `i + (c - window)·d`
    /// for a head of dilation `d` (causal windows leave the columns after `window` zero).
    /// Rows of global tokens are zero (their output comes from `global`).
    pub local: Tensor<4>,
    /// Probabilities of each global slot over every key, `[batch_size, n_heads, seq_length,
    /// n_global]`; `None` without global tokens. Empty slots hold no meaningful values.
    pub global: Option<Tensor<4>>,
}

impl SlidingWindowAttention {
    /// Attention output before the output projection.
    ///
    /// # Shapes
    /// - hidden: `[batch_size, seq_length, d_model]`
    /// - output: `[batch_size, seq_length, d_model]`
    ///
    /// # Panics
    /// If `hidden` does not match the masks' `[batch_size, seq_length]` or `d_model`.
    pub fn forward(&self, hidden: Tensor<3>, masks: &AttentionMasks) -> Tensor<3> {
        self.forward_with_probs(hidden, masks, false).0
    }

    /// [`forward`](Self::forward), also returning the probabilities when `with_probs` is set.
    pub fn forward_with_probs(
        &self,
        hidden: Tensor<3>,
        masks: &AttentionMasks,
        with_probs: bool,
    ) -> (Tensor<3>, Option<AttentionProbs>) {
        let [b, l, d] = hidden.dims();
        let layout = &masks.layout;
        assert_eq!(
            [b, l],
            [layout.batch_size, layout.seq_length],
            "hidden states and masks disagree on [batch_size, seq_length]"
        );
        let h = self.n_heads;
        let scale = 1.0 / ((d / h) as f64).sqrt();

        let q = split_heads(self.query.forward(hidden.clone()), h) * scale;
        let k_proj = self.key.forward(hidden.clone());
        let v_proj = self.value.forward(hidden.clone());
        // Local queries see global tokens through the local key and value projections.
        let global_kv = masks.global.as_ref().map(|slots| {
            (
                split_heads(gather_slots(k_proj.clone(), &slots.slot_rows), h),
                split_heads(gather_slots(v_proj.clone(), &slots.slot_rows), h),
            )
        });
        let k = split_heads(k_proj, h);
        let v = split_heads(v_proj, h);

        // Heads of one dilation share a band; most models have a single group.
        let groups = self.pattern.head_groups();
        let mut contexts = Vec::with_capacity(groups.len());
        let mut group_probs = Vec::with_capacity(groups.len());
        for (dilation, heads) in &groups {
            let pick = |x: Tensor<4>| {
                if groups.len() == 1 {
                    x
                } else {
                    let idx = Tensor::<1, Int>::from_data(
                        TensorData::new(
                            heads.iter().map(|&i| i as i64).collect::<Vec<_>>(),
                            [heads.len()],
                        ),
                        &x.device(),
                    );
                    x.select(1, idx)
                }
            };
            let band_mask = masks.band(self.window, *dilation, self.pattern.causal);
            let (context, probs) = self.local_heads(
                LocalHeads {
                    q: pick(q.clone()),
                    k: pick(k.clone()),
                    v: pick(v.clone()),
                    global: global_kv.clone().map(|(kg, vg)| (pick(kg), pick(vg))),
                },
                &band_mask,
                *dilation,
                with_probs,
            );
            contexts.push(context);
            group_probs.extend(probs);
        }
        let order: Vec<usize> = groups.iter().flat_map(|(_, heads)| heads.clone()).collect();
        let context = merge_heads(in_head_order(contexts, &order));
        // Padding rows (HF zeroes their probabilities) and global rows (replaced below) keep no
        // local output. Zeroing the context rather than the probabilities saves a pass over the
        // largest tensor.
        let context = context * masks.local_query.clone();
        let local_probs = with_probs.then(|| in_head_order(group_probs, &order));

        let Some(slots) = &masks.global else {
            let probs = local_probs.map(|local| AttentionProbs {
                local,
                global: None,
            });
            return (context, probs);
        };
        let projections = GlobalProjections {
            query: &self.query_global,
            key: &self.key_global,
            value: &self.value_global,
            dropout: &self.dropout,
        };
        let (global_context, global_probs) = global_rows(hidden, projections, slots, h);
        // Global rows replace the (already zeroed) local output.
        let g = layout.n_global;
        let filled = global_context
            .reshape([b * g, d])
            .select(0, slots.filled_slots.clone());
        let context = context
            .reshape([b * l, d])
            .select_assign(0, slots.filled_rows.clone(), filled, IndexingUpdateOp::Add)
            .reshape([b, l, d]);
        let probs = local_probs.map(|local| AttentionProbs {
            // HF zeroes the (unused) local rows of global tokens.
            local: local * masks.not_global.clone(),
            global: Some(global_probs.swap_dims(2, 3)),
        });
        (context, probs)
    }

    /// Local attention (band + global keys) of a group of heads that share one dilation.
    ///
    /// # Shapes
    /// - heads.q, heads.k, heads.v: `[batch_size, n_group_heads, seq_length, d_head]`
    /// - heads.global: `[batch_size, n_group_heads, n_global, d_head]` (keys, values)
    /// - output.0: `[batch_size, n_group_heads, seq_length, d_head]`
    /// - output.1: `[batch_size, n_group_heads, seq_length, n_global + 2 * window + 1]`
    fn local_heads(
        &self,
        heads: LocalHeads,
        band_mask: &BandMask,
        dilation: usize,
        with_probs: bool,
    ) -> (Tensor<4>, Option<Tensor<4>>) {
        let [b, hg, l, dh] = heads.q.dims();
        let w = self.window;
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

        // Scores: global keys first (as HF), then the band.
        let q = pad_rows(heads.q, lp);
        let causal = self.pattern.causal;
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
        let dropped = self.dropout.forward(probs.clone());

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
}

/// Queries, keys and values of a group of heads, with the local keys and values of the global
/// tokens (`None` without global tokens).
struct LocalHeads {
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    global: Option<(Tensor<4>, Tensor<4>)>,
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

/// Per-group head tensors (concatenated in `order`) back in head order.
///
/// # Shapes
/// - parts: `[batch_size, n_group_heads, seq_length, e]` each
/// - output: `[batch_size, n_heads, seq_length, e]`
fn in_head_order(parts: Vec<Tensor<4>>, order: &[usize]) -> Tensor<4> {
    let stacked = if parts.len() == 1 {
        parts.into_iter().next().expect("one part")
    } else {
        Tensor::cat(parts, 1)
    };
    if order.iter().enumerate().all(|(i, &h)| i == h) {
        return stacked;
    }
    let mut inverse = vec![0i64; order.len()];
    for (position, &head) in order.iter().enumerate() {
        inverse[head] = position as i64;
    }
    let idx =
        Tensor::<1, Int>::from_data(TensorData::new(inverse, [order.len()]), &stacked.device());
    stacked.select(1, idx)
}

/// The rows of every global slot.
///
/// # Shapes
/// - x: `[batch_size, seq_length, d_model]`
/// - output: `[batch_size, n_global, d_model]`
fn gather_slots(x: Tensor<3>, slot_rows: &Tensor<1, Int>) -> Tensor<3> {
    let [b, l, d] = x.dims();
    let g = slot_rows.dims()[0] / b;
    x.reshape([b * l, d])
        .select(0, slot_rows.clone())
        .reshape([b, g, d])
}
