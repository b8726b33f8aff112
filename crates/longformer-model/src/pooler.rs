//! [`LongformerPooler`]: `tanh(dense(h[:, 0]))` (HF `LongformerPooler`).

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::tanh;
use burn::tensor::{Device, Tensor};

/// The first token's hidden state through a dense layer and `tanh`.
#[derive(Module, Debug)]
pub struct LongformerPooler {
    /// `d_model → d_model`.
    pub dense: Linear,
}

impl LongformerPooler {
    /// A pooler with random weights.
    pub fn init(d_model: usize, device: &Device) -> Self {
        Self {
            dense: LinearConfig::new(d_model, d_model).init(device),
        }
    }

    /// # Shapes
    /// - hidden: `[batch_size, seq_length, d_model]`
    /// - output: `[batch_size, d_model]`
    pub fn forward(&self, hidden: Tensor<3>) -> Tensor<2> {
        let [b, _, d] = hidden.dims();
        tanh(self.dense.forward(hidden.narrow(1, 0, 1).reshape([b, d])))
    }
}
