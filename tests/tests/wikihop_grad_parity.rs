//! Gradient parity of the WikiHop head and loss with PyTorch + HuggingFace `transformers`: the
//! `wikihop_grad` fixture (`python scripts/gen_fixtures.py wikihop_grad`) holds a tiny random
//! Longformer, its answer-scoring head, a batch of three chunks (two of them one example, so the
//! mean over chunks is exercised) and the gradient of the loss w.r.t. every parameter, under HF
//! names. Every backend must match the loss and logits within [`PARITY_TOLERANCE`] and every
//! gradient within [`GRAD_TOLERANCE`] relative error, with the recorded pass and with activation
//! checkpointing.

use std::collections::HashMap;

use burn::data::dataloader::batcher::Batcher;
use burn::module::Param;
use burn::tensor::{Tensor, TensorData};
use longformer_data::{WikiHopBatcher, WikiHopChunk};
use longformer_model::loader::hf_key;
use longformer_model::{LongformerConfig, load_weights};
use longformer_tests::gradients::{assert_within, compare_with_hf, param_gradients};
use longformer_tests::{
    HostTensor, PARITY_TOLERANCE, devices, fixtures_dir, max_abs_diff, read_safetensors,
};
use longformer_train::{Combine, WikiHopModel};

/// Largest accepted relative error of a gradient tensor: `max|ours - hf| / scale`.
///
/// The tolerance. Every backend differentiates the exact GELU (`gelu_exact`), so the
/// worst errors on this fixture (2e-4 to 4e-4 of the scale) sit on gradients that are round-off
/// in both frameworks, at the [`SCALE_FLOOR`]; the real gradients agree to about 1e-5.
const GRAD_TOLERANCE: f64 = 1e-3;

/// The scale of a gradient tensor is its largest magnitude, but at least this fraction of the
/// largest gradient magnitude of the whole model. Some gradients are zero in exact arithmetic and
/// hold only float32 round-off in both frameworks (the biases of `key` and `key_global`: softmax
/// is invariant to a score shift per query; the last layer's local projections, which no `[ent]`
/// token — all global — reads; the last `output.LayerNorm.bias`, since the softmax gradients of
/// an example sum to zero): their round-off (up to ~6e-8 here, against a model scale of ~1.5)
/// would otherwise be compared with itself. Real gradients are checked at their own scale: the
/// smallest (`layer.0` `query`) is ~1.4e-4 of the model's largest.
const SCALE_FLOOR: f64 = 1e-4;

/// Padding id of the fixture's model (`config.json`'s `pad_token_id`).
const PAD: u32 = 1;

/// The fixture's batch as the chunks the data pipeline would produce.
fn fixture_chunks(expected: &HashMap<String, HostTensor>) -> Vec<WikiHopChunk> {
    let ids = expected["input_ids"].rows_i64();
    let mask = expected["attention_mask"].rows_i64();
    let global = expected["global_attention_mask"].rows_i64();
    let positions = expected["candidate_positions"].rows_i64();
    let candidates = expected["candidate_mask"].rows_i64();
    let answers = &expected["answer_index"].values;
    let examples = &expected["example"].values;
    (0..ids.len())
        .map(|row| {
            let example = examples[row] as usize;
            let chunks_of_example: Vec<usize> = (0..ids.len())
                .filter(|&r| examples[r] as usize == example)
                .collect();
            let len = mask[row].iter().filter(|&&m| m != 0).count();
            let global_len = global[row].iter().filter(|&&g| g != 0).count();
            assert!(
                global[row][..global_len].iter().all(|&g| g != 0),
                "the fixture's global tokens are a prefix of each row"
            );
            WikiHopChunk {
                id: format!("example-{example}"),
                chunk: chunks_of_example.iter().position(|&r| r == row).unwrap(),
                num_chunks: chunks_of_example.len(),
                input_ids: ids[row][..len].iter().map(|&t| t as u32).collect(),
                global_len,
                predicted_indices: positions[row]
                    .iter()
                    .zip(&candidates[row])
                    .filter(|(_, m)| **m != 0)
                    .map(|(&p, _)| p as u32)
                    .collect(),
                answer_index: answers[row] as usize,
            }
        })
        .collect()
}

/// The HF name of a parameter of [`WikiHopModel`].
fn hf_name(module_path: &str) -> String {
    match module_path.strip_prefix("longformer.") {
        Some(encoder_path) => hf_key(encoder_path, ""),
        None => module_path.to_string(),
    }
}

#[test]
fn wikihop_head_gradients_match_pytorch() {
    let dir = fixtures_dir().join("wikihop_grad");
    let config = LongformerConfig::from_json_file(dir.join("config.json")).unwrap();
    let expected = read_safetensors(&dir.join("expected.safetensors"));
    let head = read_safetensors(&dir.join("head.safetensors"));
    let hf_grads = read_safetensors(&dir.join("grads.safetensors"));
    let chunks = fixture_chunks(&expected);
    for (backend, device) in devices() {
        let device = device.autodiff();
        let encoder = load_weights(&config, dir.join("model.safetensors"), &device)
            .unwrap_or_else(|e| panic!("{backend}: {e}"));
        let mut model = WikiHopModel::new(encoder, config.hidden_size, &device);
        // PyTorch's [1, hidden] is Burn's [hidden, 1] (the same values, one per row).
        let hf_head = &head["answer_score.weight"];
        assert_eq!(hf_head.shape, [1, config.hidden_size]);
        let weight: Vec<f32> = hf_head.values.iter().map(|&v| v as f32).collect();
        model.answer_score.weight = Param::from_tensor(Tensor::<2>::from_data(
            TensorData::new(weight, [config.hidden_size, 1]),
            &device,
        ));

        let batch = WikiHopBatcher::new(PAD).batch(chunks.clone(), &device);
        for key in ["input_ids", "candidate_positions"] {
            let tensor = match key {
                "input_ids" => batch.input_ids.clone(),
                _ => batch.candidate_positions.clone(),
            };
            let ours: Vec<i64> = tensor.into_data().iter::<i64>().collect();
            let hf: Vec<i64> = expected[key].values.iter().map(|&v| v as i64).collect();
            assert_eq!(
                ours, hf,
                "{backend}: the batcher's {key} differ from the fixture's"
            );
        }

        // The recorded pass, then activation checkpointing (the layers recomputed one at a time
        // in the backward pass): both against PyTorch's gradients.
        for checkpointed in [false, true] {
            let (out, pass) = if checkpointed {
                let (out, pass) = model
                    .try_forward_checkpointed(&batch, Combine::Mean, None)
                    .unwrap();
                (out, Some(pass))
            } else {
                (model.forward(&batch, Combine::Mean), None)
            };
            let backend = if checkpointed {
                format!("{backend} (checkpointed)")
            } else {
                backend.to_string()
            };
            let finite = |t: Tensor<2>| t.into_data().iter::<f32>().all(f32::is_finite);
            assert!(
                finite(out.loss.clone().detach().unsqueeze())
                    && finite(out.logits.clone().detach()),
                "{backend}: non-finite loss or logits"
            );
            let loss_diff = max_abs_diff(out.loss.clone().detach(), &expected["loss"]);
            let logits_diff = max_abs_diff(out.logits.clone().detach(), &expected["logits"]);
            assert!(
                loss_diff <= PARITY_TOLERANCE && logits_diff <= PARITY_TOLERANCE,
                "{backend}: loss differs by {loss_diff}, logits by {logits_diff}"
            );

            let grads = match pass {
                Some(pass) => pass.backward(&model.longformer, out.loss.backward()),
                None => out.loss.backward(),
            };
            let found = param_gradients(&model, &grads);

            let nonzero = found
                .iter()
                .filter(|g| g.present && g.values.iter().any(|&v| v != 0.0))
                .count();
            let comparisons = compare_with_hf(&backend, &found, hf_name, &hf_grads, SCALE_FLOOR);
            assert!(
                nonzero * 2 > comparisons.len(),
                "{backend}: only {nonzero} of {} parameters have a nonzero gradient",
                comparisons.len()
            );

            println!(
                "{backend}: loss diff {loss_diff:.2e}, logits diff {logits_diff:.2e}; {} gradients, worst:",
                comparisons.len()
            );
            for c in &comparisons[..3] {
                println!("  {}", c.describe());
            }
            assert_within(&backend, &comparisons, GRAD_TOLERANCE);
        }
    }
}
