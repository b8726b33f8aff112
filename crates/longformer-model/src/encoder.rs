//! [`LongformerEncoder`]: the stack of layers (HF `LongformerEncoder`).

use burn::module::Module;
use burn::tensor::Tensor;

use crate::attention::{AttentionMasks, AttentionProbs};
use crate::dropout::DropoutSeed;
use crate::layer::LongformerLayer;

/// The encoder layers, applied in order.
#[derive(Module, Debug)]
pub struct LongformerEncoder {
    /// One entry per layer (HF `encoder.layer.{i}`).
    pub layer: Vec<LongformerLayer>,
}

impl LongformerEncoder {
    /// Runs every layer; collects each layer's attention probabilities when `with_probs`. Layer
    /// `i`'s dropout seed is `seed.child(i)` (unread outside training).
    ///
    /// # Shapes
    /// - hidden: `[batch_size, seq_length, d_model]`
    /// - output: `[batch_size, seq_length, d_model]`
    pub fn forward(
        &self,
        hidden: Tensor<3>,
        masks: &AttentionMasks,
        seed: DropoutSeed,
        with_probs: bool,
    ) -> (Tensor<3>, Vec<AttentionProbs>) {
        let (hidden, probs, _) = self.forward_collecting(hidden, masks, seed, with_probs, false);
        (hidden, probs)
    }

    /// [`forward`](Self::forward), also returning the hidden states when `with_hidden_states`
    /// (HF's `output_hidden_states`): the input, then every layer's output, `n_layers + 1`
    /// tensors of `[batch_size, seq_length, d_model]` (the last one is the returned output).
    /// Empty, and nothing kept, otherwise.
    pub fn forward_collecting(
        &self,
        mut hidden: Tensor<3>,
        masks: &AttentionMasks,
        seed: DropoutSeed,
        with_probs: bool,
        with_hidden_states: bool,
    ) -> (Tensor<3>, Vec<AttentionProbs>, Vec<Tensor<3>>) {
        let mut all_probs = Vec::new();
        let mut all_hidden = Vec::new();
        if with_hidden_states {
            all_hidden.reserve(self.layer.len() + 1);
            all_hidden.push(hidden.clone());
        }
        for (i, layer) in self.layer.iter().enumerate() {
            let (out, probs) = layer.forward(hidden, masks, Self::layer_seed(seed, i), with_probs);
            hidden = out;
            all_probs.extend(probs);
            if with_hidden_states {
                all_hidden.push(hidden.clone());
            }
        }
        (hidden, all_probs, all_hidden)
    }

    /// Layer `i`'s dropout seed, from the one the encoder is given.
    pub(crate) fn layer_seed(seed: DropoutSeed, i: usize) -> DropoutSeed {
        seed.child(i as u64)
    }
}
