//! Gradient parity of the base model with PyTorch + HuggingFace `transformers`, padding
//! included: the `padding_grads` fixture (`python scripts/gen_fixtures.py padding_grads`) holds a
//! tiny random Longformer, a batch with right and left padding, pad ids inside a row and a
//! masked-out token, a cotangent on every position, and HF's gradient of
//! `sum(last_hidden_state * cotangent)` with respect to every parameter. HF's word and position
//! embeddings freeze their padding rows (`nn.Embedding(..., padding_idx)`), so those rows get no
//! gradient from the positions that read them; ours must match that and every other gradient
//! on every backend, both local-attention paths, recorded and with activation checkpointing.
//! `scripts/grad_sweep.py` runs the same comparison on random models and batches.

use longformer_model::loader::{hf_key, weights_file};
use longformer_model::{LocalAttentionKernel, LongformerConfig, load_weights};
use longformer_tests::gradients::{
    GradientComparison, compare_with_hf, gradient_case, param_gradients,
};
use longformer_tests::{PARITY_TOLERANCE, devices, fixtures_dir, max_abs_diff, read_safetensors};

/// Largest accepted relative error of a gradient tensor (the tolerance).
const GRAD_TOLERANCE: f64 = 1e-3;

/// A tensor's scale is at least this fraction of the model's largest gradient (see
/// [`compare_with_hf`]).
const SCALE_FLOOR: f64 = 1e-4;

#[test]
fn gradients_with_padding_match_pytorch() {
    let dir = fixtures_dir().join("padding_grads");
    let config = LongformerConfig::from_json_file(dir.join("config.json")).unwrap();
    let case = read_safetensors(&dir.join("case.safetensors"));
    let expected = read_safetensors(&dir.join("expected.safetensors"));
    let hf_grads = read_safetensors(&dir.join("grads.safetensors"));
    let pad = config.pad_token_id;

    for (backend, device) in devices() {
        let device = device.autodiff();
        for kernel in [LocalAttentionKernel::Auto, LocalAttentionKernel::Reference] {
            let config = config.clone().with_local_attention_kernel(kernel);
            let model = load_weights(&config, weights_file(&dir).unwrap(), &device).unwrap();
            for checkpointed in [false, true] {
                let what = format!("{backend}, {kernel:?} kernel, checkpointed: {checkpointed}");
                let (input, cotangent) = gradient_case(&case, pad as i64, &device);
                let (hidden, grads) = if checkpointed {
                    let pass = model.try_forward_checkpointed(input).unwrap();
                    let hidden = pass.last_hidden_state.clone();
                    let loss = (hidden.clone() * cotangent).sum();
                    (hidden, pass.backward(&model, loss.backward()))
                } else {
                    let hidden = model.try_forward(input).unwrap().last_hidden_state;
                    let loss = (hidden.clone() * cotangent).sum();
                    (hidden.clone(), loss.backward())
                };
                let diff = max_abs_diff(hidden.detach(), &expected["last_hidden_state"]);
                assert!(
                    diff <= PARITY_TOLERANCE,
                    "{what}: last_hidden_state differs by {diff}"
                );

                let found = param_gradients(&model, &grads);
                for table in ["word_embeddings", "position_embeddings"] {
                    let grad = found
                        .iter()
                        .find(|g| g.path == format!("embeddings.{table}.weight"))
                        .unwrap();
                    let width = grad.shape[1];
                    let padding_row = &grad.values[pad * width..(pad + 1) * width];
                    assert!(
                        padding_row.iter().all(|&v| v == 0.0),
                        "{what}: the padding row of {table} has a gradient (largest {})",
                        padding_row.iter().fold(0.0f32, |m, v| m.max(v.abs()))
                    );
                }
                let comparisons =
                    compare_with_hf(&what, &found, |p| hf_key(p, ""), &hf_grads, SCALE_FLOOR);
                let failures: Vec<String> = comparisons
                    .iter()
                    .filter(|c| c.rel_err > GRAD_TOLERANCE)
                    .map(GradientComparison::describe)
                    .collect();
                assert!(
                    failures.is_empty(),
                    "{what}: gradients differ from PyTorch's:\n{}",
                    failures.join("\n")
                );
                println!("{what}: worst {}", comparisons[0].describe());
            }
        }
    }
}
