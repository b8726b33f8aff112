//! [`LongformerEmbeddings`]: word + RoBERTa position + token-type embeddings, LayerNorm, dropout
//! (HF `LongformerEmbeddings`).
//!
//! - [`ops`]: [`EmbeddingLookupOps`], the lookup whose backward pass sums the gradient into
//!   the tables in parallel, by a plan made on the host from the ids (`plan`); `cpu`, `cube`,
//!   `autodiff`: its implementations.

mod autodiff;
#[cfg(any(feature = "flex", feature = "ndarray"))]
mod cpu;
#[cfg(any(feature = "wgpu", feature = "vulkan"))]
mod cube;
pub mod ops;
mod plan;

use burn::backend::Dispatch;
use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::attention::fused::fused_available;
use crate::dropout::{DropoutSeed, seeded_dropout};
use crate::norm::layer_norm;
use plan::RowSumPlan;

pub use ops::EmbeddingLookupOps;

/// Configuration of [`LongformerEmbeddings`].
#[derive(Config, Debug)]
pub struct LongformerEmbeddingsConfig {
    /// Rows of the word embedding.
    pub vocab_size: usize,
    /// Width of the embeddings (`d_model`).
    pub d_model: usize,
    /// Rows of the position embedding.
    pub max_position_embeddings: usize,
    /// Rows of the token-type embedding.
    pub type_vocab_size: usize,
    /// Padding id, also the position of padding tokens (`padding_idx`).
    pub pad_token_id: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Dropout after the LayerNorm.
    pub dropout: f64,
}

impl LongformerEmbeddingsConfig {
    /// Builds the embeddings with random weights.
    pub fn init(&self, device: &Device) -> LongformerEmbeddings {
        LongformerEmbeddings {
            word_embeddings: EmbeddingConfig::new(self.vocab_size, self.d_model).init(device),
            position_embeddings: EmbeddingConfig::new(self.max_position_embeddings, self.d_model)
                .init(device),
            token_type_embeddings: EmbeddingConfig::new(self.type_vocab_size, self.d_model)
                .init(device),
            layer_norm: LayerNormConfig::new(self.d_model)
                .with_epsilon(self.layer_norm_eps)
                .init(device),
            layer_norm_eps: self.layer_norm_eps,
            dropout: DropoutConfig::new(self.dropout).init(),
            pad_token_id: self.pad_token_id,
        }
    }
}

/// Token embeddings of a Longformer (RoBERTa layout).
#[derive(Module, Debug)]
pub struct LongformerEmbeddings {
    /// `[vocab_size, d_model]`.
    pub word_embeddings: Embedding,
    /// `[max_position_embeddings, d_model]`.
    pub position_embeddings: Embedding,
    /// `[type_vocab_size, d_model]`.
    pub token_type_embeddings: Embedding,
    /// Final normalization.
    pub layer_norm: LayerNorm,
    /// `layer_norm`'s epsilon (HF `layer_norm_eps`; Burn's `LayerNorm` keeps its own private).
    pub layer_norm_eps: f64,
    /// Final dropout.
    pub dropout: Dropout,
    /// Padding id.
    pub pad_token_id: usize,
}

impl LongformerEmbeddings {
    /// Embeds token ids; `seed` seeds the dropout (unread outside training).
    ///
    /// # Shapes
    /// - input_ids: `[batch_size, seq_length]`
    /// - token_type_ids: `[batch_size, seq_length]` (zeros when `None`)
    /// - output: `[batch_size, seq_length, d_model]`
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Option<Tensor<2, Int>>,
        seed: DropoutSeed,
    ) -> Tensor<3> {
        let position_ids = position_ids(input_ids.clone(), self.pad_token_id);
        self.forward_with_positions(input_ids, position_ids, token_type_ids, seed)
    }

    /// [`forward`](Self::forward) with the position ids given ([`position_ids_of`]).
    ///
    /// In a recorded pass the ids are read to the host, where the tables' gradients are planned
    /// (see [`EmbeddingLookupOps`]).
    ///
    /// # Shapes
    /// - input_ids, position_ids: `[batch_size, seq_length]`
    /// - token_type_ids: `[batch_size, seq_length]` (zeros when `None`)
    /// - output: `[batch_size, seq_length, d_model]`
    pub fn forward_with_positions(
        &self,
        input_ids: Tensor<2, Int>,
        position_ids: Tensor<2, Int>,
        token_type_ids: Option<Tensor<2, Int>>,
        seed: DropoutSeed,
    ) -> Tensor<3> {
        self.forward_with_host_ids(
            (input_ids, None),
            (position_ids, None),
            token_type_ids.map(|t| (t, None)),
            seed,
        )
    }

    /// [`forward_with_positions`](Self::forward_with_positions), each id tensor with its values
    /// on the host where the caller has them (row-major), else `None` (read when needed).
    pub(crate) fn forward_with_host_ids(
        &self,
        input_ids: (Tensor<2, Int>, Option<&[i64]>),
        position_ids: (Tensor<2, Int>, Option<&[i64]>),
        token_type_ids: Option<(Tensor<2, Int>, Option<&[i64]>)>,
        seed: DropoutSeed,
    ) -> Tensor<3> {
        let pad = Some(self.pad_token_id);
        let token_types = match token_type_ids {
            Some((ids, host)) => lookup(&self.token_type_embeddings, ids, host, None),
            None => {
                // All type 0: the ids are zeros on the host too.
                let ids = input_ids.0.zeros_like();
                let zeros = vec![0; ids.dims().iter().product()];
                lookup(&self.token_type_embeddings, ids, Some(&zeros), None)
            }
        };
        let x = lookup(&self.word_embeddings, input_ids.0, input_ids.1, pad)
            + lookup(
                &self.position_embeddings,
                position_ids.0,
                position_ids.1,
                pad,
            )
            + token_types;
        let x = layer_norm(&self.layer_norm, self.layer_norm_eps, x);
        seeded_dropout(&self.dropout, x, seed)
    }
}

/// `embedding.forward(ids)`, with row `frozen` passing no gradient as PyTorch's
/// `nn.Embedding(..., padding_idx)` freezes it, which HF's word and position embeddings are
/// (the positions that read that row pass it none; other rows get theirs as usual).
///
/// In a recorded pass the table's gradient comes from [`EmbeddingLookupOps`]: summed in
/// parallel by a [`RowSumPlan`] of `host_ids` (the values of `ids`, row-major; read from the
/// device when `None`), where Burn's embedding backward walks every token once per column.
/// Outside a recorded pass it is the plain lookup.
///
/// # Shapes
/// - ids: `[batch_size, seq_length]`
/// - output: `[batch_size, seq_length, d_model]`
fn lookup(
    embedding: &Embedding,
    ids: Tensor<2, Int>,
    host_ids: Option<&[i64]>,
    frozen: Option<usize>,
) -> Tensor<3> {
    let weight = embedding.weight.val();
    let device = ids.device();
    if !weight.is_require_grad() {
        return embedding.forward(ids);
    }
    if !fused_available(&device) {
        return lookup_padding_frozen(embedding, ids, frozen);
    }
    let read;
    let host_ids = match host_ids {
        Some(ids) => ids,
        None => {
            read = ids.clone().into_data().iter::<i64>().collect::<Vec<_>>();
            &read
        }
    };
    let plan = RowSumPlan::new(host_ids, frozen.map(|f| f as i64));
    if plan.is_empty() {
        return lookup_padding_frozen(embedding, ids, frozen);
    }
    let [b, l] = ids.dims();
    let [_, d] = weight.dims();
    let int = |values: Vec<i64>| {
        let n = values.len();
        Tensor::<1, Int>::from_data(TensorData::new(values, [n]), &device).into_dispatch()
    };
    let chunk_rows = (0..plan.chunks() as i64).collect();
    let out = <Dispatch as EmbeddingLookupOps>::embedding_lookup(
        weight.into_dispatch(),
        ids.reshape([b * l]).into_dispatch(),
        int(plan.order),
        int(plan.chunk_starts),
        int(chunk_rows),
        int(plan.segment_starts),
        int(plan.targets),
    );
    Tensor::<2>::from_dispatch(out).reshape([b, l, d])
}

/// [`lookup`] through Burn's embedding: the rows that read `frozen` pass their gradient nowhere
/// (for inputs with no other tokens, and devices without [`EmbeddingLookupOps`]).
fn lookup_padding_frozen(
    embedding: &Embedding,
    ids: Tensor<2, Int>,
    frozen: Option<usize>,
) -> Tensor<3> {
    let out = embedding.forward(ids.clone());
    let Some(padding_idx) = frozen else {
        return out;
    };
    let reads_padding_row = ids
        .equal_elem(padding_idx as i64)
        .unsqueeze_dim::<3>(2)
        .expand(out.dims());
    out.clone().mask_where(reads_padding_row, out.detach())
}

/// RoBERTa position ids: real tokens count from `pad_token_id + 1` in order, padding tokens get
/// `pad_token_id`. Works for left and right padding alike, since it counts non-pad ids.
///
/// Counted on the host (the ids are small; [`LongformerModel`] counts them from the ids its input
/// checks read there, with [`position_ids_of`]), not with Burn's `cumsum`: on the GPU backends
/// that is a kernel whose every element sums all those before it, and on the software GPU it
/// repeats its value at index 65,534 from 65,535 on (Burn 0.22.1).
///
/// # Shapes
/// - input_ids: `[batch_size, seq_length]`
/// - output: `[batch_size, seq_length]`
///
/// [`LongformerModel`]: crate::LongformerModel
pub fn position_ids(input_ids: Tensor<2, Int>, pad_token_id: usize) -> Tensor<2, Int> {
    let dims = input_ids.dims();
    let device = input_ids.device();
    let ids: Vec<i64> = input_ids.into_data().iter::<i64>().collect();
    position_ids_of(&ids, dims, pad_token_id, &device)
}

/// [`position_ids`] of ids already on the host, `[batch_size, seq_length]` in row-major order.
pub fn position_ids_of(
    ids: &[i64],
    dims: [usize; 2],
    pad_token_id: usize,
    device: &Device,
) -> Tensor<2, Int> {
    Tensor::from_data(
        TensorData::new(host_position_ids(ids, dims, pad_token_id), dims),
        device,
    )
}

/// The values of [`position_ids_of`], on the host (row-major).
pub(crate) fn host_position_ids(
    ids: &[i64],
    [_, seq_length]: [usize; 2],
    pad_token_id: usize,
) -> Vec<i64> {
    let pad = pad_token_id as i64;
    let mut positions = Vec::with_capacity(ids.len());
    for row in ids.chunks(seq_length.max(1)) {
        let mut next = pad;
        positions.extend(row.iter().map(|&id| {
            if id == pad {
                pad
            } else {
                next += 1;
                next
            }
        }));
    }
    positions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every backend counts past 65,535 tokens (where Burn's `cumsum` on the software GPU
    /// stops counting).
    #[test]
    fn positions_count_past_65535_on_every_backend() {
        let n = 70_000usize;
        let ids: Vec<i64> = (0..2 * n)
            .map(|i| if i % n < 3 || i == 2 * n - 1 { 1 } else { 5 })
            .collect();
        for device in crate::test_devices::devices() {
            let ids = Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [2, n]), &device);
            let pos: Vec<i64> = position_ids(ids, 1).into_data().iter::<i64>().collect();
            // Row 0: three pads, then 2, 3, ...; row 1 the same but its last token a pad.
            for (i, &p) in pos.iter().enumerate() {
                let (row, t) = (i / n, i % n);
                let expected = if t < 3 || (row == 1 && t == n - 1) {
                    1
                } else {
                    t as i64 - 1
                };
                assert_eq!(p, expected, "{device:?}: row {row}, token {t}");
            }
        }
    }

    #[test]
    fn positions_skip_padding_on_either_side() {
        let device = Device::default();
        let ids = Tensor::<2, Int>::from_data(
            TensorData::new(vec![0i64, 5, 6, 2, 1, 1, 1, 1, 0, 7, 2, 1], [2, 6]),
            &device,
        );
        let pos: Vec<i64> = position_ids(ids, 1).into_data().iter::<i64>().collect();
        assert_eq!(pos, vec![2, 3, 4, 5, 1, 1, 1, 1, 2, 3, 4, 1]);
    }
}

#[cfg(test)]
mod lookup_tests;
