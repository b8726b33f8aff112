//! Activation checkpointing (HF's `gradient_checkpointing_enable()`): a training pass that keeps
//! only each layer's input, and recomputes one layer at a time in the backward pass.
//!
//! A recorded forward pass keeps every layer's intermediates for the backward pass (the
//! projections, the attention's context, the feed-forward's `[n, 4d]` activations, dropout
//! masks): at 4,096 tokens of longformer-base, some 200 MB per layer. A checkpointed pass runs
//! the embeddings and layers without recording them, keeping their inputs
//! (`[batch_size, seq_length, d_model]` each), and hands back the last hidden state as a leaf
//! the caller's loss is computed from. Its [`backward`](CheckpointedPass::backward) then walks
//! the layers from the top: it runs layer `i` again, recorded, from its kept input, and
//! back-propagates the gradient of its output through it alone. Memory for intermediates: one
//! layer's, instead of all; cost: one more forward pass.
//!
//! The gradients are those of the recorded pass: each layer runs the same operations on the
//! same input both times, dropout included (its masks are a function of the pass's
//! [`DropoutSeed`](crate::DropoutSeed), not draws from a generator), and the gradient entering layer `i` is exactly
//! the one the recorded pass would send it (`sum(output · g)` has gradient `g`). They are
//! usually bit-identical; a CPU backend's vectorized sums may round differently when a
//! recomputed buffer lands at another alignment (one ulp of a gradient norm, seen in training
//! on flex).

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Gradients, Tensor};

use crate::encoder::LongformerEncoder;
use crate::error::InputError;
use crate::init::draw_lazy_params;
use crate::input::LongformerInput;
use crate::model::{LongformerModel, PreparedInput};

/// A forward pass of [`LongformerModel::try_forward_checkpointed`]: its output, and what its
/// backward pass recomputes the layers from.
#[derive(Debug)]
pub struct CheckpointedPass {
    /// The model's output, a leaf that requires gradients (not linked to the model's
    /// parameters): compute the loss from it, then call [`backward`](Self::backward).
    ///
    /// # Shapes
    /// `[batch_size, seq_length, d_model]`
    pub last_hidden_state: Tensor<3>,
    /// Layer `i`'s input, unrecorded: the embeddings, then each layer's output but the last.
    layer_inputs: Vec<Tensor<3>>,
    input: PreparedInput,
}

impl LongformerModel {
    /// Runs the model for training with activation checkpointing (see [`crate::checkpointing`]):
    /// nothing of the embeddings or the layers is recorded, and each layer's input is kept.
    /// The pooler is not run; apply [`pooler`](Self::pooler) to the pass's
    /// [`last_hidden_state`](CheckpointedPass::last_hidden_state) when the loss needs it.
    ///
    /// On an autodiff device, with the input's dropout seed (one is drawn when it has none).
    /// The pass's gradients, `pass.backward(self, loss.backward())`, are those of
    /// [`try_forward`](Self::try_forward)'s recorded pass with the same seed.
    ///
    /// # Example
    /// ```
    /// use burn::tensor::{Device, Tensor, TensorData, Int};
    /// use longformer_model::{DropoutSeed, LongformerConfig, LongformerInput};
    ///
    /// let device = Device::flex().autodiff();
    /// let model = LongformerConfig::tiny(100).init(&device);
    /// let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![0i64, 5, 6, 7, 2], [1, 5]), &device);
    /// let input = LongformerInput::new(ids).with_dropout_seed(DropoutSeed::new(7));
    /// let pass = model.try_forward_checkpointed(input).unwrap();
    /// let hidden = pass.last_hidden_state.clone();
    /// let loss = (hidden.clone() * hidden).mean();
    /// let grads = pass.backward(&model, loss.backward());
    /// let query = model.encoder.layer[0].attention.self_attn.query.weight.val();
    /// assert!(query.grad(&grads).is_some());
    /// ```
    ///
    /// # Errors
    /// [`InputError::NoAutodiff`] for an input on a device without autodiff; inputs
    /// [`check`](Self::check) rejects.
    pub fn try_forward_checkpointed(
        &self,
        input: LongformerInput,
    ) -> Result<CheckpointedPass, InputError> {
        let device = input.input_ids.device();
        if !device.is_autodiff() {
            return Err(InputError::NoAutodiff {
                device: format!("{device:?}"),
            });
        }
        let input = self.prepare(input)?;
        // The same operations on the same device as a recorded pass (the device decides the
        // attention's path and whether dropout is on), with parameters that record nothing.
        // Burn initializes parameters at their first read, and a clone shares that
        // initialization: read first, or the copy's `no_grad` would be the model's too.
        draw_lazy_params(self);
        let unrecorded = self.clone().no_grad();
        let embedded = unrecorded.embed(&input);
        // The embeddings, then every layer's output: layer `i`'s input is entry `i`.
        let (hidden, _, mut layer_inputs) = unrecorded.encoder.forward_collecting(
            embedded,
            &input.masks,
            input.encoder_seed(),
            false,
            true,
        );
        layer_inputs.pop();
        Ok(CheckpointedPass {
            last_hidden_state: hidden.require_grad(),
            layer_inputs,
            input,
        })
    }
}

impl CheckpointedPass {
    /// Back-propagates through `model` (the model that ran the pass): `grads`, the gradients
    /// of a loss computed from [`last_hidden_state`](Self::last_hidden_state), come back with
    /// the gradients of the embeddings' and every layer's parameters added, as if the whole
    /// pass had been recorded. Read them as usual (`GradientsParams::from_grads(grads, &model)`).
    ///
    /// Layers run again one at a time, from the top. A loss that does not depend on the
    /// output leaves `grads` as they are.
    ///
    /// # Panics
    /// If `model` has another number of layers than the model that ran the pass.
    pub fn backward(self, model: &LongformerModel, mut grads: Gradients) -> Gradients {
        assert_eq!(
            model.encoder.layer.len(),
            self.layer_inputs.len(),
            "CheckpointedPass::backward takes the model that ran the pass (its number of layers)"
        );
        let Some(mut grad) = self.last_hidden_state.grad_remove(&mut grads) else {
            return grads;
        };
        let seed = self.input.encoder_seed();
        for (i, input) in self.layer_inputs.into_iter().enumerate().rev() {
            let layer = &model.encoder.layer[i];
            let input = input.require_grad();
            let output = layer
                .forward(
                    input.clone(),
                    &self.input.masks,
                    LongformerEncoder::layer_seed(seed, i),
                    false,
                )
                .0;
            let mut layer_grads = (output * grad).sum().backward();
            move_grads(layer, &mut layer_grads, &mut grads);
            grad = input
                .grad(&layer_grads)
                .expect("a layer's output depends on its input");
        }
        let embeddings = model.embed(&self.input);
        let mut embedding_grads = (embeddings * grad).sum().backward();
        move_grads(&model.embeddings, &mut embedding_grads, &mut grads);
        grads
    }
}

/// Moves the gradients of `module`'s parameters from `from` into `into`, adding them to those
/// `into` holds already (a parameter the loss also reads outside the encoder, such as word
/// embeddings tied to a language-model head).
fn move_grads<M: Module>(module: &M, from: &mut Gradients, into: &mut Gradients) {
    struct Move<'a> {
        from: &'a mut Gradients,
        into: &'a mut Gradients,
    }
    impl ModuleVisitor for Move<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let tensor = param.val();
            if let Some(grad) = tensor.grad_remove(self.from) {
                let total = match tensor.grad_remove(self.into) {
                    Some(earlier) => earlier + grad,
                    None => grad,
                };
                tensor.grad_replace(self.into, total);
            }
        }
    }
    module.visit(&mut Move { from, into });
}

/// How a task head runs its encoder: [`recorded`] or [`checkpointed`]. The head's forward is
/// written once, over this, and returns the encoder's `P` next to its output.
pub(crate) type Encode<P> =
    fn(&LongformerModel, LongformerInput) -> Result<(Tensor<3>, P), InputError>;

/// The recorded pass's last hidden state (`[batch_size, seq_length, d_model]`).
pub(crate) fn recorded(
    model: &LongformerModel,
    input: LongformerInput,
) -> Result<(Tensor<3>, ()), InputError> {
    Ok((model.try_forward(input)?.last_hidden_state, ()))
}

/// The checkpointed pass's last hidden state (`[batch_size, seq_length, d_model]`), and the
/// pass.
pub(crate) fn checkpointed(
    model: &LongformerModel,
    input: LongformerInput,
) -> Result<(Tensor<3>, CheckpointedPass), InputError> {
    let pass = model.try_forward_checkpointed(input)?;
    Ok((pass.last_hidden_state.clone(), pass))
}
