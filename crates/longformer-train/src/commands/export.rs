//! `longformer export`: a trained WikiHop run as a HuggingFace checkpoint directory, for
//! `transformers` (or [`longformer_model::load_pretrained`]) to load.
//!
//! The directory holds the run's encoder as HF's `LongformerModel.save_pretrained` writes it
//! (`config.json`, `model.safetensors`; the word embedding with the WikiHop markers' rows; no
//! pooler, which WikiHop does not train: `from_pretrained(dir, add_pooling_layer=False)`), the
//! run's tokenizer with the markers as added tokens (`tokenizer.json`), and the answer-scoring
//! layer, which no HF class has, as `wikihop_head.safetensors` (`answer_score.weight`,
//! `[1, hidden]`: a candidate's score is its `[ent]` token's hidden state times this row).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::Args;
use longformer_model::save_pretrained;

use crate::commands::train::TrainedRun;
use crate::model::WikiHopModel;
use crate::output::{f32_safetensors, write_file};
use crate::progress::note;

/// Flags of `longformer export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Run directory written by `longformer train` (run.json, config.json, best/, final/).
    #[arg(long, value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// Which weights: `best` (highest dev accuracy), `final`, a checkpoint directory
    /// (`RUN_DIR/checkpoints/step-N`) or a `model.bpk` file.
    #[arg(long, default_value = "best")]
    pub weights: String,
    /// The HF directory to write (config.json, model.safetensors, tokenizer.json,
    /// wikihop_head.safetensors).
    #[arg(long, value_name = "OUT_DIR")]
    pub to: PathBuf,
    /// Write into a directory that is not empty (its files of these names are replaced).
    #[arg(long)]
    pub force: bool,
}

/// Runs the command.
pub fn run(args: ExportArgs) -> Result<()> {
    check_output_dir(&args)?;
    // Export moves weights only: the CPU backend every build has.
    let TrainedRun {
        record,
        config,
        weights,
        tokenizer,
        model,
    } = TrainedRun::load(&args.run, &args.weights, &Device::flex())?;

    save_pretrained(&model.longformer, &config, &args.to)
        .with_context(|| format!("writing the encoder to {}", args.to.display()))?;
    let tokenizer_json = args.to.join("tokenizer.json");
    let text = tokenizer
        .inner()
        .to_string(false)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| {
            format!(
                "serializing the tokenizer of {}",
                record.tokenizer.display()
            )
        })?;
    write_file(&tokenizer_json, text.as_bytes())
        .with_context(|| format!("writing {}", tokenizer_json.display()))?;
    let head = args.to.join("wikihop_head.safetensors");
    write_file(&head, &answer_head_file(&model)?)
        .with_context(|| format!("writing {}", head.display()))?;
    note(&format!(
        "exported {} ({} layers, vocabulary {} with the WikiHop markers) to {}: config.json, \
         model.safetensors, tokenizer.json, wikihop_head.safetensors\n\
         Python: transformers.LongformerModel.from_pretrained({:?}, add_pooling_layer=False) \
         (WikiHop trains no pooler), AutoTokenizer.from_pretrained({:?})",
        weights.display(),
        config.num_hidden_layers,
        config.vocab_size,
        args.to.display(),
        args.to.display().to_string(),
        args.to.display().to_string(),
    ));
    Ok(())
}

/// Refuses an output that is a file, the run directory itself, or a non-empty directory
/// without `--force`, before anything is read.
fn check_output_dir(args: &ExportArgs) -> Result<()> {
    let to = &args.to;
    if to.exists() && !to.is_dir() {
        bail!("--to {}: exists and is not a directory", to.display());
    }
    let same = match (to.canonicalize(), args.run.canonicalize()) {
        (Ok(a), Ok(b)) => a == b || a.starts_with(&b),
        _ => false,
    };
    if same {
        bail!(
            "--to {} is inside the run directory {}; export elsewhere",
            to.display(),
            args.run.display()
        );
    }
    let non_empty = to.is_dir()
        && std::fs::read_dir(to)
            .with_context(|| format!("listing {}", to.display()))?
            .next()
            .is_some();
    if non_empty && !args.force {
        bail!(
            "--to {} exists and is not empty (--force writes into it)",
            to.display()
        );
    }
    Ok(())
}

/// `answer_score.weight` in PyTorch's layout (`[1, hidden]`, f32) as a safetensors file.
fn answer_head_file(model: &WikiHopModel) -> Result<Vec<u8>> {
    // Burn's `Linear` weight is `[d_in, d_out]` = `[hidden, 1]`: the same values as `[1, hidden]`.
    let weight = model.answer_score.weight.val();
    let [hidden, _] = weight.dims();
    let values: Vec<f32> = weight.into_data().convert::<f32>().iter::<f32>().collect();
    let metadata = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    Ok(f32_safetensors(
        &[("answer_score.weight", &values, vec![1, hidden])],
        Some(metadata),
    )?)
}
