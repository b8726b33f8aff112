//! Parameter gradients read back from a backward pass, by module path, and PyTorch's layout of
//! them: what the gradient comparisons against HF (fixtures and `scripts/grad_sweep.py`) and
//! between passes share.

use std::collections::{BTreeSet, HashMap};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Gradients, Tensor, TensorData};
use longformer_model::LongformerInput;

use crate::HostTensor;

/// One float parameter's gradient.
#[derive(Debug, Clone)]
pub struct ParamGradient {
    /// The parameter's module path (`encoder.layer.0.attention.self_attn.query.weight`).
    pub path: String,
    /// The parameter's shape, in Burn's layout (`Linear` weights `[in, out]`).
    pub shape: Vec<usize>,
    /// The gradient as f32, row-major; zeros where the backward pass left none.
    pub values: Vec<f32>,
    /// Whether the backward pass gave this parameter a gradient.
    pub present: bool,
}

/// Every float parameter's gradient in `grads`, in the module's visiting order.
pub fn param_gradients<M: Module>(module: &M, grads: &Gradients) -> Vec<ParamGradient> {
    struct Collect<'a> {
        grads: &'a Gradients,
        path: Vec<String>,
        out: Vec<ParamGradient>,
    }
    impl ModuleVisitor for Collect<'_> {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let shape = param.val().dims().to_vec();
            let (values, present) = match param.grad(self.grads) {
                Some(grad) => (
                    grad.into_data().convert::<f32>().iter::<f32>().collect(),
                    true,
                ),
                None => (vec![0.0; shape.iter().product()], false),
            };
            self.out.push(ParamGradient {
                path: self.path.join("."),
                shape,
                values,
                present,
            });
        }
    }
    let mut collect = Collect {
        grads,
        path: Vec::new(),
        out: Vec::new(),
    };
    module.visit(&mut collect);
    collect.out
}

/// A gradient in PyTorch's layout under its HF `name`: Burn stores `Linear` weights as
/// `[in, out]`, PyTorch as `[out, in]`; embeddings, biases and norms agree.
pub fn to_hf_layout(name: &str, shape: &[usize], values: Vec<f32>) -> (Vec<usize>, Vec<f32>) {
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
#[derive(Debug, Clone)]
pub struct GradientComparison {
    /// The HF parameter name.
    pub name: String,
    /// `max |ours - hf|` (infinite where ours is NaN).
    pub abs_err: f64,
    /// `max |hf|`.
    pub hf_max: f64,
    /// `abs_err` over the tensor's scale (see [`compare_with_hf`]).
    pub rel_err: f64,
}

impl GradientComparison {
    /// One line for a report.
    pub fn describe(&self) -> String {
        format!(
            "{}: relative {:.2e} (max abs err {:.2e}, max |hf| {:.2e})",
            self.name, self.rel_err, self.abs_err, self.hf_max
        )
    }
}

/// Our gradients against HF's (by HF name, in PyTorch's layout), worst first.
///
/// `hf_name` gives a module path's HF name. A tensor's scale is its largest HF magnitude, but at
/// least `scale_floor` times the largest HF gradient of the whole model: some gradients are zero
/// in exact arithmetic and hold only float32 round-off in both frameworks (the biases of `key`
/// and `key_global`, since softmax is invariant to a shift of a query's scores), which would
/// otherwise be compared with itself.
///
/// # Panics
/// Naming `what`: when a parameter has no HF gradient or the other way round, or a shape
/// differs, or HF's gradients are all zero.
pub fn compare_with_hf(
    what: &str,
    ours: &[ParamGradient],
    hf_name: impl Fn(&str) -> String,
    hf: &HashMap<String, HostTensor>,
    scale_floor: f64,
) -> Vec<GradientComparison> {
    let model_scale = hf
        .values()
        .flat_map(|t| t.values.iter())
        .fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(model_scale > 0.0, "{what}: HF's gradients are all zero");
    let ours_keys: BTreeSet<String> = ours.iter().map(|g| hf_name(&g.path)).collect();
    let hf_keys: BTreeSet<String> = hf.keys().cloned().collect();
    let never_compared: Vec<&String> = hf_keys.difference(&ours_keys).collect();
    let not_in_hf: Vec<&String> = ours_keys.difference(&hf_keys).collect();
    assert!(
        never_compared.is_empty() && not_in_hf.is_empty(),
        "{what}: HF gradients with no parameter here: {never_compared:?}; \
         parameters with no HF gradient: {not_in_hf:?}"
    );
    let mut comparisons: Vec<GradientComparison> = ours
        .iter()
        .map(|grad| {
            let name = hf_name(&grad.path);
            let expected = &hf[&name];
            let (shape, values) = to_hf_layout(&name, &grad.shape, grad.values.clone());
            assert_eq!(shape, expected.shape, "{what}: {name} shape");
            let hf_max = expected.values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let abs_err = values
                .iter()
                .zip(&expected.values)
                .map(|(&a, &e)| (f64::from(a) - e).abs())
                .map(|d| if d.is_nan() { f64::INFINITY } else { d })
                .fold(0.0, f64::max);
            GradientComparison {
                rel_err: abs_err / hf_max.max(scale_floor * model_scale).max(1e-12),
                name,
                abs_err,
                hf_max,
            }
        })
        .collect();
    comparisons.sort_by(|a, b| b.rel_err.total_cmp(&a.rel_err));
    comparisons
}

/// Fails, listing them, when any of `comparisons` is off by more than `tolerance` (relative).
pub fn assert_within(what: &str, comparisons: &[GradientComparison], tolerance: f64) {
    let failures: Vec<String> = comparisons
        .iter()
        .filter(|c| c.rel_err > tolerance)
        .map(GradientComparison::describe)
        .collect();
    assert!(
        failures.is_empty(),
        "{what}: gradients differ from PyTorch's:\n{}",
        failures.join("\n")
    );
}

/// The ids, masks and token types of a gradient case (`case.safetensors` of
/// `scripts/grad_sweep.py` and of the `padding_grads` fixtures: I64 `[batch, seq]`, HF's 0/1
/// masks) as an input; the loss is the sum over the outputs of `sum(output * cotangent)` (see
/// [`case_cotangent`]).
///
/// # Panics
/// When a tensor is missing or the input is invalid.
pub fn case_input(
    case: &HashMap<String, HostTensor>,
    pad_token_id: i64,
    device: &Device,
) -> LongformerInput {
    LongformerInput::try_from_rows(
        &case_tensor(case, "input_ids").rows_i64(),
        Some(&case_tensor(case, "attention_mask").rows_i64()),
        Some(&case_tensor(case, "global_attention_mask").rows_i64()),
        pad_token_id,
        device,
    )
    .unwrap_or_else(|e| panic!("the case's input: {e}"))
    .with_token_type_ids(case_tensor(case, "token_type_ids").int_tensor(device))
}

/// The cotangent of a gradient case's `output`, flattened, and its shape: `cotangent` for
/// `last_hidden_state`, `cotangent_<output>` for a head's outputs (`logits`, `start_logits`).
///
/// # Panics
/// When the case has no such cotangent.
pub fn case_cotangent(
    case: &HashMap<String, HostTensor>,
    output: &str,
    device: &Device,
) -> (Tensor<1>, Vec<usize>) {
    let name = match output {
        "last_hidden_state" => "cotangent".to_string(),
        _ => format!("cotangent_{output}"),
    };
    let cotangent = case_tensor(case, &name);
    let values: Vec<f32> = cotangent.values.iter().map(|&v| v as f32).collect();
    let len = values.len();
    (
        Tensor::from_data(TensorData::new(values, [len]), device),
        cotangent.shape.clone(),
    )
}

fn case_tensor<'a>(case: &'a HashMap<String, HostTensor>, name: &str) -> &'a HostTensor {
    case.get(name)
        .unwrap_or_else(|| panic!("the case has no {name}"))
}
