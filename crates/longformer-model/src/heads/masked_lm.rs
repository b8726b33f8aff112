//! [`LongformerForMaskedLM`]: the encoder (no pooler) and [`LongformerLmHead`] (HF
//! `LongformerForMaskedLM`, `LongformerLMHead`): `dense → gelu → layer_norm`, then the decoder:
//! tied to the word embeddings plus `lm_head.bias` (HF's default), or HF's own
//! `lm_head.decoder` when `config.json` has `"tie_word_embeddings": false`.
//!
//! Upstream: `transformers/models/longformer/modeling_longformer.py`, `LongformerLMHead`.

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use crate::checkpointing::{CheckpointedPass, Encode, checkpointed, recorded};
use crate::error::{ConfigError, InputError};
use crate::gelu::gelu_exact;
use crate::heads::config::{LongformerHeadConfig, TaskHead, hf_init, with_pooler};
use crate::input::LongformerInput;
use crate::model::LongformerModel;
use crate::norm::layer_norm;

/// `dense → gelu → layer_norm → decoder` (HF `lm_head`). With tied word embeddings (HF's
/// default) the decoder is `· word_embeddingsᵀ + bias`: the encoder's word embedding is the
/// weight, so HF's `lm_head.decoder.weight` is a copy and not read. Untied, the decoder is its
/// own linear layer, weight and bias, as in HF.
#[derive(Module, Debug)]
pub struct LongformerLmHead {
    /// `d_model → d_model`.
    pub dense: Linear,
    /// Normalization after the activation.
    pub layer_norm: LayerNorm,
    /// `layer_norm`'s epsilon (HF `layer_norm_eps`; Burn's `LayerNorm` keeps its own private).
    pub layer_norm_eps: f64,
    /// Per-token output bias of the tied decoder, `[vocab_size]` (HF `lm_head.bias`, tied to
    /// `lm_head.decoder.bias`).
    pub bias: Param<Tensor<1>>,
    /// The untied decoder, `d_model → vocab_size` (HF `lm_head.decoder.{weight,bias}`); `None`
    /// when it is tied to the word embeddings (`tie_word_embeddings`, the default). HF's untied
    /// decoder has its own bias, and `bias` above is then unused, as in HF.
    pub decoder: Option<Linear>,
}

impl LongformerLmHead {
    /// A head for `config` with HF's initialization (normal dense, unit norm, zero bias).
    pub fn init(config: &LongformerHeadConfig, device: &Device) -> Self {
        let m = &config.model;
        let head = Self {
            dense: LinearConfig::new(m.hidden_size, m.hidden_size).init(device),
            layer_norm: LayerNormConfig::new(m.hidden_size)
                .with_epsilon(m.layer_norm_eps)
                .init(device),
            layer_norm_eps: m.layer_norm_eps,
            bias: Param::from_tensor(Tensor::zeros([m.vocab_size], device)),
            decoder: (!config.tie_word_embeddings)
                .then(|| LinearConfig::new(m.hidden_size, m.vocab_size).init(device)),
        };
        hf_init(head, config)
    }

    /// Token scores; `word_embeddings` is the tied decoder's weight (unused when untied).
    ///
    /// # Shapes
    /// - hidden: `[batch_size, seq_length, d_model]`
    /// - word_embeddings: `[vocab_size, d_model]`
    /// - output: `[batch_size, seq_length, vocab_size]`
    pub fn forward(&self, hidden: Tensor<3>, word_embeddings: Tensor<2>) -> Tensor<3> {
        let [batch_size, seq_length, d_model] = hidden.dims();
        let [vocab_size, _] = word_embeddings.dims();
        let x = layer_norm(
            &self.layer_norm,
            self.layer_norm_eps,
            gelu_exact(self.dense.forward(hidden)),
        )
        .reshape([batch_size * seq_length, d_model]);
        let logits = match &self.decoder {
            Some(decoder) => decoder.forward(x),
            None => x.matmul(word_embeddings.transpose()) + self.bias.val().unsqueeze::<2>(),
        };
        logits.reshape([batch_size, seq_length, vocab_size])
    }
}

/// A Longformer with a masked-language-modelling head.
#[derive(Module, Debug)]
pub struct LongformerForMaskedLM {
    /// The encoder (HF `longformer.`), without a pooler.
    pub longformer: LongformerModel,
    /// The head (HF `lm_head.`).
    pub lm_head: LongformerLmHead,
}

impl TaskHead for LongformerForMaskedLM {
    const HF_CLASS: &'static str = "LongformerForMaskedLM";
    const POOLER: bool = false;
    /// The tied decoder's copies (an untied decoder reads them as its own weights).
    const IGNORED_KEYS: &'static [&'static str] =
        &["lm_head.decoder.weight", "lm_head.decoder.bias"];

    fn with_encoder(
        longformer: LongformerModel,
        config: &LongformerHeadConfig,
        device: &Device,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            longformer: with_pooler(longformer, Self::POOLER, config, device),
            lm_head: LongformerLmHead::init(config, device),
        })
    }

    fn longformer(&self) -> &LongformerModel {
        &self.longformer
    }

    /// A tied model's file with only `lm_head.decoder.bias` (no `lm_head.bias`) gives it as the
    /// bias.
    fn key_remaps(keys: &[String], config: &LongformerHeadConfig) -> Vec<(String, String)> {
        let has = |k: &str| keys.iter().any(|key| key == k);
        if config.tie_word_embeddings && !has("lm_head.bias") && has("lm_head.decoder.bias") {
            vec![(r"^lm_head\.decoder\.bias$".into(), "lm_head.bias".into())]
        } else {
            Vec::new()
        }
    }
}

impl LongformerForMaskedLM {
    /// Scores every vocabulary entry at every position. No global attention unless the input
    /// asks for it (HF sets none for masked LM).
    ///
    /// # Shapes
    /// - input: `[batch_size, seq_length]`
    /// - output: `[batch_size, seq_length, vocab_size]`
    ///
    /// # Errors
    /// Inputs [`LongformerModel::try_forward`] rejects.
    pub fn forward(&self, input: LongformerInput) -> Result<Tensor<3>, InputError> {
        Ok(self.run(input, recorded)?.0)
    }

    /// [`forward`](Self::forward) with activation checkpointing (see
    /// [`LongformerModel::try_forward_checkpointed`]): back-propagate with
    /// `pass.backward(&head.longformer, loss.backward())`, which gives the recorded pass's
    /// gradients, the head's parameters' among them (tied word embeddings get both
    /// shares).
    pub fn forward_checkpointed(
        &self,
        input: LongformerInput,
    ) -> Result<(Tensor<3>, CheckpointedPass), InputError> {
        self.run(input, checkpointed)
    }

    fn run<P>(
        &self,
        input: LongformerInput,
        encode: Encode<P>,
    ) -> Result<(Tensor<3>, P), InputError> {
        let (hidden, pass) = encode(&self.longformer, input)?;
        let words = self.longformer.embeddings.word_embeddings.weight.val();
        Ok((self.lm_head.forward(hidden, words), pass))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LongformerConfig;

    #[test]
    fn fresh_head_follows_hf_initialization() {
        let device = Device::flex();
        let config = LongformerHeadConfig::new(LongformerConfig::tiny(50));
        let model: LongformerForMaskedLM = config.init(&device).unwrap();
        assert!(model.longformer.pooler.is_none());
        let bias = model.lm_head.bias.val().abs().max().into_scalar::<f32>();
        assert_eq!(bias, 0.0);
        let std = model
            .lm_head
            .dense
            .weight
            .val()
            .var(0)
            .mean()
            .sqrt()
            .into_scalar::<f32>();
        assert!((std - 0.02).abs() < 0.006, "dense std {std}");
    }

    /// The output bias is built initialized, not lazily, and HF's initialization maps it at
    /// once: it must still train (it did not: zeroing it made a tensor without gradients).
    #[test]
    fn the_output_bias_trains() {
        let device = Device::flex().autodiff();
        let config = LongformerHeadConfig::new(LongformerConfig::tiny(50));
        let model: LongformerForMaskedLM = config.init(&device).unwrap();
        let bias = model.lm_head.bias.val();
        assert!(bias.is_require_grad());
        let input = LongformerInput::from_rows(&[vec![0, 5, 6, 2]], None, None, 1, &device);
        let grads = model.forward(input).unwrap().sum().backward();
        let grad = bias.grad(&grads).expect("a gradient for the output bias");
        // Each entry's gradient is the number of positions (the sum's derivative is 1 each).
        let total = grad.sum().into_scalar::<f32>();
        assert!((total - 4.0 * 50.0).abs() < 1e-3, "{total}");
    }

    #[test]
    fn logits_cover_the_vocabulary() {
        let device = Device::flex();
        let config = LongformerHeadConfig::new(LongformerConfig::tiny(50));
        let model: LongformerForMaskedLM = config.init(&device).unwrap();
        let input = LongformerInput::from_rows(&[vec![0, 5, 6, 2]], None, None, 1, &device);
        assert_eq!(model.forward(input).unwrap().dims(), [1, 4, 50]);
    }

    #[test]
    fn untied_decoder_is_its_own_layer() {
        let device = Device::flex();
        let config = LongformerHeadConfig::new(LongformerConfig::tiny(50));
        let tied: LongformerForMaskedLM = config.init(&device).unwrap();
        assert!(tied.lm_head.decoder.is_none());
        let config = config.with_tie_word_embeddings(false);
        let model: LongformerForMaskedLM = config.init(&device).unwrap();
        let decoder = model.lm_head.decoder.as_ref().expect("an untied decoder");
        assert_eq!(decoder.weight.dims(), [64, 50]);
        let input = LongformerInput::from_rows(&[vec![0, 5, 6, 2]], None, None, 1, &device);
        assert_eq!(model.forward(input).unwrap().dims(), [1, 4, 50]);
    }
}
