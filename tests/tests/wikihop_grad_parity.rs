//! Gradient parity of the WikiHop head and loss with PyTorch + HuggingFace `transformers`: the
//! `wikihop_grad` fixture (`python scripts/gen_fixtures.py wikihop_grad`) holds a tiny random
//! Longformer, its answer-scoring head, a batch of three chunks (two of them one example, so the
//! mean over chunks is exercised) and the gradient of the loss w.r.t. every parameter, under HF
//! names. Every backend must match the loss and logits within [`PARITY_TOLERANCE`] and every
//! gradient within [`GRAD_TOLERANCE`] relative error, with the recorded pass and with activation
//! checkpointing.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use burn::data::dataloader::batcher::Batcher;
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Gradients, Tensor, TensorData};
use longformer_data::{WikiHopBatcher, WikiHopChunk};
use longformer_model::loader::hf_key;
use longformer_model::{LongformerConfig, load_weights};
use longformer_tests::{
    HostTensor, PARITY_TOLERANCE, devices, fixtures_dir, max_abs_diff, read_safetensors,
};
use longformer_train::{Combine, WikiHopModel};

/// Largest accepted relative error of a gradient tensor: `max|ours - hf| / scale`.
///
/// On `ndarray` and `wgpu` the error (about 7e-4 on this fixture, on the `intermediate.dense`
/// gradients) comes from Burn's default `gelu_backward`, the derivative of the tanh
/// approximation (up to 8.7e-4 off the exact GELU's); `flex` differentiates the exact GELU.
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

/// Every float parameter's gradient (zeros where the backward pass left none), by module path.
struct GradCollector<'a> {
    grads: &'a Gradients,
    path: Vec<String>,
    /// Module path → (shape, gradient, whether autodiff returned one).
    found: BTreeMap<String, (Vec<usize>, Vec<f32>, bool)>,
}

impl ModuleVisitor for GradCollector<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let shape = param.val().dims().to_vec();
        let (values, present) = match param.grad(self.grads) {
            Some(grad) => (grad.into_data().iter::<f32>().collect(), true),
            None => (vec![0.0; shape.iter().product()], false),
        };
        let previous = self
            .found
            .insert(self.path.join("."), (shape, values, present));
        assert!(previous.is_none(), "two parameters at {:?}", self.path);
    }
}

/// The HF name of a parameter of [`WikiHopModel`].
fn hf_name(module_path: &str) -> String {
    match module_path.strip_prefix("longformer.") {
        Some(encoder_path) => hf_key(encoder_path, ""),
        None => module_path.to_string(),
    }
}

/// Burn stores `Linear` weights as `[in, out]`, PyTorch as `[out, in]`; embeddings agree.
fn to_hf_layout(name: &str, shape: &[usize], values: Vec<f32>) -> (Vec<usize>, Vec<f32>) {
    let is_linear_weight =
        shape.len() == 2 && name.ends_with(".weight") && !name.ends_with("_embeddings.weight");
    if !is_linear_weight {
        return (shape.to_vec(), values);
    }
    let (rows, cols) = (shape[0], shape[1]);
    let transposed = (0..cols)
        .flat_map(|c| (0..rows).map(move |r| (r, c)))
        .map(|(r, c)| values[r * cols + c])
        .collect();
    (vec![cols, rows], transposed)
}

/// One gradient tensor compared with HF's.
struct Comparison {
    name: String,
    abs_err: f64,
    hf_max: f64,
    rel_err: f64,
}

impl Comparison {
    fn describe(&self) -> String {
        format!(
            "{}: relative {:.2e} (max abs err {:.2e}, max |hf| {:.2e})",
            self.name, self.rel_err, self.abs_err, self.hf_max
        )
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
    // The largest HF gradient magnitude sets the floor of every tensor's scale.
    let model_scale = hf_grads
        .values()
        .flat_map(|t| t.values.iter())
        .fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(model_scale > 0.0, "the fixture's gradients are all zero");

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
            let mut collector = GradCollector {
                grads: &grads,
                path: Vec::new(),
                found: BTreeMap::new(),
            };
            model.visit(&mut collector);

            let ours_keys: BTreeSet<String> = collector.found.keys().map(|p| hf_name(p)).collect();
            let hf_keys: BTreeSet<String> = hf_grads.keys().cloned().collect();
            let never_compared: Vec<&String> = hf_keys.difference(&ours_keys).collect();
            let not_in_fixture: Vec<&String> = ours_keys.difference(&hf_keys).collect();
            assert!(
                never_compared.is_empty() && not_in_fixture.is_empty(),
                "{backend}: HF gradients with no parameter here: {never_compared:?}; \
             parameters with no HF gradient: {not_in_fixture:?}"
            );

            let mut comparisons = Vec::new();
            let mut nonzero = 0;
            for (path, (shape, values, present)) in collector.found {
                let name = hf_name(&path);
                let hf = &hf_grads[&name];
                let (shape, values) = to_hf_layout(&name, &shape, values);
                assert_eq!(shape, hf.shape, "{backend}: {name} shape");
                let hf_max = hf.values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                let abs_err = values
                    .iter()
                    .zip(&hf.values)
                    .map(|(&a, &e)| (f64::from(a) - e).abs())
                    .map(|d| if d.is_nan() { f64::INFINITY } else { d })
                    .fold(0.0, f64::max);
                if present && values.iter().any(|&v| v != 0.0) {
                    nonzero += 1;
                }
                comparisons.push(Comparison {
                    rel_err: abs_err / hf_max.max(SCALE_FLOOR * model_scale).max(1e-12),
                    name,
                    abs_err,
                    hf_max,
                });
            }
            assert!(
                nonzero * 2 > comparisons.len(),
                "{backend}: only {nonzero} of {} parameters have a nonzero gradient",
                comparisons.len()
            );

            comparisons.sort_by(|a, b| b.rel_err.total_cmp(&a.rel_err));
            println!(
                "{backend}: loss diff {loss_diff:.2e}, logits diff {logits_diff:.2e}; {} gradients, worst:",
                comparisons.len()
            );
            for c in &comparisons[..3] {
                println!("  {}", c.describe());
            }
            let failures: Vec<String> = comparisons
                .iter()
                .filter(|c| c.rel_err > GRAD_TOLERANCE)
                .map(Comparison::describe)
                .collect();
            assert!(
                failures.is_empty(),
                "{backend}: gradients differ from PyTorch's:\n{}",
                failures.join("\n")
            );
        }
    }
}
