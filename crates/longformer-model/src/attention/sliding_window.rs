//! [`SlidingWindowAttention`]: Longformer's self-attention (HF `LongformerSelfAttention`).
//!
//! Every token attends to the `window` tokens on each side of it (minus padding and global
//! tokens) and to every global token; global tokens attend to every token with separate
//! projections. Scores are scaled on the query, softmax runs in f32, padding rows are zero.
//! Upstream: `transformers/models/longformer/modeling_longformer.py`, `LongformerSelfAttention`.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, IndexingUpdateOp, Int, Tensor};

use super::MASKED_SCORE;
use super::band::{band_scores, band_to_diagonals, key_span, pad_rows, query_blocks};
use super::global::{GlobalProjections, global_rows, merge_heads, split_heads};
use super::masks::{AttentionMasks, padded_length};

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
}

impl SlidingWindowAttentionConfig {
    /// Builds the module with random projections.
    ///
    /// # Panics
    /// If `n_heads` does not divide `d_model`, or the window is odd or zero
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
}

/// Attention probabilities in HuggingFace's shapes.
#[derive(Debug, Clone)]
pub struct AttentionProbs {
    /// Probabilities of every query over the global keys then its band, `[batch_size, n_heads,
    /// seq_length, n_global + 2 * window + 1]`; column `n_global + c` is key `i + c - window`.
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
        let (h, w) = (self.n_heads, self.window);
        let dh = d / h;
        let lp = padded_length(l, w);
        let nb = lp / w;
        let g = layout.n_global;
        let scale = 1.0 / (dh as f64).sqrt();

        let q = split_heads(self.query.forward(hidden.clone()), h) * scale;
        let k_proj = self.key.forward(hidden.clone());
        let v_proj = self.value.forward(hidden.clone());
        let band_mask = masks.band(w);

        // Scores: global keys first (as HF), then the band.
        let q = pad_rows(q, lp);
        let k_span = key_span(pad_rows(split_heads(k_proj.clone(), h), lp), w);
        let band = band_scores(query_blocks(q.clone(), w), k_span);
        let (scores, global_values) = match &masks.global {
            Some(slots) => {
                let k_global = split_heads(gather_slots(k_proj, &slots.slot_rows), h);
                let v_global = split_heads(gather_slots(v_proj.clone(), &slots.slot_rows), h);
                let s = q.matmul(k_global.swap_dims(2, 3)).reshape([b, h, nb, w, g]);
                (Tensor::cat(vec![s, band], 4), Some(v_global))
            }
            None => (band, None),
        };
        let mask = band_mask.masked.expand(scores.dims());
        let probs = softmax(scores.mask_fill(mask, MASKED_SCORE), 4);
        let dropped = self.dropout.forward(probs.clone());

        let band_probs = dropped.clone().narrow(4, g, 3 * w);
        let v_span = key_span(pad_rows(split_heads(v_proj, h), lp), w);
        let mut context = band_probs.matmul(v_span).reshape([b, h, lp, dh]);
        if let Some(v_global) = global_values {
            let p = dropped.narrow(4, 0, g).reshape([b, h, lp, g]);
            context = context + p.matmul(v_global);
        }
        // Padding rows (HF zeroes their probabilities) and global rows (replaced below) keep no
        // local output. Zeroing the context rather than the probabilities saves a pass over the
        // largest tensor.
        let context = merge_heads(context.narrow(2, 0, l)) * masks.local_query.clone();

        let mut local_probs = None;
        if with_probs {
            let probs = probs * band_mask.real_query;
            let band = band_to_diagonals(probs.clone().narrow(4, g, 3 * w));
            let full = if g > 0 {
                Tensor::cat(vec![probs.narrow(4, 0, g).reshape([b, h, lp, g]), band], 3)
            } else {
                band
            };
            local_probs = Some(full.narrow(2, 0, l));
        }

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
