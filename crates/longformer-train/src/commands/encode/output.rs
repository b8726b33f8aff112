//! What `longformer encode` writes: outputs read back from the device, pooled rows, batches of
//! rows, and the safetensors file.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use burn::tensor::{Bool, Tensor};
use clap::ValueEnum;
use longformer_model::LongformerInput;
use longformer_model::precision::to_f32;

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

/// `input` in batches of at most `rows` rows, in order, each at the input's length.
pub(super) fn batches(
    input: &LongformerInput,
    rows: usize,
) -> impl Iterator<Item = LongformerInput> + '_ {
    let [batch, _] = input.dims();
    (0..batch)
        .step_by(rows)
        .map(move |start| input.narrow_rows(start, rows.min(batch - start)))
}

/// `forward` of each of [`batches`], its outputs concatenated along the first axis (rows, or
/// examples).
pub(super) fn in_batches<const D: usize>(
    input: &LongformerInput,
    rows: usize,
    forward: impl FnMut(LongformerInput) -> Result<Tensor<D>>,
) -> Result<Tensor<D>> {
    let parts = batches(input, rows)
        .map(forward)
        .collect::<Result<Vec<_>>>()?;
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
