//! [`LongformerForMultipleChoice`]: every choice encoded as its own row, the pooler, dropout and
//! `classifier`, a `Linear(d_model, 1)` score per choice (HF `LongformerForMultipleChoice`).
//! With no global mask, the tokens after each row's first two separators (the choice) are
//! global, as HF computes it; that needs `<s> context </s></s> choice </s>` rows.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::kind::Basic;
use burn::tensor::{Bool, Device, Int, Tensor};

use crate::checkpointing::{CheckpointedPass, Encode, checkpointed, recorded};
use crate::dropout::seeded_dropout;
use crate::error::{ConfigError, InputError};
use crate::heads::config::{LongformerHeadConfig, TaskHead, hf_init, with_pooler};
use crate::heads::global;
use crate::input::LongformerInput;
use crate::model::{HEAD_DROPOUT_SITE, LongformerModel};

/// A batch of examples with `n_choices` candidate rows each, flattened to rows
/// `example * n_choices + choice` (what HF does with its `[batch, num_choices, seq]` inputs).
///
/// Build one with [`new`](Self::new) or [`from_tensors`](Self::from_tensors), which check it;
/// one built field by field is checked by [`LongformerForMultipleChoice::forward`].
///
/// # Shapes
/// - choices: `[batch_size * n_choices, seq_length]`
#[derive(Debug, Clone)]
pub struct MultipleChoiceInput {
    /// The choices as one batch, `[batch_size * n_choices, seq_length]`.
    pub choices: LongformerInput,
    /// Choices per example (positive, dividing the rows of `choices`).
    pub n_choices: usize,
}

impl MultipleChoiceInput {
    /// Groups consecutive rows of `choices` into examples of `n_choices`.
    ///
    /// # Errors
    /// [`InputError::ChoiceCount`] when the rows do not split evenly (or `n_choices` is 0).
    pub fn new(choices: LongformerInput, n_choices: usize) -> Result<Self, InputError> {
        let input = Self { choices, n_choices };
        input.check_choice_count()?;
        Ok(input)
    }

    /// From HF-shaped tensors.
    ///
    /// # Shapes
    /// - input_ids, attention_mask, global_attention_mask: `[batch_size, n_choices, seq_length]`
    ///
    /// # Errors
    /// [`InputError::ChoiceMaskShape`] when a mask's shape is not that of `input_ids`, naming
    /// the mask and both shapes.
    pub fn from_tensors(
        input_ids: Tensor<3, Int>,
        attention_mask: Option<Tensor<3, Bool>>,
        global_attention_mask: Option<Tensor<3, Bool>>,
    ) -> Result<Self, InputError> {
        let expected = input_ids.dims();
        let [batch_size, n_choices, seq_length] = expected;
        let flat = [batch_size * n_choices, seq_length];
        let flatten_mask = |mask: &'static str, tensor: Option<Tensor<3, Bool>>| {
            tensor
                .map(|t| match t.dims() {
                    found if found == expected => Ok(flatten(t, flat)),
                    found => Err(InputError::ChoiceMaskShape {
                        mask,
                        expected,
                        found,
                    }),
                })
                .transpose()
        };
        let mut choices = LongformerInput::new(flatten(input_ids, flat));
        choices.attention_mask = flatten_mask("attention_mask", attention_mask)?;
        choices.global_attention_mask =
            flatten_mask("global_attention_mask", global_attention_mask)?;
        Ok(Self { choices, n_choices })
    }

    /// [`InputError::ChoiceCount`] unless the rows of `choices` split into examples of
    /// `n_choices` (a positive number).
    fn check_choice_count(&self) -> Result<(), InputError> {
        let [rows, _] = self.choices.dims();
        let n_choices = self.n_choices;
        if n_choices == 0 || !rows.is_multiple_of(n_choices) {
            return Err(InputError::ChoiceCount { rows, n_choices });
        }
        Ok(())
    }
}

/// `tensor` as `flat` rows. Burn's `reshape` reads a 0 in the target shape as "keep that
/// axis", so an empty tensor is made anew rather than reshaped.
fn flatten<K: Basic>(tensor: Tensor<3, K>, flat: [usize; 2]) -> Tensor<2, K> {
    if flat.contains(&0) {
        Tensor::empty(flat, &tensor.device())
    } else {
        tensor.reshape(flat)
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

    fn longformer(&self) -> &LongformerModel {
        &self.longformer
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
    /// [`InputError::ChoiceCount`] when the rows do not split into examples of `n_choices` (an
    /// input built field by field); [`InputError::Separators`] when the default is needed and a
    /// row does not hold exactly three separators (the row of the flattened batch); inputs
    /// [`LongformerModel::try_forward`] rejects.
    ///
    /// # Panics
    /// If `longformer.pooler` was set to `None` by hand (every constructor and loader builds it).
    pub fn forward(&self, input: MultipleChoiceInput) -> Result<Tensor<2>, InputError> {
        Ok(self.run(input, recorded)?.0)
    }

    /// [`forward`](Self::forward) with activation checkpointing (see
    /// [`LongformerModel::try_forward_checkpointed`]): back-propagate with
    /// `pass.backward(&head.longformer, loss.backward())`, which gives the recorded pass's
    /// gradients, the pooler's and the head's parameters' among them.
    ///
    /// # Errors
    /// Those of [`forward`](Self::forward).
    ///
    /// # Panics
    /// As [`forward`](Self::forward).
    pub fn forward_checkpointed(
        &self,
        input: MultipleChoiceInput,
    ) -> Result<(Tensor<2>, CheckpointedPass), InputError> {
        self.run(input, checkpointed)
    }

    fn run<P>(
        &self,
        input: MultipleChoiceInput,
        encode: Encode<P>,
    ) -> Result<(Tensor<2>, P), InputError> {
        // An empty batch (from `from_tensors`) is named as such, before it could be a choice
        // count of 0.
        input.choices.check_shapes()?;
        input.check_choice_count()?;
        let MultipleChoiceInput { choices, n_choices } = input;
        let sep = self.sep_token_id as i64;
        let choices = global::or_default(choices, |ids| {
            global::after_question_end(ids, sep, "multiple choice")
        })?;
        let [rows, _] = choices.dims();
        let (choices, seed) = choices.with_fixed_dropout_seed();
        let (hidden, pass) = encode(&self.longformer, choices)?;
        let pooled = self
            .longformer
            .pooler
            .as_ref()
            .expect("LongformerForMultipleChoice is always built with a pooler")
            .forward(hidden);
        let pooled = seeded_dropout(&self.dropout, pooled, seed.child(HEAD_DROPOUT_SITE));
        let scores = self.classifier.forward(pooled);
        Ok((scores.reshape([rows / n_choices, n_choices]), pass))
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;

    use super::*;
    use crate::config::LongformerConfig;

    fn model(device: &Device) -> LongformerForMultipleChoice {
        LongformerHeadConfig::new(LongformerConfig::tiny(50))
            .init(device)
            .unwrap()
    }

    /// `<s> context </s></s> choice </s>`, `n` times.
    fn rows(n: usize, device: &Device) -> LongformerInput {
        let row = vec![0i64, 5, 2, 2, 7, 8, 2];
        LongformerInput::from_rows(&vec![row; n], None, None, 1, device)
    }

    /// The fields are public, so `new`'s check can be skipped: `forward` panicked in a reshape
    /// (3 rows, 2 choices) or divided by zero (0 choices).
    #[test]
    fn forward_checks_the_choice_count_of_an_input_built_by_hand() {
        let device = Device::flex();
        let model = model(&device);
        for (n_rows, n_choices) in [(3, 2), (2, 0)] {
            let input = MultipleChoiceInput {
                choices: rows(n_rows, &device),
                n_choices,
            };
            assert_eq!(
                model.forward(input).unwrap_err(),
                InputError::ChoiceCount {
                    rows: n_rows,
                    n_choices
                }
            );
        }
        let input = MultipleChoiceInput {
            choices: rows(4, &device),
            n_choices: 2,
        };
        assert_eq!(model.forward(input).unwrap().dims(), [2, 2]);
    }

    #[test]
    fn a_mask_of_the_wrong_shape_is_reported_as_given() {
        let device = Device::flex();
        let ids = || -> Tensor<3, Int> {
            Tensor::from_data(
                TensorData::new(vec![0i64, 5, 2, 2, 7, 2, 0, 6, 2, 2, 8, 2], [1, 2, 6]),
                &device,
            )
        };
        let mask = |shape: [usize; 3]| -> Tensor<3, Bool> {
            Tensor::from_data(
                TensorData::new(vec![true; shape.iter().product()], shape),
                &device,
            )
        };
        let err =
            MultipleChoiceInput::from_tensors(ids(), Some(mask([1, 2, 5])), None).unwrap_err();
        assert_eq!(
            err,
            InputError::ChoiceMaskShape {
                mask: "attention_mask",
                expected: [1, 2, 6],
                found: [1, 2, 5],
            }
        );
        assert_eq!(
            err.to_string(),
            "attention_mask has shape [1, 2, 5] but input_ids has shape [1, 2, 6]"
        );
        // Same number of rows, split differently: still the user's shape.
        let err =
            MultipleChoiceInput::from_tensors(ids(), None, Some(mask([2, 1, 6]))).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("global_attention_mask has shape [2, 1, 6]"),
            "{err}"
        );
        let input = MultipleChoiceInput::from_tensors(ids(), Some(mask([1, 2, 6])), None).unwrap();
        assert_eq!(model(&device).forward(input).unwrap().dims(), [1, 2]);
    }

    #[test]
    fn no_choices_is_an_empty_batch() {
        let device = Device::flex();
        let ids =
            Tensor::<3, Int>::from_data(TensorData::new(Vec::<i64>::new(), [1, 0, 6]), &device);
        let input = MultipleChoiceInput::from_tensors(ids, None, None).unwrap();
        assert_eq!(
            model(&device).forward(input).unwrap_err(),
            InputError::Empty([0, 6])
        );
    }
}
