//! [`LongformerEmbeddings`]: word + RoBERTa position + token-type embeddings, LayerNorm, dropout
//! (HF `LongformerEmbeddings`).

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::dropout::{DropoutSeed, seeded_dropout};

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
        let token_type_ids = token_type_ids.unwrap_or_else(|| input_ids.zeros_like());
        let x = lookup_padding_frozen(&self.word_embeddings, input_ids, self.pad_token_id)
            + lookup_padding_frozen(&self.position_embeddings, position_ids, self.pad_token_id)
            + self.token_type_embeddings.forward(token_type_ids);
        seeded_dropout(&self.dropout, self.layer_norm.forward(x), seed)
    }
}

/// `embedding.forward(ids)` with row `padding_idx` frozen as PyTorch's `nn.Embedding(...,
/// padding_idx)` freezes it, which HF's word and position embeddings are: the positions that read
/// that row pass it no gradient (other rows get theirs as usual). The values are the lookup's;
/// outside a recorded pass it is the plain lookup.
///
/// # Shapes
/// - ids: `[batch_size, seq_length]`
/// - output: `[batch_size, seq_length, d_model]`
fn lookup_padding_frozen(
    embedding: &Embedding,
    ids: Tensor<2, Int>,
    padding_idx: usize,
) -> Tensor<3> {
    let out = embedding.forward(ids.clone());
    if !embedding.weight.val().is_require_grad() {
        return out;
    }
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
    [batch_size, seq_length]: [usize; 2],
    pad_token_id: usize,
    device: &Device,
) -> Tensor<2, Int> {
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
    Tensor::from_data(TensorData::new(positions, [batch_size, seq_length]), device)
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
