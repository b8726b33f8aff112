//! The global attention HF's heads put on when no `global_attention_mask` is given:
//! sequence classification on the first token (`<s>`); question answering on the question (every
//! token before the first separator, HF `_compute_global_attention_mask(before_sep_token=True)`);
//! multiple choice on everything after the question's two separators (`before_sep_token=False`).
//! Masked LM and token classification have no default (no global attention).
//!
//! The separator rules need `<s> question </s></s> context </s>`: exactly three separators per
//! row, which HF asserts for the whole batch and we check per row, as an error naming the row.

use burn::tensor::{Bool, Int, Tensor, TensorData};

use crate::error::InputError;
use crate::input::LongformerInput;

/// Global attention on the first token of every row.
///
/// # Shapes
/// - input_ids: `[batch_size, seq_length]`
/// - output: `[batch_size, seq_length]`
pub fn first_token(input_ids: &Tensor<2, Int>) -> Tensor<2, Bool> {
    let [batch_size, seq_length] = input_ids.dims();
    let mask: Vec<bool> = (0..batch_size * seq_length)
        .map(|i| i % seq_length == 0)
        .collect();
    Tensor::from_data(
        TensorData::new(mask, [batch_size, seq_length]),
        &input_ids.device(),
    )
}

/// Global attention on the question: the tokens before the first separator of each row.
///
/// # Shapes
/// - input_ids: `[batch_size, seq_length]`
/// - output: `[batch_size, seq_length]`
///
/// # Errors
/// [`InputError::Separators`] for the first row without exactly three `sep_token_id`.
pub fn before_question_end(
    input_ids: &Tensor<2, Int>,
    sep_token_id: i64,
    task: &'static str,
) -> Result<Tensor<2, Bool>, InputError> {
    by_first_separator(input_ids, sep_token_id, task, |t, first_sep| t < first_sep)
}

/// Global attention after the question: the tokens after the first two separators of each row
/// (the final separator included; padding is never global, whatever the mask says).
///
/// # Shapes
/// - input_ids: `[batch_size, seq_length]`
/// - output: `[batch_size, seq_length]`
///
/// # Errors
/// [`InputError::Separators`] for the first row without exactly three `sep_token_id`.
pub fn after_question_end(
    input_ids: &Tensor<2, Int>,
    sep_token_id: i64,
    task: &'static str,
) -> Result<Tensor<2, Bool>, InputError> {
    by_first_separator(input_ids, sep_token_id, task, |t, first_sep| {
        t > first_sep + 1
    })
}

/// `input` with `global_attention_mask` set to `default(input_ids)` when it has none.
pub(crate) fn or_default(
    mut input: LongformerInput,
    default: impl FnOnce(&Tensor<2, Int>) -> Result<Tensor<2, Bool>, InputError>,
) -> Result<LongformerInput, InputError> {
    if input.global_attention_mask.is_none() {
        input.check_shapes()?;
        input.global_attention_mask = Some(default(&input.input_ids)?);
    }
    Ok(input)
}

/// A mask from each token's position and its row's first separator.
fn by_first_separator(
    input_ids: &Tensor<2, Int>,
    sep_token_id: i64,
    task: &'static str,
    global: impl Fn(usize, usize) -> bool,
) -> Result<Tensor<2, Bool>, InputError> {
    let [batch_size, seq_length] = input_ids.dims();
    let ids: Vec<i64> = input_ids.clone().into_data().iter::<i64>().collect();
    let mut mask = Vec::with_capacity(ids.len());
    for (row, tokens) in ids.chunks(seq_length.max(1)).enumerate() {
        let seps: Vec<usize> = (0..tokens.len())
            .filter(|&t| tokens[t] == sep_token_id)
            .collect();
        if seps.len() != 3 {
            return Err(InputError::Separators {
                row,
                found: seps.len(),
                sep_token_id,
                task,
            });
        }
        mask.extend((0..seq_length).map(|t| global(t, seps[0])));
    }
    Ok(Tensor::from_data(
        TensorData::new(mask, [batch_size, seq_length]),
        &input_ids.device(),
    ))
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;

    fn ids(rows: Vec<Vec<i64>>) -> Tensor<2, Int> {
        let shape = [rows.len(), rows[0].len()];
        let flat: Vec<i64> = rows.into_iter().flatten().collect();
        Tensor::from_data(TensorData::new(flat, shape), &Device::flex())
    }

    fn rows(mask: Tensor<2, Bool>) -> Vec<Vec<bool>> {
        let [_, n] = mask.dims();
        let flat: Vec<bool> = mask.into_data().iter::<bool>().collect();
        flat.chunks(n).map(<[bool]>::to_vec).collect()
    }

    #[test]
    fn question_is_everything_before_the_first_separator() {
        let input = ids(vec![
            vec![0, 7, 8, 2, 2, 9, 2, 1],
            vec![0, 7, 2, 2, 9, 9, 9, 2],
        ]);
        let mask = rows(before_question_end(&input, 2, "question answering").unwrap());
        let t = true;
        let f = false;
        assert_eq!(mask[0], vec![t, t, t, f, f, f, f, f]);
        assert_eq!(mask[1], vec![t, t, f, f, f, f, f, f]);
    }

    #[test]
    fn after_question_starts_past_the_double_separator() {
        let input = ids(vec![vec![0, 7, 2, 2, 9, 9, 2, 1]]);
        let mask = rows(after_question_end(&input, 2, "multiple choice").unwrap());
        let t = true;
        let f = false;
        assert_eq!(mask[0], vec![f, f, f, f, t, t, t, t]);
    }

    #[test]
    fn rows_without_three_separators_are_named() {
        let input = ids(vec![vec![0, 7, 2, 2, 9, 2], vec![0, 7, 2, 9, 9, 2]]);
        let err = before_question_end(&input, 2, "question answering").unwrap_err();
        assert_eq!(
            err,
            InputError::Separators {
                row: 1,
                found: 2,
                sep_token_id: 2,
                task: "question answering"
            }
        );
        assert!(err.to_string().contains("row 1 has 2 separator"), "{err}");
    }

    #[test]
    fn first_token_only() {
        let mask = rows(first_token(&ids(vec![vec![0, 5, 2], vec![0, 6, 2]])));
        assert_eq!(
            mask,
            vec![vec![true, false, false], vec![true, false, false]]
        );
    }
}
