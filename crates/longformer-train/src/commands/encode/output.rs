//! What `longformer encode` writes: outputs read back from the device, pooled rows, batches of
//! rows, and the safetensors file.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use burn::tensor::{Bool, Tensor, TensorData};
use clap::ValueEnum;
use longformer_model::LongformerInput;
use longformer_model::batching::{BatchLimit, ItemSize, longest_first};
use longformer_model::precision::to_f32;

use super::progress::RowProgress;
use crate::readback::read_back;

/// How `--pool` makes one vector of a row's last hidden states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Pool {
    /// The mean over the row's real tokens (`mean_pooled`).
    Mean,
    /// The hidden state at position 0, `<s>` (`first_token`).
    First,
}

impl Pool {
    /// The name of the pooled output in the file.
    pub(super) fn output_name(self) -> &'static str {
        match self {
            Self::Mean => "mean_pooled",
            Self::First => "first_token",
        }
    }

    /// `[rows, hidden]` from `hidden` (`[rows, seq, hidden]`), in f32 whatever the model's
    /// dtype; `real` marks the real tokens (all, when `None`).
    pub(super) fn apply(self, hidden: Tensor<3>, real: Option<Tensor<2, Bool>>) -> Tensor<2> {
        let hidden = to_f32(hidden);
        let [rows, seq, width] = hidden.dims();
        match self {
            Self::First => hidden.narrow(1, 0, 1).reshape([rows, width]),
            Self::Mean => {
                let weights = match real {
                    Some(real) => real.float(),
                    None => Tensor::ones([rows, seq], &hidden.device()),
                };
                // A row without real tokens (a mask of zeros) gets zeros, not 0 / 0.
                let count = weights.clone().sum_dim(1).clamp_min(1.0); // [rows, 1]
                let sum = (hidden * weights.unsqueeze_dim(2))
                    .sum_dim(1)
                    .reshape([rows, width]);
                sum / count
            }
        }
    }
}

/// A named F32 output: values and dimensions.
pub(super) type Output = (String, Vec<f32>, Vec<usize>);

/// `tensor` read back from the device; a device failure is an error naming the output.
pub(super) fn host<const D: usize>(name: &str, tensor: Tensor<D>) -> Result<Output> {
    let dims = tensor.dims().to_vec();
    let data = read_back(tensor, &format!("`{name}` {dims:?}"))?;
    Ok((name.to_string(), data.iter::<f32>().collect(), dims))
}

/// `input` in batches within `limit` (rows, and padded tokens), in order, each at the input's
/// length, with the rows each holds.
pub(super) fn batches(
    input: &LongformerInput,
    limit: BatchLimit,
) -> impl Iterator<Item = (Vec<usize>, LongformerInput)> + '_ {
    let [batch, seq] = input.dims();
    let rows = limit.items_at(1, seq);
    (0..batch).step_by(rows).map(move |start| {
        let n = rows.min(batch - start);
        ((start..start + n).collect(), input.narrow_rows(start, n))
    })
}

/// `input` in batches within `limit` (rows, and tokens counting each batch's padding) taken
/// longest first, each cut to its longest row, with the rows each holds (`lengths[r]`: row
/// `r`'s tokens before its trailing padding, see [`LongformerInput::select_rows`]). For outputs
/// of a row's real tokens (pooled vectors, the first token's labels), which the cut padding does
/// not change: a corpus of mixed lengths is encoded with little padding, where [`batches`] pads
/// every row to the longest of all.
pub(super) fn length_sorted_batches<'a>(
    input: &'a LongformerInput,
    lengths: &'a [usize],
    limit: BatchLimit,
) -> impl Iterator<Item = (Vec<usize>, LongformerInput)> + 'a {
    let sizes = ItemSize::rows_of(lengths);
    longest_first(&sizes, limit).into_iter().map(move |batch| {
        let longest = batch.iter().map(|&r| lengths[r]).max().unwrap_or(1);
        let selected = input.select_rows(&batch, longest.max(1));
        (batch, selected)
    })
}

/// How `encode` cuts its rows into batches.
#[derive(Debug, Clone, Copy)]
pub(super) enum Batching<'a> {
    /// In order, each batch at the input's length ([`batches`]).
    InOrder,
    /// Longest first, each batch cut to its longest row ([`length_sorted_batches`], with each
    /// row's tokens before its trailing padding): for outputs of a row's real tokens only.
    ByLength(&'a [usize]),
}

/// `forward` of each batch of `input` within `limit`, cut as `batching` says, with the progress
/// on stderr: the outputs in the batches' order, and the input row of each output row.
pub(super) fn run_batches<T>(
    input: &LongformerInput,
    limit: BatchLimit,
    batching: Batching,
    mut forward: impl FnMut(LongformerInput) -> Result<T>,
) -> Result<(Vec<T>, Vec<usize>)> {
    let [total, seq] = input.dims();
    // The tokens a row's batch computes for it: its own when batches are cut to their rows.
    let work = |row: usize| match batching {
        Batching::InOrder => seq,
        Batching::ByLength(lengths) => lengths[row],
    };
    let device = input.input_ids.device();
    let mut progress = RowProgress::new(total, (0..total).map(work).sum(), &device);
    let plan: Box<dyn Iterator<Item = (Vec<usize>, LongformerInput)>> = match batching {
        Batching::InOrder => Box::new(batches(input, limit)),
        Batching::ByLength(lengths) => Box::new(length_sorted_batches(input, lengths, limit)),
    };
    let (mut parts, mut order) = (Vec::new(), Vec::new());
    for (rows, batch) in plan {
        parts.push(forward(batch)?);
        progress.advance(rows.len(), rows.iter().map(|&r| work(r)).sum());
        order.extend(rows);
    }
    Ok((parts, order))
}

/// Rows of `sorted` (along the first axis) back in the input's order: row `i` of `sorted` is
/// row `order[i]` of the input.
pub(super) fn unsort<const D: usize>(sorted: Tensor<D>, order: &[usize]) -> Tensor<D> {
    let mut position = vec![0i64; order.len()];
    for (i, &row) in order.iter().enumerate() {
        position[row] = i as i64;
    }
    let indices = Tensor::from_data(TensorData::new(position, [order.len()]), &sorted.device());
    sorted.select(0, indices)
}

/// `forward` of each of [`length_sorted_batches`] (outputs of one row each, along the first
/// axis), back in the input's order.
pub(super) fn in_length_sorted_batches<const D: usize>(
    input: &LongformerInput,
    lengths: &[usize],
    limit: BatchLimit,
    forward: impl FnMut(LongformerInput) -> Result<Tensor<D>>,
) -> Result<Tensor<D>> {
    let (parts, order) = run_batches(input, limit, Batching::ByLength(lengths), forward)?;
    Ok(unsort(Tensor::cat(parts, 0), &order))
}

/// `forward` of each of [`batches`], its outputs concatenated along the first axis (rows, or
/// examples).
pub(super) fn in_batches<const D: usize>(
    input: &LongformerInput,
    limit: BatchLimit,
    forward: impl FnMut(LongformerInput) -> Result<Tensor<D>>,
) -> Result<Tensor<D>> {
    let (parts, _) = run_batches(input, limit, Batching::InOrder, forward)?;
    Ok(Tensor::cat(parts, 0))
}

/// Writes `outputs` to `path` as safetensors, with `metadata` in its header.
pub(super) fn write_output(
    path: &Path,
    outputs: &[Output],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let tensors: Vec<(&str, &[f32], Vec<usize>)> = outputs
        .iter()
        .map(|(name, values, dims)| (name.as_str(), values.as_slice(), dims.clone()))
        .collect();
    let file = crate::output::f32_safetensors(&tensors, metadata)?;
    crate::output::write_file(path, &file).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;

    /// Rows of 2, 5, 1, 4 and 3 tokens (ids = row number * 10 + position), padded to 5.
    fn ragged() -> (LongformerInput, Vec<usize>) {
        let lengths = vec![2, 5, 1, 4, 3];
        let rows: Vec<Vec<i64>> = lengths
            .iter()
            .enumerate()
            .map(|(r, &n)| (0..n as i64).map(|t| r as i64 * 10 + t).collect())
            .collect();
        let input = LongformerInput::from_rows(&rows, None, None, 1, &Device::flex());
        (input, lengths)
    }

    fn ids(input: &LongformerInput) -> Vec<i64> {
        input.input_ids.clone().into_data().iter::<i64>().collect()
    }

    /// Batches take the longest rows first and are as long as their longest row; every row is
    /// in exactly one.
    #[test]
    fn length_sorted_batches_group_rows_of_similar_lengths() {
        let (input, lengths) = ragged();
        let batches: Vec<_> =
            length_sorted_batches(&input, &lengths, BatchLimit::items(2)).collect();
        let held: Vec<&[usize]> = batches.iter().map(|(rows, _)| rows.as_slice()).collect();
        assert_eq!(held, [&[1, 3][..], &[4, 0], &[2]]);
        let dims: Vec<[usize; 2]> = batches.iter().map(|(_, b)| b.dims()).collect();
        assert_eq!(dims, [[2, 5], [2, 3], [1, 1]]);
        // Row 4's three tokens, then row 0's two and a padding id.
        assert_eq!(ids(&batches[1].1), [40, 41, 42, 0, 1, 1]);
        assert_eq!(ids(&batches[2].1), [20]);
    }

    /// A token budget (padding counted) sizes the batches: the longest row alone, then rows as
    /// many as fit at their batch's length; batches of the input's length hold as many rows as
    /// fit at it.
    #[test]
    fn a_token_budget_sizes_the_batches() {
        let (input, lengths) = ragged();
        let limit = BatchLimit::items(8).with_tokens(Some(8));
        let held: Vec<Vec<usize>> = length_sorted_batches(&input, &lengths, limit)
            .map(|(rows, _)| rows)
            .collect();
        assert_eq!(held, [vec![1], vec![3, 4], vec![0, 2]]);
        let limit = BatchLimit::items(8).with_tokens(Some(10));
        let dims: Vec<[usize; 2]> = batches(&input, limit).map(|(_, b)| b.dims()).collect();
        assert_eq!(dims, [[2, 5], [2, 5], [1, 5]]);
    }

    /// Per-row outputs of the batches, concatenated, come back in the input's order.
    #[test]
    fn in_length_sorted_batches_returns_rows_in_order() {
        let (input, lengths) = ragged();
        let first = in_length_sorted_batches(&input, &lengths, BatchLimit::items(2), |rows| {
            let [n, _] = rows.dims();
            Ok(rows.input_ids.narrow(1, 0, 1).reshape([n]).float())
        })
        .unwrap();
        let first: Vec<f32> = first.into_data().iter::<f32>().collect();
        assert_eq!(first, [0.0, 10.0, 20.0, 30.0, 40.0]);
        let order = [3, 0, 2, 1];
        let sorted = Tensor::<1>::from_data([30.0, 0.0, 20.0, 10.0], &Device::flex());
        let back: Vec<f32> = unsort(sorted, &order).into_data().iter::<f32>().collect();
        assert_eq!(back, [0.0, 10.0, 20.0, 30.0]);
    }
}
