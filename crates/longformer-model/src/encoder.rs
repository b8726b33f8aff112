//! [`LongformerEncoder`]: the stack of layers (HF `LongformerEncoder`).

use burn::module::Module;
use burn::tensor::Tensor;

use crate::attention::{AttentionMasks, AttentionProbs};
use crate::layer::LongformerLayer;

/// The encoder layers, applied in order.
#[derive(Module, Debug)]
pub struct LongformerEncoder {
    /// One entry per layer (HF `encoder.layer.{i}`).
    pub layer: Vec<LongformerLayer>,
}

impl LongformerEncoder {
    /// Runs every layer; collects each layer's attention probabilities when `with_probs`.
    ///
    /// # Shapes
    /// - hidden: `[batch_size, seq_length, d_model]`
    /// - output: `[batch_size, seq_length, d_model]`
    pub fn forward(
        &self,
        mut hidden: Tensor<3>,
        masks: &AttentionMasks,
        with_probs: bool,
    ) -> (Tensor<3>, Vec<AttentionProbs>) {
        let mut all_probs = Vec::new();
        for layer in &self.layer {
            let (out, probs) = layer.forward(hidden, masks, with_probs);
            hidden = out;
            all_probs.extend(probs);
        }
        (hidden, all_probs)
    }
}
