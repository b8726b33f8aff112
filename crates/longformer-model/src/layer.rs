//! [`LongformerLayer`]: one encoder layer — attention, residual + LayerNorm, feed-forward,
//! residual + LayerNorm (HF `LongformerLayer` and its `SelfOutput`, `Intermediate`, `Output`).

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu_approximate, relu};
use burn::tensor::{Device, Tensor};

use crate::attention::{
    AttentionMasks, AttentionProbs, LocalAttentionKernel, SlidingWindowAttention,
    SlidingWindowAttentionConfig,
};
use crate::config::HiddenAct;
use crate::dropout::{DropoutSeed, seeded_dropout};
use crate::gelu::gelu_exact;
use crate::linear::linear;
use crate::norm::layer_norm;

/// Configuration of [`LongformerLayer`].
#[derive(Config, Debug)]
pub struct LongformerLayerConfig {
    /// Width of the hidden states.
    pub d_model: usize,
    /// Number of attention heads.
    pub n_heads: usize,
    /// Width of the feed-forward layer.
    pub d_ff: usize,
    /// Full attention window of this layer.
    pub attention_window: usize,
    /// Feed-forward activation.
    pub activation: HiddenAct,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Dropout after the attention output and the feed-forward output.
    pub hidden_dropout: f64,
    /// Dropout on attention probabilities.
    pub attention_dropout: f64,
    /// Dilation of each attention head; empty means 1 for every head.
    #[config(default = "Vec::new()")]
    pub head_dilation: Vec<usize>,
    /// Causal attention window.
    #[config(default = false)]
    pub causal: bool,
    /// Implementation of the local attention.
    #[config(default = "LocalAttentionKernel::Auto")]
    pub kernel: LocalAttentionKernel,
}

impl LongformerLayerConfig {
    /// Builds the layer with random weights.
    pub fn init(&self, device: &Device) -> LongformerLayer {
        let norm = || {
            LayerNormConfig::new(self.d_model)
                .with_epsilon(self.layer_norm_eps)
                .init(device)
        };
        let dropout = || DropoutConfig::new(self.hidden_dropout).init();
        LongformerLayer {
            attention: LongformerAttention {
                self_attn: SlidingWindowAttentionConfig::new(
                    self.d_model,
                    self.n_heads,
                    self.attention_window,
                )
                .with_dropout(self.attention_dropout)
                .with_head_dilation(self.head_dilation.clone())
                .with_causal(self.causal)
                .with_kernel(self.kernel)
                .init(device),
                output: ResidualNorm {
                    dense: LinearConfig::new(self.d_model, self.d_model).init(device),
                    layer_norm: norm(),
                    layer_norm_eps: self.layer_norm_eps,
                    dropout: dropout(),
                },
            },
            intermediate: Intermediate {
                dense: LinearConfig::new(self.d_model, self.d_ff).init(device),
                activation: self.activation,
            },
            output: ResidualNorm {
                dense: LinearConfig::new(self.d_ff, self.d_model).init(device),
                layer_norm: norm(),
                layer_norm_eps: self.layer_norm_eps,
                dropout: dropout(),
            },
        }
    }
}

/// One encoder layer.
#[derive(Module, Debug)]
pub struct LongformerLayer {
    /// Self-attention and its output block.
    pub attention: LongformerAttention,
    /// First feed-forward layer and activation.
    pub intermediate: Intermediate,
    /// Second feed-forward layer, residual, LayerNorm.
    pub output: ResidualNorm,
}

/// Self-attention followed by its output projection, residual and LayerNorm (HF
/// `LongformerAttention`; HF's `attention.self` is `self_attn` here).
#[derive(Module, Debug)]
pub struct LongformerAttention {
    /// The attention itself.
    pub self_attn: SlidingWindowAttention,
    /// Output projection, residual, LayerNorm.
    pub output: ResidualNorm,
}

/// `LayerNorm(dropout(dense(x)) + residual)` (HF `LongformerSelfOutput` / `LongformerOutput`).
#[derive(Module, Debug)]
pub struct ResidualNorm {
    /// Projection back to `d_model`.
    pub dense: Linear,
    /// Normalization after the residual.
    pub layer_norm: LayerNorm,
    /// `layer_norm`'s epsilon (HF `layer_norm_eps`; Burn's `LayerNorm` keeps its own private).
    pub layer_norm_eps: f64,
    /// Dropout before the residual.
    pub dropout: Dropout,
}

impl ResidualNorm {
    /// `seed` seeds the dropout (unread outside training).
    ///
    /// # Shapes
    /// - x: `[batch_size, seq_length, d_in]`
    /// - residual, output: `[batch_size, seq_length, d_model]`
    pub fn forward(&self, x: Tensor<3>, residual: Tensor<3>, seed: DropoutSeed) -> Tensor<3> {
        let x = seeded_dropout(&self.dropout, linear(&self.dense, x), seed);
        layer_norm(&self.layer_norm, self.layer_norm_eps, x + residual)
    }
}

/// First feed-forward layer and its activation (HF `LongformerIntermediate`).
#[derive(Module, Debug)]
pub struct Intermediate {
    /// `d_model → d_ff`.
    pub dense: Linear,
    /// Activation.
    #[module(skip)]
    pub activation: HiddenAct,
}

impl Intermediate {
    /// # Shapes
    /// - x: `[batch_size, seq_length, d_model]`
    /// - output: `[batch_size, seq_length, d_ff]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = linear(&self.dense, x);
        match self.activation {
            HiddenAct::Gelu => gelu_exact(x),
            HiddenAct::GeluTanh => gelu_approximate(x),
            HiddenAct::Relu => relu(x),
        }
    }
}

/// The dropout sites of a layer, children of its seed.
const ATTENTION_SITE: u64 = 0;
const ATTENTION_OUTPUT_SITE: u64 = 1;
const OUTPUT_SITE: u64 = 2;

impl LongformerLayer {
    /// `seed` seeds the layer's dropout (unread outside training); every site of the layer
    /// derives its own from it.
    ///
    /// # Shapes
    /// - hidden: `[batch_size, seq_length, d_model]`
    /// - output: `[batch_size, seq_length, d_model]`
    pub fn forward(
        &self,
        hidden: Tensor<3>,
        masks: &AttentionMasks,
        seed: DropoutSeed,
        with_probs: bool,
    ) -> (Tensor<3>, Option<AttentionProbs>) {
        let (context, probs) = self.attention.self_attn.forward_with_probs(
            hidden.clone(),
            masks,
            seed.child(ATTENTION_SITE),
            with_probs,
        );
        let attended =
            self.attention
                .output
                .forward(context, hidden, seed.child(ATTENTION_OUTPUT_SITE));
        let out = self.output.forward(
            self.intermediate.forward(attended.clone()),
            attended,
            seed.child(OUTPUT_SITE),
        );
        (out, probs)
    }
}
