//! [`LongformerForTokenClassification`]: the encoder (no pooler), dropout and `classifier`, a
//! `Linear(d_model, n_labels)` on every token (HF `LongformerForTokenClassification`). No
//! default global attention.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use crate::checkpointing::{CheckpointedPass, Encode, checkpointed, recorded};
use crate::dropout::seeded_dropout;
use crate::error::{ConfigError, InputError};
use crate::heads::config::{LongformerHeadConfig, TaskHead, hf_init, with_pooler};
use crate::input::LongformerInput;
use crate::model::{HEAD_DROPOUT_SITE, LongformerModel};

/// A Longformer with a per-token classification head (tagging, NER).
#[derive(Module, Debug)]
pub struct LongformerForTokenClassification {
    /// The encoder (HF `longformer.`), without a pooler.
    pub longformer: LongformerModel,
    /// Dropout on the hidden states (`hidden_dropout_prob`).
    pub dropout: Dropout,
    /// `d_model → n_labels` (HF `classifier`).
    pub classifier: Linear,
}

impl TaskHead for LongformerForTokenClassification {
    const HF_CLASS: &'static str = "LongformerForTokenClassification";
    const POOLER: bool = false;

    fn with_encoder(
        longformer: LongformerModel,
        config: &LongformerHeadConfig,
        device: &Device,
    ) -> Result<Self, ConfigError> {
        let d_model = config.model.hidden_size;
        Ok(Self {
            longformer: with_pooler(longformer, Self::POOLER, config, device),
            dropout: DropoutConfig::new(config.model.hidden_dropout_prob).init(),
            classifier: hf_init(
                LinearConfig::new(d_model, config.num_labels).init(device),
                config,
            ),
        })
    }

    fn longformer(&self) -> &LongformerModel {
        &self.longformer
    }
}

impl LongformerForTokenClassification {
    /// Label scores of every token.
    ///
    /// # Shapes
    /// - input: `[batch_size, seq_length]`
    /// - output: `[batch_size, seq_length, n_labels]`
    ///
    /// # Errors
    /// Inputs [`LongformerModel::try_forward`] rejects.
    pub fn forward(&self, input: LongformerInput) -> Result<Tensor<3>, InputError> {
        Ok(self.run(input, recorded)?.0)
    }

    /// [`forward`](Self::forward) with activation checkpointing (see
    /// [`LongformerModel::try_forward_checkpointed`]): back-propagate with
    /// `pass.backward(&head.longformer, loss.backward())`, which gives the recorded pass's
    /// gradients, the head's parameters' among them.
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
        let (input, seed) = input.with_fixed_dropout_seed();
        let (hidden, pass) = encode(&self.longformer, input)?;
        let hidden = seeded_dropout(&self.dropout, hidden, seed.child(HEAD_DROPOUT_SITE));
        Ok((self.classifier.forward(hidden), pass))
    }
}
