//! [`LongformerForSequenceClassification`]: the encoder (no pooler) and
//! [`LongformerClassificationHead`] on the first token (HF `LongformerForSequenceClassification`,
//! `LongformerClassificationHead`). With no global mask, the first token (`<s>`) is global, as HF
//! does.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::activation::tanh;
use burn::tensor::{Device, Tensor};

use crate::checkpointing::{CheckpointedPass, Encode, checkpointed, recorded};
use crate::dropout::{DropoutSeed, seeded_dropout};
use crate::error::{ConfigError, InputError};
use crate::heads::config::{LongformerHeadConfig, TaskHead, hf_init, with_pooler};
use crate::heads::global;
use crate::input::LongformerInput;
use crate::model::{HEAD_DROPOUT_SITE, LongformerModel};

/// `out_proj(dropout(tanh(dense(dropout(h[:, 0])))))` (HF `classifier`).
#[derive(Module, Debug)]
pub struct LongformerClassificationHead {
    /// `d_model → d_model`.
    pub dense: Linear,
    /// Dropout before `dense` and before `out_proj` (`hidden_dropout_prob`).
    pub dropout: Dropout,
    /// `d_model → n_labels`.
    pub out_proj: Linear,
}

impl LongformerClassificationHead {
    /// A head for `config` with HF's initialization.
    pub fn init(config: &LongformerHeadConfig, device: &Device) -> Self {
        let d_model = config.model.hidden_size;
        let head = Self {
            dense: LinearConfig::new(d_model, d_model).init(device),
            dropout: DropoutConfig::new(config.model.hidden_dropout_prob).init(),
            out_proj: LinearConfig::new(d_model, config.num_labels).init(device),
        };
        hf_init(head, config)
    }

    /// `seed` seeds the dropout (unread outside training).
    ///
    /// # Shapes
    /// - hidden: `[batch_size, seq_length, d_model]`
    /// - output: `[batch_size, n_labels]`
    pub fn forward(&self, hidden: Tensor<3>, seed: DropoutSeed) -> Tensor<2> {
        let [batch_size, _, d_model] = hidden.dims();
        let first = hidden.narrow(1, 0, 1).reshape([batch_size, d_model]);
        let x = tanh(
            self.dense
                .forward(seeded_dropout(&self.dropout, first, seed.child(0))),
        );
        self.out_proj
            .forward(seeded_dropout(&self.dropout, x, seed.child(1)))
    }
}

/// A Longformer with a sequence classification (or regression, `n_labels = 1`) head.
#[derive(Module, Debug)]
pub struct LongformerForSequenceClassification {
    /// The encoder (HF `longformer.`), without a pooler.
    pub longformer: LongformerModel,
    /// The head (HF `classifier.`).
    pub classifier: LongformerClassificationHead,
}

impl TaskHead for LongformerForSequenceClassification {
    const HF_CLASS: &'static str = "LongformerForSequenceClassification";
    const POOLER: bool = false;

    fn with_encoder(
        longformer: LongformerModel,
        config: &LongformerHeadConfig,
        device: &Device,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            longformer: with_pooler(longformer, Self::POOLER, config, device),
            classifier: LongformerClassificationHead::init(config, device),
        })
    }

    fn longformer(&self) -> &LongformerModel {
        &self.longformer
    }
}

impl LongformerForSequenceClassification {
    /// Label scores of every row. Without a `global_attention_mask`, the first token is global.
    ///
    /// # Shapes
    /// - input: `[batch_size, seq_length]`
    /// - output: `[batch_size, n_labels]`
    ///
    /// # Errors
    /// Inputs [`LongformerModel::try_forward`] rejects.
    pub fn forward(&self, input: LongformerInput) -> Result<Tensor<2>, InputError> {
        Ok(self.run(input, recorded)?.0)
    }

    /// [`forward`](Self::forward) with activation checkpointing (see
    /// [`LongformerModel::try_forward_checkpointed`]): back-propagate with
    /// `pass.backward(&head.longformer, loss.backward())`, which gives the recorded pass's
    /// gradients, the head's parameters' among them.
    pub fn forward_checkpointed(
        &self,
        input: LongformerInput,
    ) -> Result<(Tensor<2>, CheckpointedPass), InputError> {
        self.run(input, checkpointed)
    }

    fn run<P>(
        &self,
        input: LongformerInput,
        encode: Encode<P>,
    ) -> Result<(Tensor<2>, P), InputError> {
        let input = global::or_default(input, |ids| Ok(global::first_token(ids)))?;
        let (input, seed) = input.with_fixed_dropout_seed();
        let (hidden, pass) = encode(&self.longformer, input)?;
        let logits = self
            .classifier
            .forward(hidden, seed.child(HEAD_DROPOUT_SITE));
        Ok((logits, pass))
    }
}
