//! [`LongformerForMaskedLM::fill_mask`]: the most probable tokens at every mask position (what
//! HF's `fill-mask` pipeline reports), for the command line and quick checks.

use burn::tensor::activation::softmax;
use burn::tensor::{Int, Tensor, TensorData};

use crate::error::InputError;
use crate::heads::masked_lm::LongformerForMaskedLM;
use crate::input::LongformerInput;

/// The best candidates for one mask token.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskFill {
    /// Batch row of the mask token.
    pub row: usize,
    /// Its position in the row.
    pub position: usize,
    /// `(token_id, probability)`, most probable first; probabilities are a softmax over the
    /// whole vocabulary.
    pub candidates: Vec<(usize, f32)>,
}

impl LongformerForMaskedLM {
    /// The `top_k` most probable tokens at every position holding `mask_token_id`, in row-major
    /// order.
    ///
    /// # Shapes
    /// - input: `[batch_size, seq_length]`
    ///
    /// # Errors
    /// [`InputError::NoMaskToken`] when no token is `mask_token_id`, and inputs
    /// [`forward`](Self::forward) rejects.
    pub fn fill_mask(
        &self,
        input: LongformerInput,
        mask_token_id: i64,
        top_k: usize,
    ) -> Result<Vec<MaskFill>, InputError> {
        let input_ids = input.input_ids.clone();
        if !input_ids
            .clone()
            .into_data()
            .iter::<i64>()
            .any(|id| id == mask_token_id)
        {
            return Err(InputError::NoMaskToken { mask_token_id });
        }
        mask_fills(self.forward(input)?, &input_ids, mask_token_id, top_k)
    }
}

/// [`LongformerForMaskedLM::fill_mask`] from logits already computed.
///
/// # Shapes
/// - logits: `[batch_size, seq_length, vocab_size]`
/// - input_ids: `[batch_size, seq_length]`
///
/// # Errors
/// [`InputError::NoMaskToken`] when no token is `mask_token_id`; [`InputError::MaskShape`] when
/// `input_ids` is not `[batch_size, seq_length]` of `logits`.
pub fn mask_fills(
    logits: Tensor<3>,
    input_ids: &Tensor<2, Int>,
    mask_token_id: i64,
    top_k: usize,
) -> Result<Vec<MaskFill>, InputError> {
    let [batch_size, seq_length, vocab_size] = logits.dims();
    if input_ids.dims() != [batch_size, seq_length] {
        return Err(InputError::MaskShape {
            mask: "input_ids of the logits",
            expected: [batch_size, seq_length],
            found: input_ids.dims(),
        });
    }
    let positions: Vec<usize> = input_ids
        .clone()
        .into_data()
        .iter::<i64>()
        .enumerate()
        .filter(|(_, id)| *id == mask_token_id)
        .map(|(i, _)| i)
        .collect();
    if positions.is_empty() {
        return Err(InputError::NoMaskToken { mask_token_id });
    }
    let index: Tensor<1, Int> = Tensor::from_data(
        TensorData::new(
            positions.iter().map(|&i| i as i64).collect::<Vec<_>>(),
            [positions.len()],
        ),
        &logits.device(),
    );
    let probs = softmax(
        logits
            .reshape([batch_size * seq_length, vocab_size])
            .select(0, index),
        1,
    );
    let probs: Vec<f32> = probs.into_data().iter::<f32>().collect();
    Ok(positions
        .iter()
        .zip(probs.chunks(vocab_size))
        .map(|(&flat, row_probs)| MaskFill {
            row: flat / seq_length,
            position: flat % seq_length,
            candidates: top(row_probs, top_k),
        })
        .collect())
}

/// The `k` largest values with their indices, largest first (ties: lower index first).
fn top(values: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut indexed: Vec<(usize, f32)> = values.iter().copied().enumerate().collect();
    indexed.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    indexed.truncate(k);
    indexed
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;
    use crate::config::LongformerConfig;
    use crate::heads::config::LongformerHeadConfig;

    #[test]
    fn top_orders_by_value() {
        assert_eq!(
            top(&[0.1, 0.5, 0.2, 0.5], 3),
            vec![(1, 0.5), (3, 0.5), (2, 0.2)]
        );
        assert_eq!(top(&[0.1], 5), vec![(0, 0.1)]);
    }

    #[test]
    fn fills_every_mask_and_rejects_inputs_without_one() {
        let device = Device::flex();
        let config = LongformerHeadConfig::new(LongformerConfig::tiny(40));
        let model: LongformerForMaskedLM = config.init(&device).unwrap();
        let rows = [vec![0, 4, 9, 2], vec![0, 7, 4, 2]];
        let input = LongformerInput::from_rows(&rows, None, None, 1, &device);
        let fills = model.fill_mask(input, 4, 5).unwrap();
        let at: Vec<(usize, usize)> = fills.iter().map(|f| (f.row, f.position)).collect();
        assert_eq!(at, vec![(0, 1), (1, 2)]);
        for fill in &fills {
            assert_eq!(fill.candidates.len(), 5);
            assert!(fill.candidates.windows(2).all(|w| w[0].1 >= w[1].1));
        }
        let input = LongformerInput::from_rows(&[vec![0, 9, 2]], None, None, 1, &device);
        assert_eq!(
            model.fill_mask(input, 4, 5).unwrap_err(),
            InputError::NoMaskToken { mask_token_id: 4 }
        );
    }
}
