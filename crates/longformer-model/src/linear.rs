//! The encoder's `Linear` layers, with an experimental split of their weight gradient on GPUs.
//!
//! A projection's weight gradient is `xᵀ · dy`: at longformer-base, a `[768, n]` by `[n, 768]`
//! product whose output has only 768 × 768 entries however long the document, so a GPU's matrix
//! kernel, which tiles the output, runs it on a few dozen cubes for a 132-multiprocessor device
//! and walks all `n` rows in each. Burn 0.22.1's matrix product has no split of that `n` axis.
//! [`linear_split_rows`] computes the same layer as a product batched over `chunks` runs of
//! rows against the one weight; its backward pass is then `chunks` products of `n / chunks` rows
//! each (`chunks` times the cubes) and a sum over the chunks.
//!
//! Whether that is faster depends on the device and on which kernels Burn's autotuning picks,
//! so it is off unless asked for: `LONGFORMER_SPLIT_K=N` (a process-wide switch, read once) makes
//! [`linear`] split training passes on GPUs into `N` chunks where the rows divide evenly. The
//! GPU device check times a training step with and without it.

use std::sync::OnceLock;

use burn::nn::Linear;
use burn::tensor::Tensor;

use crate::attention::fused::on_gpu;

/// Environment variable that sets [`split_k_chunks`].
pub const SPLIT_K_VAR: &str = "LONGFORMER_SPLIT_K";

/// Chunks of rows the weight gradient of [`linear`] is split into in GPU training
/// ([`SPLIT_K_VAR`]; 1, no split, when unset or not a positive integer).
pub fn split_k_chunks() -> usize {
    static CHUNKS: OnceLock<usize> = OnceLock::new();
    *CHUNKS.get_or_init(|| {
        std::env::var(SPLIT_K_VAR)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n >= 1)
            .unwrap_or(1)
    })
}

/// `layer.forward(x)`; in a recorded pass on a GPU with [`split_k_chunks`] above 1,
/// [`linear_split_rows`] (when the rows divide evenly).
///
/// # Shapes
/// - x: `[..., d_in]`; output: `[..., d_out]`
pub fn linear<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    let chunks = split_k_chunks();
    if chunks > 1 {
        let device = x.device();
        if device.is_autodiff() && on_gpu(&device) {
            return linear_split_rows(layer, x, chunks);
        }
    }
    layer.forward(x)
}

/// `layer.forward(x)` as a product batched over `chunks` equal runs of the rows (all axes but
/// the last), each against the same weight: the same values, and under autodiff a weight
/// gradient summed from `chunks` products of `rows / chunks` rows (see the module docs). Falls
/// back to `layer.forward(x)` when `chunks` does not divide the rows.
///
/// # Shapes
/// - x: `[..., d_in]`; output: `[..., d_out]`
pub fn linear_split_rows<const D: usize>(layer: &Linear, x: Tensor<D>, chunks: usize) -> Tensor<D> {
    let dims = x.dims();
    let d_in = dims[D - 1];
    let rows = dims[..D - 1].iter().product::<usize>();
    if chunks <= 1 || !rows.is_multiple_of(chunks) {
        return layer.forward(x);
    }
    let weight = layer.weight.val();
    let d_out = weight.dims()[1];
    let y = x
        .reshape([chunks, rows / chunks, d_in])
        .matmul(weight.unsqueeze_dim::<3>(0));
    let y = match &layer.bias {
        Some(bias) => y + bias.val().reshape([1, 1, d_out]),
        None => y,
    };
    let mut out = dims;
    out[D - 1] = d_out;
    y.reshape(out)
}

#[cfg(test)]
mod tests {
    use burn::nn::LinearConfig;
    use burn::tensor::{Device, TensorData};

    use super::*;
    use crate::test_devices::{assert_all_close, devices, values};

    /// Output, `x`, weight and bias gradients of `sum(layer(x) · c)`.
    fn run(chunks: Option<usize>, bias: bool, device: &Device) -> [Vec<f32>; 4] {
        let device = device.clone().autodiff();
        let mut layer = LinearConfig::new(24, 20).with_bias(bias).init(&device);
        layer.weight = burn::module::Param::from_tensor(Tensor::from_data(
            TensorData::new(values(24 * 20, 1), [24, 20]),
            &device,
        ));
        if bias {
            layer.bias = Some(burn::module::Param::from_tensor(Tensor::from_data(
                TensorData::new(values(20, 4), [20]),
                &device,
            )));
        }
        let x = Tensor::<3>::from_data(
            TensorData::new(values(2 * 36 * 24, 2), [2, 36, 24]),
            &device,
        )
        .require_grad();
        let c = Tensor::<3>::from_data(
            TensorData::new(values(2 * 36 * 20, 3), [2, 36, 20]),
            &device,
        );
        let y = match chunks {
            Some(chunks) => linear_split_rows(&layer, x.clone(), chunks),
            None => layer.forward(x.clone()),
        };
        let grads = (y.clone() * c).sum().backward();
        let read = |t: burn::tensor::TensorData| t.iter::<f32>().collect::<Vec<_>>();
        let bias_grad = layer.bias.as_ref().map_or_else(Vec::new, |b| {
            read(b.val().grad(&grads).expect("bias grad").into_data())
        });
        [
            read(y.inner().into_data()),
            read(x.grad(&grads).expect("x grad").into_data()),
            read(
                layer
                    .weight
                    .val()
                    .grad(&grads)
                    .expect("weight grad")
                    .into_data(),
            ),
            bias_grad,
        ]
    }

    /// Split into 4 or 8 runs of rows (of 72), or 5 (which does not divide them: Burn's layer),
    /// with and without a bias: Burn's `Linear` values and gradients, on every backend.
    #[test]
    fn split_rows_give_burns_linear_and_its_gradients() {
        for device in devices() {
            for bias in [true, false] {
                let burns = run(None, bias, &device);
                for chunks in [4, 8, 5] {
                    let ours = run(Some(chunks), bias, &device);
                    assert_all_close(
                        &["y", "dx", "dweight", "dbias"],
                        &ours,
                        &burns,
                        1e-5,
                        &format!("{device:?} chunks {chunks} bias {bias}"),
                    );
                }
            }
        }
    }
}
