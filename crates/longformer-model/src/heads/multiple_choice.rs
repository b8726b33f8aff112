//! [`LongformerForMultipleChoice`]: every choice encoded as its own row, the pooler, dropout and
//! `classifier`, a `Linear(d_model, 1)` score per choice (HF `LongformerForMultipleChoice`).
//! With no global mask, the tokens after each row's first two separators (the choice) are
//! global, as HF computes it; that needs `<s> context </s></s> choice </s>` rows.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::{Bool, Device, Int, Tensor};

use crate::error::{ConfigError, InputError};
use crate::heads::config::{LongformerHeadConfig, TaskHead, hf_init, with_pooler};
use crate::heads::global;
use crate::input::LongformerInput;
use crate::model::LongformerModel;

/// A batch of examples with `n_choices` candidate rows each, flattened to rows
/// `example * n_choices + choice` (what HF does with its `[batch, num_choices, seq]` inputs).
#[derive(Debug, Clone)]
pub struct MultipleChoiceInput {
    /// The choices as one batch, `[batch_size * n_choices, seq_length]`.
    pub choices: LongformerInput,
    /// Choices per example.
    pub n_choices: usize,
}

impl MultipleChoiceInput {
    /// Groups consecutive rows of `choices` into examples of `n_choices`.
    ///
    /// # Errors
    /// [`InputError::ChoiceCount`] when the rows do not split evenly (or `n_choices` is 0).
    pub fn new(choices: LongformerInput, n_choices: usize) -> Result<Self, InputError> {
        let [rows, _] = choices.dims();
        if n_choices == 0 || !rows.is_multiple_of(n_choices) {
            return Err(InputError::ChoiceCount { rows, n_choices });
        }
        Ok(Self { choices, n_choices })
    }

    /// From HF-shaped tensors.
    ///
    /// # Shapes
    /// - input_ids, attention_mask, global_attention_mask: `[batch_size, n_choices, seq_length]`
    pub fn from_tensors(
        input_ids: Tensor<3, Int>,
        attention_mask: Option<Tensor<3, Bool>>,
        global_attention_mask: Option<Tensor<3, Bool>>,
    ) -> Self {
        let [batch_size, n_choices, seq_length] = input_ids.dims();
        let flat = [batch_size * n_choices, seq_length];
        let mut choices = LongformerInput::new(input_ids.reshape(flat));
        choices.attention_mask = attention_mask.map(|m| flatten(m, flat));
        choices.global_attention_mask = global_attention_mask.map(|m| flatten(m, flat));
        Self { choices, n_choices }
    }
}

/// A mask flattened to `flat` rows; one of another shape is kept as `[1, n]` so that the
/// model's shape check reports it rather than a reshape panicking.
fn flatten(mask: Tensor<3, Bool>, flat: [usize; 2]) -> Tensor<2, Bool> {
    let dims = mask.dims();
    if dims[0] * dims[1] == flat[0] && dims[2] == flat[1] {
        mask.reshape(flat)
    } else {
        mask.reshape([1, dims.iter().product::<usize>()])
    }
}

/// A Longformer with a multiple-choice head.
#[derive(Module, Debug)]
pub struct LongformerForMultipleChoice {
    /// The encoder (HF `longformer.`), with its pooler.
    pub longformer: LongformerModel,
    /// Dropout on the pooled output (`hidden_dropout_prob`).
    pub dropout: Dropout,
    /// `d_model → 1` (HF `classifier`).
    pub classifier: Linear,
    /// The separator id of the default global attention.
    pub sep_token_id: usize,
}

impl TaskHead for LongformerForMultipleChoice {
    const HF_CLASS: &'static str = "LongformerForMultipleChoice";
    const POOLER: bool = true;

    fn with_encoder(
        longformer: LongformerModel,
        config: &LongformerHeadConfig,
        device: &Device,
    ) -> Result<Self, ConfigError> {
        let d_model = config.model.hidden_size;
        Ok(Self {
            longformer: with_pooler(longformer, Self::POOLER, config, device),
            dropout: DropoutConfig::new(config.model.hidden_dropout_prob).init(),
            classifier: hf_init(LinearConfig::new(d_model, 1).init(device), config),
            sep_token_id: config.sep_token_id,
        })
    }
}

impl LongformerForMultipleChoice {
    /// One score per choice. Without a `global_attention_mask`, the tokens after each row's
    /// first two separators are global.
    ///
    /// # Shapes
    /// - input.choices: `[batch_size * n_choices, seq_length]`
    /// - output: `[batch_size, n_choices]`
    ///
    /// # Errors
    /// [`InputError::Separators`] when the default is needed and a row does not hold exactly
    /// three separators (the row of the flattened batch); inputs
    /// [`LongformerModel::try_forward`] rejects.
    ///
    /// # Panics
    /// If `longformer.pooler` was set to `None` by hand (every constructor and loader builds it).
    pub fn forward(&self, input: MultipleChoiceInput) -> Result<Tensor<2>, InputError> {
        let MultipleChoiceInput { choices, n_choices } = input;
        let sep = self.sep_token_id as i64;
        let choices = global::or_default(choices, |ids| {
            global::after_question_end(ids, sep, "multiple choice")
        })?;
        let [rows, _] = choices.dims();
        let pooled = self
            .longformer
            .try_forward(choices)?
            .pooler_output
            .expect("LongformerForMultipleChoice is always built with a pooler");
        let scores = self.classifier.forward(self.dropout.forward(pooled));
        Ok(scores.reshape([rows / n_choices, n_choices]))
    }
}
