//! [`SlidingWindowAttention`]: Longformer's self-attention (HF `LongformerSelfAttention`).
//!
//! Every token attends to the `window` tokens on each side of it (minus padding and global
//! tokens) and to every global token; global tokens attend to every token with separate
//! projections. Scores are scaled on the query; scores, softmax and the weighted sum run in f32
//! whatever the parameters' dtype (see [`crate::precision`]); padding rows are zero.
//! Upstream: `transformers/models/longformer/modeling_longformer.py`, `LongformerSelfAttention`.
//!
//! Beyond HF, a [`WindowPattern`] dilates the window per head and can make it causal; with no
//! dilation and both sides (the default) the computation is exactly HF's.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::{Device, IndexingUpdateOp, Int, Tensor, TensorData};

use super::fused::LocalAttentionKernel;
use super::global::{
    GlobalKeys, GlobalProjections, GlobalRowsPath, global_rows, merge_heads, split_heads,
};
use super::local::{BandPattern, LocalHeads, local_attention};
use super::masks::AttentionMasks;
use super::pattern::WindowPattern;
use crate::dropout::DropoutSeed;
use crate::linear::linear;
use crate::precision::{to_dtype, to_f32};

/// The dropout site of the global rows' probabilities, a child of the attention's seed.
const GLOBAL_SITE: u64 = 0;
/// The first dropout site of the local probabilities: one per group of heads of one dilation.
const LOCAL_SITES: u64 = 1;

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
    /// Implementation of the local attention (see [`LocalAttentionKernel`]).
    #[config(default = "LocalAttentionKernel::Auto")]
    pub kernel: LocalAttentionKernel,
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
            kernel: self.kernel,
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
    /// Implementation of the local attention.
    #[module(skip)]
    pub kernel: LocalAttentionKernel,
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
    /// Attention output before the output projection; `seed` seeds the dropout of the attention
    /// probabilities (unread outside training).
    ///
    /// # Shapes
    /// - hidden: `[batch_size, seq_length, d_model]`
    /// - output: `[batch_size, seq_length, d_model]`
    ///
    /// # Panics
    /// If `hidden` does not match the masks' `[batch_size, seq_length]` or `d_model`.
    pub fn forward(
        &self,
        hidden: Tensor<3>,
        masks: &AttentionMasks,
        seed: DropoutSeed,
    ) -> Tensor<3> {
        self.forward_with_probs(hidden, masks, seed, false).0
    }

    /// [`forward`](Self::forward), also returning the probabilities when `with_probs` is set.
    pub fn forward_with_probs(
        &self,
        hidden: Tensor<3>,
        masks: &AttentionMasks,
        seed: DropoutSeed,
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

        // The core (scores, softmax, weighted sum) runs in f32 whatever the parameters' dtype;
        // the context goes back to it at the end.
        let dtype = hidden.dtype();
        // Scaled before the heads are split: on GPUs Burn's fusion joins the product to the
        // projection's bias add (a product on the split view is a launch of its own).
        let q = split_heads(to_f32(linear(&self.query, hidden.clone())) * scale, h);
        let k_proj = to_f32(linear(&self.key, hidden.clone()));
        let v_proj = to_f32(linear(&self.value, hidden.clone()));
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
        for (group, (dilation, heads)) in groups.iter().enumerate() {
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
            let pattern = BandPattern {
                window: self.window,
                dilation: *dilation,
                causal: self.pattern.causal,
            };
            let (context, probs) = local_attention(
                LocalHeads {
                    q: pick(q.clone()),
                    k: pick(k.clone()),
                    v: pick(v.clone()),
                    global: global_kv.clone().map(|(kg, vg)| (pick(kg), pick(vg))),
                },
                masks,
                pattern,
                &self.dropout,
                seed.child(LOCAL_SITES + group as u64),
                with_probs,
                self.kernel,
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
            return (to_dtype(context, dtype), probs);
        };
        let projections = GlobalProjections {
            query: &self.query_global,
            key: &self.key_global,
            value: &self.value_global,
            dropout: &self.dropout,
        };
        let (global_context, global_probs) = global_rows(
            hidden,
            projections,
            slots,
            h,
            seed.child(GLOBAL_SITE),
            GlobalRowsPath {
                keys: GlobalKeys::Auto,
                kernel: self.kernel,
                with_probs,
            },
        );
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
            global: Some(
                global_probs
                    .expect("the global rows' probabilities, requested")
                    .swap_dims(2, 3),
            ),
        });
        (to_dtype(context, dtype), probs)
    }
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
