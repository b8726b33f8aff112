//! The Rust side of `scripts/grad_sweep.py` (a dev tool, not a test): the gradients of a
//! HuggingFace-layout Longformer for one batch, under HF's parameter names, to compare with
//! PyTorch's.
//!
//! ```sh
//! cargo run -p longformer-tests --example grad_case -- DIR [--backend flex|ndarray|wgpu]
//!     [--kernel auto|fused|reference] [--checkpointed]
//! ```
//!
//! `DIR` holds a base model as `save_pretrained` writes it (`config.json`, `model.safetensors`;
//! its dropout should be 0) and `case.safetensors`: `input_ids`, `attention_mask`,
//! `global_attention_mask`, `token_type_ids` (I64, `[batch, seq]`, HF's 0/1 masks) and
//! `cotangent` (F32, `[batch, seq, hidden]`). The loss is `sum(last_hidden_state * cotangent)`;
//! its gradient with respect to every parameter (PyTorch's `[out, in]` for linear weights) and
//! `last_hidden_state` go to `DIR/grads-<backend>[-<kernel>][-checkpointed].safetensors`.

use std::path::PathBuf;

use burn::tensor::Device;
use longformer_model::loader::{hf_key, weights_file};
use longformer_model::{LocalAttentionKernel, LongformerConfig, load_weights};
use longformer_tests::gradients::{gradient_case, param_gradients, to_hf_layout};
use longformer_tests::read_safetensors;
use safetensors::tensor::{Dtype, TensorView};

/// The command line: the case directory and the run's choices.
struct Args {
    dir: PathBuf,
    backend: String,
    kernel: Option<String>,
    checkpointed: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut dir = None;
    let mut backend = "flex".to_string();
    let mut kernel = None;
    let mut checkpointed = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--backend" => backend = args.next().ok_or("--backend needs a value")?,
            "--kernel" => kernel = Some(args.next().ok_or("--kernel needs a value")?),
            "--checkpointed" => checkpointed = true,
            _ if dir.is_none() && !arg.starts_with("--") => dir = Some(PathBuf::from(arg)),
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    let dir = dir.ok_or("usage: grad_case DIR [--backend B] [--kernel K] [--checkpointed]")?;
    Ok(Args {
        dir,
        backend,
        kernel,
        checkpointed,
    })
}

#[allow(deprecated)] // ndarray is deprecated in Burn 0.22 but still a supported backend here
fn device(backend: &str) -> Result<Device, String> {
    match backend {
        "flex" => Ok(Device::flex()),
        "ndarray" => Ok(Device::ndarray()),
        "wgpu" => Ok(Device::wgpu(Default::default())),
        other => Err(format!("unknown backend {other:?} (flex, ndarray, wgpu)")),
    }
}

fn kernel(name: Option<&str>) -> Result<LocalAttentionKernel, String> {
    match name {
        None | Some("auto") => Ok(LocalAttentionKernel::Auto),
        Some("fused") => Ok(LocalAttentionKernel::Fused),
        Some("reference") => Ok(LocalAttentionKernel::Reference),
        Some(other) => Err(format!("unknown kernel {other:?} (auto, fused, reference)")),
    }
}

fn run(args: &Args) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let device = device(&args.backend)?.autodiff();
    let config = LongformerConfig::from_json_file(args.dir.join("config.json"))?
        .with_local_attention_kernel(kernel(args.kernel.as_deref())?);
    let model = load_weights(&config, weights_file(&args.dir)?, &device)?;

    let case = read_safetensors(&args.dir.join("case.safetensors"));
    let (input, cotangent) = gradient_case(&case, config.pad_token_id as i64, &device);

    let (hidden, grads) = if args.checkpointed {
        let pass = model.try_forward_checkpointed(input)?;
        let hidden = pass.last_hidden_state.clone();
        let loss = (hidden.clone() * cotangent).sum();
        (hidden, pass.backward(&model, loss.backward()))
    } else {
        let hidden = model.try_forward(input)?.last_hidden_state;
        let loss = (hidden.clone() * cotangent).sum();
        (hidden.clone(), loss.backward())
    };

    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    for grad in param_gradients(&model, &grads) {
        let name = hf_key(&grad.path, "");
        let (shape, values) = to_hf_layout(&name, &grad.shape, grad.values);
        tensors.push((name, shape, values));
    }
    let hidden_shape = hidden.dims().to_vec();
    let hidden: Vec<f32> = hidden.into_data().iter::<f32>().collect();
    tensors.push(("last_hidden_state".into(), hidden_shape, hidden));

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
