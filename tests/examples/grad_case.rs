//! The Rust side of `scripts/grad_sweep.py` (a dev tool, not a test): the gradients of a
//! HuggingFace-layout Longformer or task head for one batch, under HF's parameter names, to
//! compare with PyTorch's.
//!
//! ```sh
//! cargo run -p longformer-tests --example grad_case -- DIR [--backend flex|ndarray|wgpu]
//!     [--kernel auto|fused|reference] [--checkpointed] [--head NAME]
//! ```
//!
//! `DIR` holds a model as `save_pretrained` writes it (`config.json`, `model.safetensors`; its
//! dropout should be 0), a base model or, with `--head`, one of the five heads (`mlm`,
//! `sequence-classification`, `question-answering`, `token-classification`,
//! `multiple-choice`, whose rows are the choices of one example), and `case.safetensors`:
//! `input_ids`, `attention_mask`, `global_attention_mask`, `token_type_ids` (I64,
//! `[batch, seq]`, HF's 0/1 masks) and a cotangent per output (`cotangent` for
//! `last_hidden_state`, `cotangent_<output>` for a head's). The loss is the sum over the outputs
//! of `sum(output * cotangent)`. With `cotangent_loss` in the case, a head's output is instead
//! its own loss (`loss`, HF's for the labels in the case: `labels`, `start_positions` and
//! `end_positions`, `regression_targets` or `multi_label_targets`); its gradient with respect to every parameter (PyTorch's
//! `[out, in]` for linear weights) and the outputs go to
//! `DIR/grads-<backend>[-<kernel>][-checkpointed].safetensors`.

use std::path::PathBuf;

use std::collections::HashMap;

use burn::module::Module;
use burn::tensor::{Device, Gradients, Tensor};
use longformer_model::loader::{head_hf_key, hf_key, load_head, weights_file};
use longformer_model::{
    CheckpointedPass, LocalAttentionKernel, LongformerConfig, LongformerForMaskedLM,
    LongformerForMultipleChoice, LongformerForQuestionAnswering,
    LongformerForSequenceClassification, LongformerForTokenClassification, LongformerInput,
    LongformerModel, MultipleChoiceInput, load_weights,
};
use longformer_tests::gradients::{case_cotangent, case_input, param_gradients, to_hf_layout};
use longformer_tests::{HostTensor, devices, read_safetensors};
use safetensors::tensor::{Dtype, TensorView};

/// The command line: the case directory and the run's choices.
struct Args {
    dir: PathBuf,
    backend: String,
    kernel: Option<String>,
    checkpointed: bool,
    head: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut dir = None;
    let mut backend = "flex".to_string();
    let mut kernel = None;
    let mut checkpointed = false;
    let mut head = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--backend" => backend = args.next().ok_or("--backend needs a value")?,
            "--kernel" => kernel = Some(args.next().ok_or("--kernel needs a value")?),
            "--checkpointed" => checkpointed = true,
            "--head" => head = Some(args.next().ok_or("--head needs a value")?),
            _ if dir.is_none() && !arg.starts_with("--") => dir = Some(PathBuf::from(arg)),
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    let dir = dir
        .ok_or("usage: grad_case DIR [--backend B] [--kernel K] [--checkpointed] [--head NAME]")?;
    Ok(Args {
        dir,
        backend,
        kernel,
        checkpointed,
        head,
    })
}

/// The backend named `name`, as the tests run it ([`devices`]).
fn device(name: &str) -> Result<Device, String> {
    devices()
        .into_iter()
        .find(|(backend, _)| *backend == name)
        .map(|(_, device)| device)
        .ok_or_else(|| format!("unknown backend {name:?} (flex, ndarray, wgpu)"))
}

/// `--kernel`, by the names `config.json` gives [`LocalAttentionKernel`] (`auto`, `fused`,
/// `reference`).
fn kernel(name: Option<&str>) -> Result<LocalAttentionKernel, String> {
    let name = name.unwrap_or("auto");
    serde_json::from_value(serde_json::Value::from(name))
        .map_err(|e| format!("unknown kernel {name:?}: {e}"))
}

/// A pass's outputs by name (`last_hidden_state`, `logits`, ...), each flattened, with its shape.
type Outputs = Vec<(&'static str, Vec<usize>, Tensor<1>)>;

fn flat<const D: usize>(name: &'static str, t: Tensor<D>) -> (&'static str, Vec<usize>, Tensor<1>) {
    (name, t.dims().to_vec(), t.flatten(0, D - 1))
}

/// Host tensors to write: HF name, shape, values.
type HostTensors = Vec<(String, Vec<usize>, Vec<f32>)>;

/// Back-propagates the sum of `outputs` times their cotangents (through `pass`, when the
/// encoder ran checkpointed) and returns the outputs and every parameter's gradient of `module`
/// under HF names.
fn backward<M: Module>(
    module: &M,
    encoder: &LongformerModel,
    outputs: Outputs,
    pass: Option<CheckpointedPass>,
    case: &HashMap<String, HostTensor>,
    hf_name: impl Fn(&str) -> String,
) -> HostTensors {
    let device = encoder.devices()[0].clone();
    let mut loss: Option<Tensor<1>> = None;
    let mut written = Vec::new();
    for (name, shape, output) in outputs {
        let (cotangent, cotangent_shape) = case_cotangent(case, name, &device);
        assert_eq!(shape, cotangent_shape, "{name}: the cotangent's shape");
        let term = (output.clone() * cotangent).sum();
        loss = Some(match loss {
            Some(sum) => sum + term,
            None => term,
        });
        written.push((
            name.to_string(),
            shape,
            output.detach().into_data().iter::<f32>().collect(),
        ));
    }
    let loss = loss.expect("a pass has outputs");
    let grads: Gradients = match pass {
        Some(pass) => pass.backward(encoder, loss.backward()),
        None => loss.backward(),
    };
    for grad in param_gradients(module, &grads) {
        let name = hf_name(&grad.path);
        let (shape, values) = to_hf_layout(&name, &grad.shape, grad.values);
        written.push((name, shape, values));
    }
    written
}

/// A task head's pass: its outputs and, when checkpointed, the encoder's pass.
fn head_pass<H, O>(
    head: &H,
    input: LongformerInput,
    checkpointed: bool,
    forward: impl Fn(&H, LongformerInput) -> Result<O, longformer_model::InputError>,
    forward_checkpointed: impl Fn(
        &H,
        LongformerInput,
    ) -> Result<(O, CheckpointedPass), longformer_model::InputError>,
    outputs: impl Fn(O) -> Result<Outputs, longformer_model::InputError>,
) -> Result<(Outputs, Option<CheckpointedPass>), longformer_model::InputError> {
    Ok(if checkpointed {
        let (out, pass) = forward_checkpointed(head, input)?;
        (outputs(out)?, Some(pass))
    } else {
        (outputs(forward(head, input)?)?, None)
    })
}

fn run(args: &Args) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let device = device(&args.backend)?.autodiff();
    let kernel = kernel(args.kernel.as_deref())?;
    let config = LongformerConfig::from_json_file(args.dir.join("config.json"))?;
    let case = read_safetensors(&args.dir.join("case.safetensors"));
    let input = case_input(&case, config.pad_token_id as i64, &device);
    let head_name = |path: &str| head_hf_key(path, "longformer.");
    let checkpointed = args.checkpointed;
    // With labels in the case, the output is the head's loss (its cotangent is 1).
    let with_loss = case.contains_key("cotangent_loss");
    let ints1 = |name: &str| case[name].int_tensor::<1>(&device);
    let ints2 = |name: &str| case[name].int_tensor::<2>(&device);

    // The masked-LM and token-classification arms: logits per token, a loss per token.
    macro_rules! per_token_head {
        ($head:ty) => {{
            let mut head: $head = load_head(&args.dir, &device)?;
            head.longformer = head.longformer.with_local_attention_kernel(kernel);
            let (outputs, pass) = head_pass(
                &head,
                input,
                checkpointed,
                <$head>::forward,
                <$head>::forward_checkpointed,
                |logits| {
                    Ok(if with_loss {
                        vec![flat("loss", head.loss(logits, ints2("labels"))?)]
                    } else {
                        vec![flat("logits", logits)]
                    })
                },
            )?;
            backward(&head, &head.longformer, outputs, pass, &case, head_name)
        }};
    }

    let tensors = match args.head.as_deref() {
        None => {
            let config = config.with_local_attention_kernel(kernel);
            let model = load_weights(&config, weights_file(&args.dir)?, &device)?;
            let (hidden, pass) = if checkpointed {
                let pass = model.try_forward_checkpointed(input)?;
                (pass.last_hidden_state.clone(), Some(pass))
            } else {
                (model.try_forward(input)?.last_hidden_state, None)
            };
            let outputs = vec![flat("last_hidden_state", hidden)];
            backward(&model, &model, outputs, pass, &case, |p| hf_key(p, ""))
        }
        Some("mlm") => {
            per_token_head!(LongformerForMaskedLM)
        }
        Some("sequence-classification") => {
            let mut head: LongformerForSequenceClassification = load_head(&args.dir, &device)?;
            head.longformer = head.longformer.with_local_attention_kernel(kernel);
            let (outputs, pass) = head_pass(
                &head,
                input,
                checkpointed,
                LongformerForSequenceClassification::forward,
                LongformerForSequenceClassification::forward_checkpointed,
                |logits| {
                    if !with_loss {
                        return Ok(vec![flat("logits", logits)]);
                    }
                    let loss = if case.contains_key("labels") {
                        head.loss(logits, ints1("labels"))?
                    } else if case.contains_key("regression_targets") {
                        let targets = case["regression_targets"].float_tensor(&device);
                        head.regression_loss(logits, targets)?
                    } else {
                        let targets = case["multi_label_targets"].float_tensor(&device);
                        head.multi_label_loss(logits, targets)?
                    };
                    Ok(vec![flat("loss", loss)])
                },
            )?;
            backward(&head, &head.longformer, outputs, pass, &case, head_name)
        }
        Some("question-answering") => {
            let mut head: LongformerForQuestionAnswering = load_head(&args.dir, &device)?;
            head.longformer = head.longformer.with_local_attention_kernel(kernel);
            let (outputs, pass) = head_pass(
                &head,
                input,
                checkpointed,
                LongformerForQuestionAnswering::forward,
                LongformerForQuestionAnswering::forward_checkpointed,
                |out| {
                    Ok(if with_loss {
                        let starts = ints1("start_positions");
                        vec![flat(
                            "loss",
                            head.loss(out, starts, ints1("end_positions"))?,
                        )]
                    } else {
                        vec![
                            flat("start_logits", out.start_logits),
                            flat("end_logits", out.end_logits),
                        ]
                    })
                },
            )?;
            backward(&head, &head.longformer, outputs, pass, &case, head_name)
        }
        Some("token-classification") => {
            per_token_head!(LongformerForTokenClassification)
        }
        Some("multiple-choice") => {
            let mut head: LongformerForMultipleChoice = load_head(&args.dir, &device)?;
            head.longformer = head.longformer.with_local_attention_kernel(kernel);
            let choices = input.input_ids.dims()[0];
            let input = MultipleChoiceInput::new(input, choices)?;
            let (logits, pass) = if checkpointed {
                let (logits, pass) = head.forward_checkpointed(input)?;
                (logits, Some(pass))
            } else {
                (head.forward(input)?, None)
            };
            let outputs = if with_loss {
                vec![flat("loss", head.loss(logits, ints1("labels"))?)]
            } else {
                vec![flat("logits", logits)]
            };
            backward(&head, &head.longformer, outputs, pass, &case, head_name)
        }
        Some(other) => return Err(format!("unknown head {other:?}").into()),
    };

    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(name, shape, values)| {
            let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name, shape, data)
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, shape, data)| {
            Ok((
                name.clone(),
                TensorView::new(Dtype::F32, shape.clone(), data)?,
            ))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    let mut file = format!("grads-{}", args.backend);
    if let Some(kernel) = &args.kernel {
        file += &format!("-{kernel}");
    }
    if args.checkpointed {
        file += "-checkpointed";
    }
    let path = args.dir.join(format!("{file}.safetensors"));
    safetensors::serialize_to_file(views, None, &path)?;
    Ok(path)
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    match run(&args) {
        Ok(path) => println!("{}", path.display()),
        Err(e) => {
            eprintln!("Error: {e}");
            std::process::exit(1)
        }
    }
}
