//! RoBERTa → Longformer checkpoint conversion, after allenai's `convert_model_to_long.ipynb`
//! (Beltagy, Peters, Cohan, 2020, section 5).
//!
//! [`convert_checkpoint`] reads a HuggingFace RoBERTa directory (`config.json` and
//! `model.safetensors` or `pytorch_model.bin`, keys bare or prefixed `roberta.`) and writes a
//! Longformer directory that both [`longformer_model::load_pretrained`] and HF's
//! `LongformerModel`/`LongformerForMaskedLM` load:
//!
//! | what | how |
//! |---|---|
//! | `embeddings.position_embeddings.weight` | extended to `max_pos + pad_token_id + 1` rows: rows `0..=pad_token_id` kept, the rest tiled with copies of the source's rows after them, the last copy cut short ([`extend_position_embedding`]) |
//! | `encoder.layer.{i}.attention.self.{query,key,value}.{weight,bias}` | also written as `…{query,key,value}_global…` |
//! | `roberta.` prefix | becomes `longformer.` (bare keys stay bare) |
//! | `embeddings.position_ids`, `embeddings.token_type_ids` | dropped: buffers `LongformerEmbeddings` does not have |
//! | every other tensor (`lm_head.*`, `classifier.*`, `pooler.*`, …) | carried over unchanged |
//! | `config.json` | every key kept; `model_type`, `max_position_embeddings`, `attention_window` (one per layer) and `architectures` (`RobertaX` → `LongformerX`) set ([`convert_config`]) |
//! | tokenizer files ([`TOKENIZER_FILES`]) | copied; `model_max_length` of `tokenizer_config.json` set to `max_pos` |
//!
//! Tensors keep their dtype (f32, f16, bf16, ...): the conversion only copies rows, so writing
//! the source's bytes is exact and an f16 checkpoint stays half the size. The output weights are
//! always `model.safetensors`.
//!
//! Differences from the notebook: position rows `0..=pad_token_id` (the padding row and the one
//! before it) are copied from the source rather than left uninitialised, the tiling fills every
//! new row (the notebook's `while k < max_pos - 1` could leave the last one empty), and the
//! `position_ids` buffer is dropped rather than regenerated (current transformers has none).
//!
//! Everything here is host-side byte manipulation: no tensor backend is involved.
//!
//! The work is split by role:
//!
//! - `tensors`: reading `.safetensors`/`.bin` into [`RawTensor`]s and writing `model.safetensors`.
//! - `recipe`: the conversion rules ([`convert_tensors`], [`extend_position_embedding`],
//!   [`convert_config`]).
//! - `files`: the output directory, `config.json` checks and the tokenizer copy.
//! - `error`: [`ConvertError`].

mod error;
mod files;
mod recipe;
mod tensors;

use std::path::{Path, PathBuf};

use longformer_model::LongformerConfig;
use serde_json::Value;

pub use error::ConvertError;
pub use files::TOKENIZER_FILES;
pub use recipe::{
    ConvertedTensors, check_against_config, convert_config, convert_tensors,
    extend_position_embedding,
};
pub use tensors::{RawTensor, read_tensors};

use error::io_error;
use files::{
    check_output_dir, check_roberta_config, human_bytes, json_usize, read_json_object,
    read_tokenizer_files, write_tokenizer_files,
};
use tensors::{dtype_summary, write_safetensors};

/// What to convert to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertOptions {
    /// Longest sequence of the converted model, in tokens (the position embedding gets
    /// `max_pos + pad_token_id + 1` rows). Must be at least the source's.
    pub max_pos: usize,
    /// Full attention window of every layer (even, positive).
    pub window: usize,
    /// Write into an existing non-empty output directory (files of the same name are replaced).
    pub force: bool,
}

impl Default for ConvertOptions {
    /// The paper's `longformer-base-4096`: 4,096 tokens, window 512.
    fn default() -> Self {
        Self {
            max_pos: 4096,
            window: 512,
            force: false,
        }
    }
}

/// What [`convert_checkpoint`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionReport {
    /// The weight file read.
    pub source_weights: PathBuf,
    /// Rows of the source's position embedding.
    pub source_rows: usize,
    /// Rows of the converted position embedding (`max_position_embeddings`).
    pub rows: usize,
    /// Number of layers whose projections were copied to the global ones.
    pub layers: usize,
    /// Tensors written to `model.safetensors`.
    pub tensors: usize,
    /// Size of the written `model.safetensors` in bytes.
    pub bytes: u64,
    /// Source keys not written (buffers Longformer has no use for).
    pub dropped: Vec<String>,
    /// Tokenizer files copied.
    pub tokenizer_files: Vec<String>,
}

/// Converts the RoBERTa directory `from` into a Longformer directory `to` (see the module docs),
/// reporting each step as one line to `progress`.
///
/// Errors: unusable options, `to` non-empty without `force` or equal to `from`, a missing or
/// malformed `config.json`, no weight file, a source that is not RoBERTa (no position embedding,
/// already Longformer, another `model_type`, relative positions), `max_pos` below the source's,
/// missing attention projections, and I/O failures; each names its file and key.
pub fn convert_checkpoint(
    from: &Path,
    to: &Path,
    options: &ConvertOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<ConversionReport, ConvertError> {
    check_options(options)?;
    if !from.is_dir() {
        return Err(ConvertError::Io {
            path: from.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
        });
    }
    check_output_dir(from, to, options.force)?;

    let config_path = from.join("config.json");
    let mut config = read_json_object(&config_path)?;
    check_roberta_config(&config, &config_path)?;

    let weights = ["model.safetensors", "pytorch_model.bin"]
        .iter()
        .map(|name| from.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| ConvertError::NoWeights(from.to_path_buf()))?;
    let size = std::fs::metadata(&weights)
        .map_err(io_error(&weights))?
        .len();
    progress(&format!(
        "reading {} ({})",
        weights.display(),
        human_bytes(size)
    ));
    let tensors = read_tensors(&weights)?;
    progress(&format!(
        "  {} tensors, dtypes {}",
        tensors.len(),
        dtype_summary(&tensors)
    ));

    let layers = json_usize(&config, "num_hidden_layers", &config_path)?;
    let pad = match config.get("pad_token_id") {
        None | Some(Value::Null) => 1,
        Some(_) => json_usize(&config, "pad_token_id", &config_path)?,
    };
    let converted = convert_tensors(tensors, layers, pad, options.max_pos, &weights)?;
    // The pad id the positions were laid out for (HF's default 1 when the source has none).
    config.insert("pad_token_id".into(), pad.into());
    let new_config = convert_config(config, converted.rows, options.window).map_err(|message| {
        ConvertError::Json {
            path: config_path.clone(),
            message,
        }
    })?;
    let config_text =
        serde_json::to_string_pretty(&Value::Object(new_config)).expect("JSON serializes");
    let longformer_config =
        LongformerConfig::from_json_str(&config_text).map_err(ConvertError::Config)?;
    check_against_config(&converted, &longformer_config, &weights)?;
    // Every source file is read and checked before anything is written.
    let tokenizer = read_tokenizer_files(from, options.max_pos)?;

    if converted.rows == converted.source_rows {
        progress(&format!(
            "  position embedding: {} rows, kept (--max-pos is the source's)",
            converted.rows
        ));
    } else {
        progress(&format!(
            "  position embedding: {} → {} rows (rows 0..={pad} kept, {} source positions tiled)",
            converted.source_rows,
            converted.rows,
            converted.source_rows - pad - 1
        ));
    }
    progress(&format!(
        "  global projections: query/key/value copied in {layers} layers; prefix {:?} → {:?}",
        converted.source_prefix, converted.prefix
    ));
    for key in &converted.dropped {
        progress(&format!("  dropped buffer {key}"));
    }

    std::fs::create_dir_all(to).map_err(io_error(to))?;
    let out_weights = to.join("model.safetensors");
    write_safetensors(&converted.tensors, &out_weights)?;
    let bytes = std::fs::metadata(&out_weights)
        .map_err(io_error(&out_weights))?
        .len();
    progress(&format!(
        "wrote {} ({} tensors, {})",
        out_weights.display(),
        converted.tensors.len(),
        human_bytes(bytes)
    ));
    let out_config = to.join("config.json");
    crate::output::write_file(&out_config, (config_text + "\n").as_bytes())
        .map_err(io_error(&out_config))?;
    progress(&format!(
        "wrote {} (model_type longformer, max_position_embeddings {}, attention_window {} × {layers})",
        out_config.display(),
        converted.rows,
        options.window
    ));
    let tokenizer_files = write_tokenizer_files(tokenizer, to, options.max_pos, progress)?;

    Ok(ConversionReport {
        source_weights: weights,
        source_rows: converted.source_rows,
        rows: converted.rows,
        layers,
        tensors: converted.tensors.len(),
        bytes,
        dropped: converted.dropped,
        tokenizer_files,
    })
}

fn check_options(options: &ConvertOptions) -> Result<(), ConvertError> {
    if options.window == 0 || !options.window.is_multiple_of(2) {
        return Err(ConvertError::Options(format!(
            "--window {} must be even and positive (it is the full window: {} tokens on each side)",
            options.window,
            options.window / 2
        )));
    }
    if options.max_pos == 0 {
        return Err(ConvertError::Options("--max-pos must be positive".into()));
    }
    Ok(())
}
