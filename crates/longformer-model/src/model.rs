//! [`LongformerModel`]: embeddings, encoder and pooler (HF `LongformerModel`).

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::attention::fused::fused_available;
use crate::attention::{AttentionMasks, AttentionProbs, LocalAttentionKernel};
use crate::config::LongformerConfig;
use crate::dropout::DropoutSeed;
use crate::embedding::{LongformerEmbeddings, LongformerEmbeddingsConfig, host_position_ids};
use crate::encoder::LongformerEncoder;
use crate::error::InputError;
use crate::init::hf_initialization;
use crate::input::{AttentionLayout, LongformerInput};
use crate::layer::LongformerLayerConfig;
use crate::pooler::LongformerPooler;

/// The Longformer encoder.
#[derive(Module, Debug)]
pub struct LongformerModel {
    /// Token, position and type embeddings.
    pub embeddings: LongformerEmbeddings,
    /// The layers.
    pub encoder: LongformerEncoder,
    /// `tanh(dense(first token))`; absent in checkpoints saved without it (e.g. from MLM heads).
    pub pooler: Option<LongformerPooler>,
    /// Rows of the word embedding.
    pub vocab_size: usize,
    /// Most tokens a row may hold, not counting `pad_token_id` (HF's limit: the last position,
    /// `pad_token_id + max_sequence_length`, is the last row of the position embedding).
    pub max_sequence_length: usize,
}

/// What [`LongformerModel::forward`] returns.
#[derive(Debug, Clone)]
pub struct LongformerOutput {
    /// Final hidden states, `[batch_size, seq_length, d_model]`.
    pub last_hidden_state: Tensor<3>,
    /// Pooled first token, `[batch_size, d_model]`, when the model has a pooler.
    pub pooler_output: Option<Tensor<2>>,
    /// Per-layer attention probabilities, when asked for with [`LongformerModel::forward_with_attentions`]
    /// or [`OutputOptions::attentions`]; empty otherwise.
    pub attentions: Vec<AttentionProbs>,
    /// HF's `hidden_states` (`output_hidden_states=True`), when asked for with
    /// [`LongformerModel::forward_with_hidden_states`] or [`OutputOptions::hidden_states`]; empty
    /// otherwise. `num_hidden_layers + 1` tensors, each `[batch_size, seq_length, d_model]`: the
    /// embedding output, then each layer's output in order (the last equals
    /// `last_hidden_state`). Like HF's, they hold no internal padding to the window: `seq_length`
    /// is the input's.
    pub hidden_states: Vec<Tensor<3>>,
}

/// Which optional outputs [`LongformerModel::try_forward_with`] collects (HF's
/// `output_attentions` and `output_hidden_states`). The default asks for neither, which is
/// [`try_forward`](LongformerModel::try_forward): what is not asked for is neither computed nor kept.
///
/// ```
/// # use longformer_model::OutputOptions;
/// let options = OutputOptions::default().with_hidden_states(true);
/// assert!(options.hidden_states && !options.attentions);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputOptions {
    /// Fill [`LongformerOutput::attentions`].
    pub attentions: bool,
    /// Fill [`LongformerOutput::hidden_states`].
    pub hidden_states: bool,
}

impl OutputOptions {
    /// Sets [`attentions`](Self::attentions).
    pub fn with_attentions(mut self, attentions: bool) -> Self {
        self.attentions = attentions;
        self
    }

    /// Sets [`hidden_states`](Self::hidden_states).
    pub fn with_hidden_states(mut self, hidden_states: bool) -> Self {
        self.hidden_states = hidden_states;
        self
    }
}

impl LongformerConfig {
    /// Builds a model with random weights (and a pooler).
    ///
    /// # Panics
    /// If the config is invalid, with [`validate`](LongformerConfig::validate)'s message
    /// (e.g. "invalid config: attention_window has 1 entries but num_hidden_layers is 2"); call
    /// it first for an error instead.
    pub fn init(&self, device: &Device) -> LongformerModel {
        self.init_with_pooler(true, device)
    }

    /// Builds a model with random weights, with or without the pooler.
    ///
    /// # Panics
    /// If the config is invalid, with [`validate`](LongformerConfig::validate)'s message; call
    /// it first for an error instead.
    pub fn init_with_pooler(&self, pooler: bool, device: &Device) -> LongformerModel {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        let embeddings = LongformerEmbeddingsConfig::new(
            self.vocab_size,
            self.hidden_size,
            self.max_position_embeddings,
            self.type_vocab_size,
            self.pad_token_id,
            self.layer_norm_eps,
            self.hidden_dropout_prob,
        )
        .init(device);
        let layer = (0..self.num_hidden_layers)
            .map(|i| {
                LongformerLayerConfig::new(
                    self.hidden_size,
                    self.num_attention_heads,
                    self.intermediate_size,
                    self.window(i),
                    self.hidden_act,
                    self.layer_norm_eps,
                    self.hidden_dropout_prob,
                    self.attention_probs_dropout_prob,
                )
                .with_head_dilation(self.window_pattern(i).dilation)
                .with_causal(self.autoregressive)
                .with_kernel(self.local_attention_kernel)
                .init(device)
            })
            .collect();
        let model = LongformerModel {
            embeddings,
            encoder: LongformerEncoder { layer },
            pooler: pooler.then(|| LongformerPooler::init(self.hidden_size, device)),
            vocab_size: self.vocab_size,
            max_sequence_length: self.max_sequence_length(),
        };
        hf_initialization(model, self.initializer_range, self.pad_token_id)
    }
}

/// A checked input, ready for the embeddings and the encoder.
#[derive(Debug)]
pub(crate) struct PreparedInput {
    /// `[batch_size, seq_length]`
    pub(crate) input_ids: Tensor<2, Int>,
    /// `[batch_size, seq_length]`, counted on the host (see [`host_position_ids`]).
    pub(crate) position_ids: Tensor<2, Int>,
    /// `[batch_size, seq_length]`, or all zero when absent.
    pub(crate) token_type_ids: Option<Tensor<2, Int>>,
    /// The three id tensors' values, on the host (the input checks read them there).
    pub(crate) host: HostIds,
    /// The attention masks of every layer.
    pub(crate) masks: AttentionMasks,
    /// The pass's dropout seed.
    pub(crate) seed: DropoutSeed,
}

/// Token ids, position ids and token type ids on the host, row-major.
#[derive(Debug, Clone)]
pub(crate) struct HostIds {
    pub(crate) input_ids: Vec<i64>,
    pub(crate) position_ids: Vec<i64>,
    /// `None` when the input has none.
    pub(crate) token_type_ids: Option<Vec<i64>>,
}

impl PreparedInput {
    /// The seed the encoder gives its layers (layer `i` takes `.child(i)`).
    pub(crate) fn encoder_seed(&self) -> DropoutSeed {
        self.seed.child(ENCODER_SITE)
    }
}

/// The dropout sites of the model, children of the forward pass's seed; task heads use
/// [`HEAD_DROPOUT_SITE`].
const EMBEDDINGS_SITE: u64 = 0;
const ENCODER_SITE: u64 = 1;
/// The dropout site of a task head's own dropout, a child of the forward pass's seed.
pub(crate) const HEAD_DROPOUT_SITE: u64 = 2;

impl LongformerModel {
    /// The same model (the same parameters) with every layer's local attention computed by
    /// `kernel` (see [`LocalAttentionKernel`]): for a model already built or loaded, what
    /// [`LongformerConfig::with_local_attention_kernel`] chooses before. A task head's encoder
    /// is its `longformer` field.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use burn::tensor::Device;
    /// use longformer_model::{LocalAttentionKernel, load_pretrained};
    ///
    /// let model = load_pretrained("path/to/longformer-base-4096", &Device::flex())?
    ///     .with_local_attention_kernel(LocalAttentionKernel::Reference); // the band path
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_local_attention_kernel(mut self, kernel: LocalAttentionKernel) -> Self {
        for layer in &mut self.encoder.layer {
            layer.attention.self_attn.kernel = kernel;
        }
        self
    }

    /// Encodes a batch.
    ///
    /// # Shapes
    /// - input: `[batch_size, seq_length]` ids and masks
    /// - output.last_hidden_state: `[batch_size, seq_length, d_model]`
    ///
    /// # Panics
    /// On inputs [`try_forward`](Self::try_forward) rejects (too long, bad mask shapes, ids
    /// or token types outside the vocabulary), with its message.
    pub fn forward(&self, input: LongformerInput) -> LongformerOutput {
        self.try_forward(input).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`forward`](Self::forward), returning an error for invalid input instead of panicking.
    ///
    /// # Errors
    /// Inputs [`check`](Self::check) rejects.
    pub fn try_forward(&self, input: LongformerInput) -> Result<LongformerOutput, InputError> {
        self.try_forward_with(input, OutputOptions::default())
    }

    /// [`try_forward`](Self::try_forward), also returning every layer's attention probabilities.
    pub fn forward_with_attentions(
        &self,
        input: LongformerInput,
    ) -> Result<LongformerOutput, InputError> {
        self.try_forward_with(input, OutputOptions::default().with_attentions(true))
    }

    /// [`try_forward`](Self::try_forward), also returning the hidden states (HF's
    /// `output_hidden_states=True`) in [`LongformerOutput::hidden_states`]: the embedding
    /// output, then every layer's output, `num_hidden_layers + 1` tensors of
    /// `[batch_size, seq_length, d_model]`.
    pub fn forward_with_hidden_states(
        &self,
        input: LongformerInput,
    ) -> Result<LongformerOutput, InputError> {
        self.try_forward_with(input, OutputOptions::default().with_hidden_states(true))
    }

    /// [`try_forward`](Self::try_forward), collecting the optional outputs `options` asks for
    /// ([`LongformerOutput::attentions`], [`LongformerOutput::hidden_states`]).
    ///
    /// # Errors
    /// Inputs [`check`](Self::check) rejects.
    pub fn try_forward_with(
        &self,
        input: LongformerInput,
        options: OutputOptions,
    ) -> Result<LongformerOutput, InputError> {
        let prepared = self.prepare(input)?;
        let hidden = self.embed(&prepared);
        let (last_hidden_state, attentions, hidden_states) = self.encoder.forward_collecting(
            hidden,
            &prepared.masks,
            prepared.encoder_seed(),
            options.attentions,
            options.hidden_states,
        );
        let pooler_output = self
            .pooler
            .as_ref()
            .map(|p| p.forward(last_hidden_state.clone()));
        Ok(LongformerOutput {
            last_hidden_state,
            pooler_output,
            attentions,
            hidden_states,
        })
    }

    /// The checked input, its attention masks, position ids and dropout seed: what every
    /// forward pass starts from.
    pub(crate) fn prepare(&self, input: LongformerInput) -> Result<PreparedInput, InputError> {
        let (input_ids, token_type_ids) = self.checked_ids(&input)?;
        let device = input.input_ids.device();
        let masks = AttentionMasks::new(AttentionLayout::from_input(&input), &device);
        let seed = input.dropout_seed_or_draw();
        let host_positions =
            host_position_ids(&input_ids, input.dims(), self.embeddings.pad_token_id);
        let position_ids = Tensor::from_data(
            TensorData::new(host_positions.clone(), input.dims()),
            &device,
        );
        Ok(PreparedInput {
            input_ids: input.input_ids,
            position_ids,
            token_type_ids: input.token_type_ids,
            host: HostIds {
                input_ids,
                position_ids: host_positions,
                token_type_ids,
            },
            masks,
            seed,
        })
    }

    /// The embeddings of a prepared input.
    ///
    /// # Shapes
    /// - output: `[batch_size, seq_length, d_model]`
    pub(crate) fn embed(&self, input: &PreparedInput) -> Tensor<3> {
        let host = &input.host;
        self.embeddings.forward_with_host_ids(
            (input.input_ids.clone(), Some(&host.input_ids)),
            (input.position_ids.clone(), Some(&host.position_ids)),
            input
                .token_type_ids
                .clone()
                .map(|t| (t, host.token_type_ids.as_deref())),
            input.seed.child(EMBEDDINGS_SITE),
        )
    }

    /// Checks shapes, length, token ids and token type ids before any computation.
    ///
    /// The length limit is HF's: a row may hold at most `max_sequence_length` ids other than
    /// `pad_token_id` (only those take a position), however much explicit padding follows.
    ///
    /// # Errors
    /// [`InputError`]: empty input, a mask or `token_type_ids` of the wrong shape, a row too
    /// long, a token id outside the vocabulary, a token type id outside `type_vocab_size`, or
    /// [`LocalAttentionKernel::Fused`] on a device without the fused op.
    pub fn check(&self, input: &LongformerInput) -> Result<(), InputError> {
        self.checked_ids(input).map(|_| ())
    }

    /// [`check`](Self::check), returning the token ids and token type ids (when given) it read
    /// to the host (`[batch_size, seq_length]`, row-major).
    fn checked_ids(
        &self,
        input: &LongformerInput,
    ) -> Result<(Vec<i64>, Option<Vec<i64>>), InputError> {
        input.check_shapes()?;
        let device = input.input_ids.device();
        let forced = self
            .encoder
            .layer
            .iter()
            .any(|layer| layer.attention.self_attn.kernel == LocalAttentionKernel::Fused);
        if forced && !fused_available(&device) {
            return Err(InputError::NoFusedKernel {
                device: format!("{device:?}"),
            });
        }
        let [_, seq_length] = input.dims();
        let ids: Vec<i64> = input.input_ids.clone().into_data().iter::<i64>().collect();
        let pad = self.embeddings.pad_token_id as i64;
        for (row, row_ids) in ids.chunks(seq_length).enumerate() {
            let length = row_ids.iter().filter(|&&id| id != pad).count();
            if length > self.max_sequence_length {
                return Err(InputError::TooLong {
                    row,
                    length,
                    max: self.max_sequence_length,
                });
            }
        }
        if let Some((i, &id)) = ids
            .iter()
            .enumerate()
            .find(|(_, id)| **id < 0 || **id as usize >= self.vocab_size)
        {
            return Err(InputError::TokenOutOfRange {
                row: i / seq_length,
                col: i % seq_length,
                id,
                vocab_size: self.vocab_size,
            });
        }
        let types = input
            .token_type_ids
            .as_ref()
            .map(|t| t.clone().into_data().iter::<i64>().collect::<Vec<_>>());
        if let Some(types) = &types {
            let [type_vocab_size, _] = self.embeddings.token_type_embeddings.weight.dims();
            if let Some((i, &id)) = types
                .iter()
                .enumerate()
                .find(|(_, id)| **id < 0 || **id as usize >= type_vocab_size)
            {
                return Err(InputError::TokenTypeOutOfRange {
                    row: i / seq_length,
                    col: i % seq_length,
                    id,
                    type_vocab_size,
                });
            }
        }
        Ok((ids, types))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AttentionWindow;

    /// A per-layer window list shorter than the layers: `init_with_pooler` indexed past its end.
    fn short_window_list() -> LongformerConfig {
        LongformerConfig::tiny(50).with_attention_window(AttentionWindow::PerLayer(vec![4]))
    }

    #[test]
    #[should_panic(
        expected = "invalid config: attention_window has 1 entries but num_hidden_layers is 2"
    )]
    fn init_panics_with_the_validation_message() {
        short_window_list().init(&Device::flex());
    }

    #[test]
    #[should_panic(
        expected = "invalid config: attention_window has 1 entries but num_hidden_layers is 2"
    )]
    fn init_with_pooler_panics_with_the_validation_message() {
        short_window_list().init_with_pooler(false, &Device::flex());
    }
}
