//! [`WikiHopModel`]: a Longformer encoder scoring the candidates of WikiHop examples.
//!
//! The head is the paper's (and the original `wikihop.py`'s): `Linear(hidden, 1, bias=False)`
//! applied to the final hidden state of each `[ent]` token. An example split into several chunks
//! combines its chunks' candidate logits ([`Combine`]); the loss is the cross-entropy of the
//! answer over the example's real candidates, averaged over examples.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use longformer_data::WikiHopBatch;
use longformer_model::init::draw_lazy_params;
use longformer_model::precision::to_f32;
use longformer_model::{
    CheckpointedPass, DropoutSeed, InputError, LongformerConfig, LongformerInput, LongformerModel,
};
use serde::{Deserialize, Serialize};

/// Logit given to padded candidates: finite (no NaN in the softmax's gradient), and far below
/// any real logit so that its probability is exactly 0 in f32.
pub const PADDED_CANDIDATE_LOGIT: f32 = -1e9;

/// How the candidate logits of an example's chunks become the example's logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Combine {
    /// Mean over the chunks (the paper, Appendix D).
    #[default]
    Mean,
    /// Sum over the chunks (the original `wikihop.py`).
    Sum,
}

/// Longformer + the WikiHop answer-scoring head.
#[derive(Module, Debug)]
pub struct WikiHopModel {
    /// The encoder (HF `LongformerModel`, pooler unused).
    pub longformer: LongformerModel,
    /// `hidden → 1`, no bias; scores each `[ent]` token.
    pub answer_score: Linear,
}

/// Candidate scores of the examples of a batch.
#[derive(Debug, Clone)]
pub struct WikiHopOutput {
    /// Mean cross-entropy over the examples (scalar, `[1]`).
    pub loss: Tensor<1>,
    /// `[examples, max_candidates]`, [`PADDED_CANDIDATE_LOGIT`] on padded candidates.
    pub logits: Tensor<2>,
    /// `[examples]`, index of the answer among each example's candidates.
    pub answers: Tensor<1, Int>,
    /// The example ids, in row order.
    pub ids: Vec<String>,
}

/// Which rows (chunks) of a [`WikiHopBatch`] belong to which example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExampleRows {
    /// Example ids, in order of their first chunk.
    pub ids: Vec<String>,
    /// For each example, its rows in the batch.
    pub rows: Vec<Vec<usize>>,
}

/// The indices of each run of consecutive equal keys: `[a, a, b, a]` → `[[0, 1], [2], [3]]`.
pub fn consecutive_runs<K: PartialEq>(keys: impl IntoIterator<Item = K>) -> Vec<Vec<usize>> {
    let mut runs: Vec<Vec<usize>> = Vec::new();
    let mut last: Option<K> = None;
    for (i, key) in keys.into_iter().enumerate() {
        match (&last, runs.last_mut()) {
            (Some(previous), Some(run)) if *previous == key => run.push(i),
            _ => runs.push(vec![i]),
        }
        last = Some(key);
    }
    runs
}

impl ExampleRows {
    /// Groups consecutive rows with the same example id.
    pub fn of(batch: &WikiHopBatch) -> Self {
        let rows = consecutive_runs(batch.ids.iter());
        let ids = rows.iter().map(|r| batch.ids[r[0]].clone()).collect();
        Self { ids, rows }
    }

    /// `[examples, chunks]` weights that turn chunk logits into example logits.
    fn combination(&self, chunks: usize, combine: Combine, device: &Device) -> Tensor<2> {
        let mut weights = vec![0.0f32; self.rows.len() * chunks];
        for (example, rows) in self.rows.iter().enumerate() {
            let weight = match combine {
                Combine::Mean => 1.0 / rows.len() as f32,
                Combine::Sum => 1.0,
            };
            for &row in rows {
                weights[example * chunks + row] = weight;
            }
        }
        Tensor::from_data(TensorData::new(weights, [self.rows.len(), chunks]), device)
    }

    /// The first row of each example.
    fn first_rows(&self, device: &Device) -> Tensor<1, Int> {
        let first: Vec<i64> = self.rows.iter().map(|r| r[0] as i64).collect();
        Tensor::from_data(TensorData::new(first, [self.rows.len()]), device)
    }
}

impl WikiHopModel {
    /// A randomly initialized head on top of `longformer`.
    ///
    /// Burn draws random weights lazily, at their first use; they are drawn here instead, so
    /// that a seed set just before this call fixes them whatever runs later (on any thread).
    pub fn new(longformer: LongformerModel, hidden_size: usize, device: &Device) -> Self {
        let answer_score = LinearConfig::new(hidden_size, 1)
            .with_bias(false)
            .init(device);
        let model = Self {
            longformer,
            answer_score,
        };
        draw_lazy_params(&model);
        model
    }

    /// A random-weight model of this configuration (no pooler: WikiHop does not use it).
    pub fn init(config: &LongformerConfig, device: &Device) -> Self {
        Self::new(
            config.init_with_pooler(false, device),
            config.hidden_size,
            device,
        )
    }

    /// The candidate logit of every chunk, or the encoder's error for a batch it cannot take
    /// (a token id outside the vocabulary, chunks longer than the model's positions). A training
    /// pass takes its dropout masks from `dropout_seed`, or without one from the device's
    /// generator ([`LongformerInput::with_dropout_seed`]).
    ///
    /// # Shapes
    /// - batch: `[chunks, seq_length]` tokens, `[chunks, max_candidates]` candidate positions
    /// - output: `[chunks, max_candidates]` (padded candidates hold arbitrary values)
    pub fn chunk_logits(
        &self,
        batch: &WikiHopBatch,
        dropout_seed: Option<DropoutSeed>,
    ) -> Result<Tensor<2>, InputError> {
        let input = encoder_input(batch, dropout_seed);
        let hidden = self.longformer.try_forward(input)?.last_hidden_state;
        Ok(self.entity_logits(hidden, batch))
    }

    /// The candidate logit of every chunk from the encoder's output.
    ///
    /// # Shapes
    /// - hidden: `[chunks, seq_length, d_model]`
    /// - output: `[chunks, max_candidates]`
    fn entity_logits(&self, hidden: Tensor<3>, batch: &WikiHopBatch) -> Tensor<2> {
        let [chunks, _, d_model] = hidden.dims();
        let [_, max_candidates] = batch.candidate_positions.dims();
        let positions = batch
            .candidate_positions
            .clone()
            .reshape([chunks, max_candidates, 1])
            .expand([chunks, max_candidates, d_model]);
        let entities = hidden.gather(1, positions);
        self.answer_score
            .forward(entities)
            .reshape([chunks, max_candidates])
    }

    /// [`try_forward`](Self::try_forward) for batches known to fit the model.
    ///
    /// # Panics
    /// On batches `try_forward` rejects, with its message.
    pub fn forward(&self, batch: &WikiHopBatch, combine: Combine) -> WikiHopOutput {
        self.try_forward(batch, combine)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Example logits and the loss of a batch whose chunks of one example are consecutive
    /// (as [`longformer_data::prepare_file`] and the training loader produce them), or the
    /// encoder's error for a batch it cannot take.
    ///
    /// # Shapes
    /// - output.logits: `[examples, max_candidates]`
    pub fn try_forward(
        &self,
        batch: &WikiHopBatch,
        combine: Combine,
    ) -> Result<WikiHopOutput, InputError> {
        self.try_forward_seeded(batch, combine, None)
    }

    /// [`try_forward`](Self::try_forward), a training pass taking its dropout masks from
    /// `dropout_seed` (see [`chunk_logits`](Self::chunk_logits)).
    pub fn try_forward_seeded(
        &self,
        batch: &WikiHopBatch,
        combine: Combine,
        dropout_seed: Option<DropoutSeed>,
    ) -> Result<WikiHopOutput, InputError> {
        let chunk_logits = self.chunk_logits(batch, dropout_seed)?;
        Ok(output(chunk_logits, batch, combine))
    }

    /// [`try_forward_seeded`](Self::try_forward_seeded) with activation checkpointing (see
    /// [`LongformerModel::try_forward_checkpointed`]): the encoder keeps only its layers'
    /// inputs. Back-propagate with `pass.backward(&self.longformer, output.loss.backward())`,
    /// which recomputes the layers one at a time; the gradients are those of the recorded pass.
    pub fn try_forward_checkpointed(
        &self,
        batch: &WikiHopBatch,
        combine: Combine,
        dropout_seed: Option<DropoutSeed>,
    ) -> Result<(WikiHopOutput, CheckpointedPass), InputError> {
        let pass = self
            .longformer
            .try_forward_checkpointed(encoder_input(batch, dropout_seed))?;
        let chunk_logits = self.entity_logits(pass.last_hidden_state.clone(), batch);
        Ok((output(chunk_logits, batch, combine), pass))
    }
}

/// The encoder's input for `batch`, with its dropout seed.
fn encoder_input(batch: &WikiHopBatch, dropout_seed: Option<DropoutSeed>) -> LongformerInput {
    let mut input = LongformerInput::new(batch.input_ids.clone())
        .with_attention_mask(batch.attention_mask.clone())
        .with_global_attention_mask(batch.global_attention_mask.clone());
    input.dropout_seed = dropout_seed;
    input
}

/// Example logits and loss from the chunks' candidate logits (`[chunks, max_candidates]`).
fn output(chunk_logits: Tensor<2>, batch: &WikiHopBatch, combine: Combine) -> WikiHopOutput {
    let device = batch.input_ids.device();
    let examples = ExampleRows::of(batch);
    // The combination and the loss in f32, whatever the model's dtype.
    let chunk_logits = to_f32(chunk_logits);
    let [chunks, _] = chunk_logits.dims();
    let logits = examples
        .combination(chunks, combine, &device)
        .matmul(chunk_logits);
    let first = examples.first_rows(&device);
    let padded: Tensor<2, Bool> = batch
        .candidate_mask
        .clone()
        .int() // through Int: flex 0.22.1 rejects `bool_not` on a selected Bool tensor
        .select(0, first.clone())
        .equal_elem(0);
    let logits = logits.mask_fill(padded, PADDED_CANDIDATE_LOGIT);
    let answers = batch.answer_index.clone().select(0, first);
    let loss = cross_entropy(logits.clone(), answers.clone());
    WikiHopOutput {
        loss,
        logits,
        answers,
        ids: examples.ids,
    }
}

/// Mean over rows of `-log softmax(logits)[answer]`.
///
/// # Shapes
/// - logits: `[rows, classes]`, answers: `[rows]`; output `[1]`
pub fn cross_entropy(logits: Tensor<2>, answers: Tensor<1, Int>) -> Tensor<1> {
    let [rows, _] = logits.dims();
    let log_probs = log_softmax(logits, 1);
    let picked = log_probs.gather(1, answers.reshape([rows, 1]));
    picked.mean().neg()
}

#[cfg(test)]
mod tests {
    use super::consecutive_runs;

    #[test]
    fn runs_split_only_between_different_neighbours() {
        assert_eq!(
            consecutive_runs(["a", "a", "b", "a"]),
            vec![vec![0, 1], vec![2], vec![3]]
        );
        assert!(consecutive_runs(Vec::<u8>::new()).is_empty());
    }
}
