//! `longformer encode`: run the encoder on ids from a JSON file and save `last_hidden_state`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use longformer_model::{LongformerConfig, LongformerInput, load_pretrained};
use serde::Deserialize;

use crate::backend::Backend;

/// Arguments of `longformer encode`.
#[derive(Args, Debug)]
pub struct EncodeArgs {
    /// HF model directory (config.json + model.safetensors or pytorch_model.bin).
    #[arg(long, default_value = "assets/tiny-longformer")]
    pub model: PathBuf,
    /// JSON file `{"input_ids": [[...]], "attention_mask": [[...]], "global_attention_mask": [[...]]}`;
    /// masks are optional, ragged rows are padded with `pad_token_id`.
    #[arg(long, conflicts_with = "text")]
    pub input: Option<PathBuf>,
    /// Text to encode with the model directory's tokenizer (`tokenizer.json`, or `vocab.json` +
    /// `merges.txt`); global attention goes on the first token (`<s>`).
    #[arg(long)]
    pub text: Option<String>,
    /// Where to write `last_hidden_state` (F32, `[batch, seq, hidden]`) as safetensors.
    #[arg(long, default_value = "runs/encode/last_hidden_state.safetensors")]
    pub output: PathBuf,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    pub backend: Backend,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputJson {
    input_ids: Vec<Vec<i64>>,
    attention_mask: Option<Vec<Vec<i64>>>,
    global_attention_mask: Option<Vec<Vec<i64>>>,
}

/// Runs the command.
pub fn run(args: EncodeArgs) -> Result<()> {
    let device = args.backend.device()?;
    let config = LongformerConfig::from_json_file(args.model.join("config.json"))?;
    let model = load_pretrained(&args.model, &device)
        .with_context(|| format!("loading the model in {}", args.model.display()))?;
    let rows = match (&args.input, &args.text) {
        (Some(path), None) => read_input(path)?,
        (None, Some(text)) => tokenize(&args.model, text)?,
        _ => bail!("give either --input FILE.json or --text \"...\""),
    };
    let input = LongformerInput::from_rows(
        &rows.input_ids,
        rows.attention_mask.as_deref(),
        rows.global_attention_mask.as_deref(),
        config.pad_token_id as i64,
        &device,
    );
    let [batch, seq] = input.dims();
    eprintln!(
        "encoding {batch} row(s) of {seq} tokens on {:?}",
        args.backend
    );
    let start = Instant::now();
    let hidden = model.try_forward(input)?.last_hidden_state;
    let dims = hidden.dims();
    let values: Vec<f32> = hidden.into_data().iter::<f32>().collect();
    let elapsed = start.elapsed();
    write_output(&args.output, &values, &dims)?;
    eprintln!(
        "wrote last_hidden_state {:?} to {} ({:.3} s)",
        dims,
        args.output.display(),
        elapsed.as_secs_f64()
    );
    Ok(())
}

fn read_input(path: &Path) -> Result<InputJson> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let input: InputJson = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a valid input file", path.display()))?;
    if input.input_ids.is_empty() || input.input_ids.iter().any(Vec::is_empty) {
        bail!(
            "{}: input_ids must hold at least one non-empty row",
            path.display()
        );
    }
    for (name, mask) in [
        ("attention_mask", &input.attention_mask),
        ("global_attention_mask", &input.global_attention_mask),
    ] {
        let Some(mask) = mask else { continue };
        if mask.len() != input.input_ids.len() {
            bail!(
                "{}: {name} has {} rows but input_ids has {}",
                path.display(),
                mask.len(),
                input.input_ids.len()
            );
        }
        for (row, (m, ids)) in mask.iter().zip(&input.input_ids).enumerate() {
            if m.len() != ids.len() {
                bail!(
                    "{}: {name} row {row} has {} entries but input_ids row {row} has {}",
                    path.display(),
                    m.len(),
                    ids.len()
                );
            }
        }
    }
    Ok(input)
}

fn tokenize(model_dir: &Path, text: &str) -> Result<InputJson> {
    let tokenizer = longformer_data::tokenizer::WikiHopTokenizer::from_dir(model_dir)?;
    let special = tokenizer.special();
    let encoding = tokenizer
        .inner()
        .encode(text, false)
        .map_err(|e| anyhow::anyhow!("tokenizing --text: {e}"))?;
    let ids: Vec<i64> = std::iter::once(special.start)
        .chain(encoding.get_ids().iter().copied())
        .chain(std::iter::once(special.separator))
        .map(i64::from)
        .collect();
    let mut global = vec![0; ids.len()];
    global[0] = 1;
    Ok(InputJson {
        input_ids: vec![ids],
        attention_mask: None,
        global_attention_mask: Some(vec![global]),
    })
}

fn write_output(path: &Path, values: &[f32], dims: &[usize]) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, dims.to_vec(), &bytes)?;
    let tensors: HashMap<String, _> = [("last_hidden_state".to_string(), view)].into();
    safetensors::serialize_to_file(&tensors, None, path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
