//! Gradient parity with PyTorch + HuggingFace `transformers`, padding included: the
//! `padding_grads` fixtures (`python scripts/gen_fixtures.py padding_grads`) hold a tiny random
//! Longformer and a masked-LM head with tied word embeddings, a batch with right and left
//! padding, pad ids inside a row and a masked-out token, a cotangent on every position, and HF's
//! gradient of `sum(output * cotangent)` with respect to every parameter. HF's word and position
//! embeddings freeze their padding rows (`nn.Embedding(..., padding_idx)`), so those rows get no
//! gradient from the positions that read them (the tied decoder still gives the word row its
//! share); ours must match that and every other gradient on every backend, both local-attention
//! paths, recorded and with activation checkpointing. `scripts/grad_sweep.py` runs the same
//! comparison on random models, batches and heads.

use std::collections::HashMap;

use burn::module::Module;
use burn::tensor::{Gradients, Tensor};
use longformer_model::loader::{head_hf_key, hf_key, load_head, weights_file};
use longformer_model::{
    LocalAttentionKernel, LongformerConfig, LongformerForMaskedLM, load_weights,
};
use longformer_tests::gradients::{
    ParamGradient, assert_within, case_cotangent, case_input, compare_with_hf, param_gradients,
};
use longformer_tests::{
    HostTensor, PARITY_TOLERANCE, devices, fixtures_dir, max_abs_diff, read_safetensors,
};

/// Largest accepted relative error of a gradient tensor (the tolerance).
const GRAD_TOLERANCE: f64 = 1e-3;

/// A tensor's scale is at least this fraction of the model's largest gradient (see
/// [`compare_with_hf`]).
const SCALE_FLOOR: f64 = 1e-4;

/// A fixture directory's case, expected outputs and HF gradients.
struct Fixture {
    dir: std::path::PathBuf,
    config: LongformerConfig,
    case: HashMap<String, HostTensor>,
    expected: HashMap<String, HostTensor>,
    hf_grads: HashMap<String, HostTensor>,
}

impl Fixture {
    fn read(name: &str) -> Self {
        let dir = fixtures_dir().join(name);
        let read = |file: &str| read_safetensors(&dir.join(file));
        Self {
            config: LongformerConfig::from_json_file(dir.join("config.json")).unwrap(),
            case: read("case.safetensors"),
            expected: read("expected.safetensors"),
            hf_grads: read("grads.safetensors"),
            dir,
        }
    }

    /// `sum(output * cotangent)` of the fixture's `output` (flattened), back-propagated.
    fn loss(&self, what: &str, name: &str, output: Tensor<1>) -> Tensor<1> {
        let expected = &self.expected[name];
        let dims: [usize; 1] = [expected.values.len()];
        assert_eq!(output.dims(), dims, "{what}: {name}'s size");
        let diff = max_abs_diff(output.clone().detach(), &flat(expected));
        assert!(diff <= PARITY_TOLERANCE, "{what}: {name} differs by {diff}");
        let (cotangent, _) = case_cotangent(&self.case, name, &output.device());
        (output * cotangent).sum()
    }

    /// Every gradient of `module` within [`GRAD_TOLERANCE`] of HF's, and the padding rows
    /// of the word embeddings (when `word_row_frozen`) and of the positions exactly 0.
    fn check<M: Module>(
        &self,
        what: &str,
        module: &M,
        grads: &Gradients,
        encoder_prefix: &str,
        hf_name: impl Fn(&str) -> String,
        word_row_frozen: bool,
    ) {
        let found = param_gradients(module, grads);
        let pad = self.config.pad_token_id;
        let tables = if word_row_frozen {
            vec!["word_embeddings", "position_embeddings"]
        } else {
            vec!["position_embeddings"]
        };
        for table in tables {
            let path = format!("{encoder_prefix}embeddings.{table}.weight");
            let grad: &ParamGradient = found.iter().find(|g| g.path == path).unwrap();
            let width = grad.shape[1];
            let padding_row = &grad.values[pad * width..(pad + 1) * width];
            assert!(
                padding_row.iter().all(|&v| v == 0.0),
                "{what}: the padding row of {table} has a gradient (largest {})",
                padding_row.iter().fold(0.0f32, |m, v| m.max(v.abs()))
            );
        }
        let comparisons = compare_with_hf(what, &found, hf_name, &self.hf_grads, SCALE_FLOOR);
        assert_within(what, &comparisons, GRAD_TOLERANCE);
        println!("{what}: worst {}", comparisons[0].describe());
    }
}

/// A host tensor as one flat row.
fn flat(t: &HostTensor) -> HostTensor {
    HostTensor {
        shape: vec![t.values.len()],
        values: t.values.clone(),
    }
}

#[test]
fn gradients_with_padding_match_pytorch() {
    let fixture = Fixture::read("padding_grads");
    let pad = fixture.config.pad_token_id as i64;
    for (backend, device) in devices() {
        let device = device.autodiff();
        for kernel in [LocalAttentionKernel::Auto, LocalAttentionKernel::Reference] {
            let config = fixture.config.clone().with_local_attention_kernel(kernel);
            let model =
                load_weights(&config, weights_file(&fixture.dir).unwrap(), &device).unwrap();
            for checkpointed in [false, true] {
                let what = format!("{backend}, {kernel:?} kernel, checkpointed: {checkpointed}");
                let input = case_input(&fixture.case, pad, &device);
                let grads = if checkpointed {
                    let pass = model.try_forward_checkpointed(input).unwrap();
                    let hidden = pass.last_hidden_state.clone().flatten(0, 2);
                    let loss = fixture.loss(&what, "last_hidden_state", hidden);
                    pass.backward(&model, loss.backward())
                } else {
                    let hidden = model.try_forward(input).unwrap().last_hidden_state;
                    let loss = fixture.loss(&what, "last_hidden_state", hidden.flatten(0, 2));
                    loss.backward()
                };
                fixture.check(&what, &model, &grads, "", |p| hf_key(p, ""), true);
            }
        }
    }
}

#[test]
fn masked_lm_gradients_with_padding_match_pytorch() {
    let fixture = Fixture::read("padding_grads_mlm");
    let pad = fixture.config.pad_token_id as i64;
    for (backend, device) in devices() {
        let device = device.autodiff();
        for kernel in [LocalAttentionKernel::Auto, LocalAttentionKernel::Reference] {
            let mut head: LongformerForMaskedLM = load_head(&fixture.dir, &device).unwrap();
            head.longformer = head.longformer.with_local_attention_kernel(kernel);
            assert!(head.lm_head.decoder.is_none(), "the decoder is tied");
            for checkpointed in [false, true] {
                let what = format!(
                    "masked LM, {backend}, {kernel:?} kernel, checkpointed: {checkpointed}"
                );
                let input = case_input(&fixture.case, pad, &device);
                let grads = if checkpointed {
                    let (logits, pass) = head.forward_checkpointed(input).unwrap();
                    let loss = fixture.loss(&what, "logits", logits.flatten(0, 2));
                    pass.backward(&head.longformer, loss.backward())
                } else {
                    let logits = head.forward(input).unwrap();
                    fixture
                        .loss(&what, "logits", logits.flatten(0, 2))
                        .backward()
                };
                // The tied decoder gives the word embeddings' padding row its share.
                let name = |p: &str| head_hf_key(p, "longformer.");
                fixture.check(&what, &head, &grads, "longformer.", name, false);
            }
        }
    }
}
