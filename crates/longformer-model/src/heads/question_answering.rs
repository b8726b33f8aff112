//! [`LongformerForQuestionAnswering`]: the encoder (no pooler) and `qa_outputs`, a
//! `Linear(d_model, 2)` giving start and end logits per token (HF
//! `LongformerForQuestionAnswering`). With no global mask, the question (every token before the
//! first separator) is global, as HF computes it; that needs `<s> question </s></s> context
//! </s>` rows, and a row without exactly three separators is an error naming it.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use crate::checkpointing::{CheckpointedPass, Encode, checkpointed, recorded};
use crate::error::{ConfigError, InputError};
use crate::heads::config::{LongformerHeadConfig, TaskHead, hf_init, with_pooler};
use crate::heads::global;
use crate::input::LongformerInput;
use crate::model::LongformerModel;

/// A Longformer with an extractive question-answering head.
#[derive(Module, Debug)]
pub struct LongformerForQuestionAnswering {
    /// The encoder (HF `longformer.`), without a pooler.
    pub longformer: LongformerModel,
    /// `d_model → 2`: start and end scores (HF `qa_outputs`).
    pub qa_outputs: Linear,
    /// The separator id of the default global attention.
    pub sep_token_id: usize,
}

/// What [`LongformerForQuestionAnswering::forward`] returns.
#[derive(Debug, Clone)]
pub struct QuestionAnsweringOutput {
    /// Score of each token as the answer's first token, `[batch_size, seq_length]`.
    pub start_logits: Tensor<2>,
    /// Score of each token as the answer's last token, `[batch_size, seq_length]`.
    pub end_logits: Tensor<2>,
}

impl TaskHead for LongformerForQuestionAnswering {
    const HF_CLASS: &'static str = "LongformerForQuestionAnswering";
    const POOLER: bool = false;

    fn with_encoder(
        longformer: LongformerModel,
        config: &LongformerHeadConfig,
        device: &Device,
    ) -> Result<Self, ConfigError> {
        if config.num_labels != 2 {
            return Err(ConfigError::Invalid(format!(
                "question answering scores a start and an end (num_labels 2); the config has num_labels {}",
                config.num_labels
            )));
        }
        let d_model = config.model.hidden_size;
        Ok(Self {
            longformer: with_pooler(longformer, Self::POOLER, config, device),
            qa_outputs: hf_init(LinearConfig::new(d_model, 2).init(device), config),
            sep_token_id: config.sep_token_id,
        })
    }

    fn longformer(&self) -> &LongformerModel {
        &self.longformer
    }
}

impl LongformerForQuestionAnswering {
    /// Start and end scores of every token. Without a `global_attention_mask`, the tokens
    /// before each row's first separator are global.
    ///
    /// # Shapes
    /// - input: `[batch_size, seq_length]`
    /// - output: start and end logits, `[batch_size, seq_length]` each
    ///
    /// # Errors
    /// [`InputError::Separators`] when the default is needed and a row does not hold exactly
    /// three separators; inputs [`LongformerModel::try_forward`] rejects.
    pub fn forward(&self, input: LongformerInput) -> Result<QuestionAnsweringOutput, InputError> {
        Ok(self.run(input, recorded)?.0)
    }

    /// [`forward`](Self::forward) with activation checkpointing (see
    /// [`LongformerModel::try_forward_checkpointed`]): back-propagate with
    /// `pass.backward(&head.longformer, loss.backward())`, which gives the recorded pass's
    /// gradients, the head's parameters' among them.
    pub fn forward_checkpointed(
        &self,
        input: LongformerInput,
    ) -> Result<(QuestionAnsweringOutput, CheckpointedPass), InputError> {
        self.run(input, checkpointed)
    }

    fn run<P>(
        &self,
        input: LongformerInput,
        encode: Encode<P>,
    ) -> Result<(QuestionAnsweringOutput, P), InputError> {
        let sep = self.sep_token_id as i64;
        let input = global::or_default(input, |ids| {
            global::before_question_end(ids, sep, "question answering")
        })?;
        let (hidden, pass) = encode(&self.longformer, input)?;
        let [batch_size, seq_length, _] = hidden.dims();
        let logits = self.qa_outputs.forward(hidden);
        let pick = |i: usize| {
            logits
                .clone()
                .narrow(2, i, 1)
                .reshape([batch_size, seq_length])
        };
        let output = QuestionAnsweringOutput {
            start_logits: pick(0),
            end_logits: pick(1),
        };
        Ok((output, pass))
    }
}
