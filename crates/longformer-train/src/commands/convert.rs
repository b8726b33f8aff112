//! `longformer convert`: a RoBERTa checkpoint directory → a Longformer one (allenai's
//! `convert_model_to_long.ipynb` recipe). All the work is in [`crate::conversion`]; this file maps
//! flags to its options and prints.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::conversion::{ConvertOptions, convert_checkpoint};
use crate::progress::note;

/// Flags of `longformer convert`.
#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// RoBERTa directory: config.json + model.safetensors or pytorch_model.bin (keys bare or
    /// prefixed `roberta.`), tokenizer files optional.
    #[arg(long, value_name = "ROBERTA_DIR")]
    pub from: PathBuf,
    /// Output directory (created; must be empty unless --force): config.json, model.safetensors
    /// and the tokenizer files.
    #[arg(long, value_name = "OUT_DIR")]
    pub to: PathBuf,
    /// Longest sequence of the converted model in tokens; the position embedding gets
    /// max-pos + pad_token_id + 1 rows (max-pos + 2 for RoBERTa), the source's positions
    /// repeated to fill them.
    #[arg(long, value_name = "N", default_value_t = ConvertOptions::default().max_pos)]
    pub max_pos: usize,
    /// Full attention window of every layer (even; a token sees window/2 on each side).
    #[arg(long, value_name = "W", default_value_t = ConvertOptions::default().window)]
    pub window: usize,
    /// Write into an existing non-empty output directory, replacing files of the same name.
    #[arg(long)]
    pub force: bool,
}

/// Runs `longformer convert`.
pub fn run(args: ConvertArgs) -> Result<()> {
    let options = ConvertOptions {
        max_pos: args.max_pos,
        window: args.window,
        force: args.force,
    };
    let report = convert_checkpoint(&args.from, &args.to, &options, &mut |line| note(line))
        .with_context(|| {
            format!(
                "converting {} to a Longformer in {}",
                args.from.display(),
                args.to.display()
            )
        })?;
    note(&format!(
        "done: {} positions ({} rows, from {}), window {} in {} layers, {} tensors",
        options.max_pos,
        report.rows,
        report.source_rows,
        options.window,
        report.layers,
        report.tensors
    ));
    Ok(())
}
