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

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use burn::store::{ModuleStore, PytorchStore};
use burn::tensor::DType;
use longformer_model::LongformerConfig;
use safetensors::Dtype;
use serde_json::{Map, Value};

/// Tokenizer files copied from the source directory when present.
pub const TOKENIZER_FILES: [&str; 6] = [
    "tokenizer.json",
    "vocab.json",
    "merges.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
];

/// The position embedding's HF key, without prefix.
const POSITION_KEY: &str = "embeddings.position_embeddings.weight";

/// Buffers of RoBERTa's embeddings that older `transformers` saved and Longformer does not have.
const DROPPED_BUFFERS: [&str; 2] = ["embeddings.position_ids", "embeddings.token_type_ids"];

/// `model_type`s whose position ids start after the padding index, as this recipe assumes.
const ROBERTA_MODEL_TYPES: [&str; 3] = ["roberta", "xlm-roberta", "camembert"];

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

/// A tensor of a checkpoint as raw little-endian bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawTensor {
    /// Element type.
    pub dtype: Dtype,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` elements, row-major, little-endian.
    pub data: Vec<u8>,
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

/// Why a conversion failed; every variant names the file (and key) at fault.
#[derive(Debug)]
pub enum ConvertError {
    /// `--max-pos` or `--window` is unusable.
    Options(String),
    /// A file or directory could not be read or written.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON file is malformed or lacks a needed key.
    Json {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The source directory holds no weights.
    NoWeights(PathBuf),
    /// The source is not a RoBERTa checkpoint this recipe applies to.
    NotRoberta {
        /// The file that shows it.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A tensor the conversion needs is absent.
    MissingKey {
        /// The weight file.
        path: PathBuf,
        /// The missing key.
        key: String,
    },
    /// A tensor cannot be read or has an unusable shape or dtype.
    BadTensor {
        /// The weight file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The output directory exists and is not empty (use `force`), or is the source itself.
    OutputExists(PathBuf),
    /// The converted configuration would not load.
    Config(longformer_model::ConfigError),
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Options(message) => write!(f, "{message}"),
            Self::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Self::Json { path, message } => write!(f, "{}: {message}", path.display()),
            Self::NoWeights(dir) => write!(
                f,
                "{}: no model.safetensors or pytorch_model.bin",
                dir.display()
            ),
            Self::NotRoberta { path, reason } => {
                write!(f, "{}: not a RoBERTa checkpoint: {reason}", path.display())
            }
            Self::MissingKey { path, key } => {
                write!(f, "{}: missing tensor {key}", path.display())
            }
            Self::BadTensor { path, key, message } => {
                write!(f, "{}: tensor {key}: {message}", path.display())
            }
            Self::OutputExists(dir) => write!(
                f,
                "output directory {} exists and is not empty (pass --force to write into it)",
                dir.display()
            ),
            Self::Config(e) => write!(f, "the converted config.json would not load: {e}"),
        }
    }
}

impl std::error::Error for ConvertError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::Config(e) => Some(e),
            _ => None,
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ConvertError + '_ {
    move |source| ConvertError::Io {
        path: path.to_path_buf(),
        source,
    }
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
    let config = read_json_object(&config_path)?;
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
    let new_config = convert_config(config, converted.rows, options.window).map_err(|message| {
        ConvertError::Json {
            path: config_path.clone(),
            message,
        }
    })?;
    let config_text =
        serde_json::to_string_pretty(&Value::Object(new_config)).expect("JSON serializes");
    LongformerConfig::from_json_str(&config_text).map_err(ConvertError::Config)?;

    progress(&format!(
        "  position embedding: {} → {} rows (rows 0..={pad} kept, {} source positions tiled)",
        converted.source_rows,
        converted.rows,
        converted.source_rows - pad - 1
    ));
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
    std::fs::write(&out_config, config_text + "\n").map_err(io_error(&out_config))?;
    progress(&format!(
        "wrote {} (model_type longformer, max_position_embeddings {}, attention_window {} × {layers})",
        out_config.display(),
        converted.rows,
        options.window
    ));
    let tokenizer_files = copy_tokenizer(from, to, options.max_pos, progress)?;

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

fn check_output_dir(from: &Path, to: &Path, force: bool) -> Result<(), ConvertError> {
    if !to.exists() {
        return Ok(());
    }
    if !to.is_dir() {
        return Err(ConvertError::Io {
            path: to.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists and is not a directory",
            ),
        });
    }
    let same = match (from.canonicalize(), to.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(ConvertError::Options(format!(
            "--to {} is the source directory; write the conversion elsewhere",
            to.display()
        )));
    }
    let non_empty = std::fs::read_dir(to)
        .map_err(io_error(to))?
        .next()
        .is_some();
    if non_empty && !force {
        return Err(ConvertError::OutputExists(to.to_path_buf()));
    }
    Ok(())
}

fn read_json_object(path: &Path) -> Result<Map<String, Value>, ConvertError> {
    let text = std::fs::read_to_string(path).map_err(io_error(path))?;
    match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ConvertError::Json {
            path: path.to_path_buf(),
            message: "not a JSON object".into(),
        }),
        Err(e) => Err(ConvertError::Json {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
    }
}

fn json_usize(map: &Map<String, Value>, key: &str, path: &Path) -> Result<usize, ConvertError> {
    map.get(key)
        .and_then(Value::as_u64)
        .map(|v| v as usize)
        .ok_or_else(|| ConvertError::Json {
            path: path.to_path_buf(),
            message: format!("{key} is missing or not a non-negative integer"),
        })
}

/// A RoBERTa-family config with absolute positions (Longformer has no other kind).
fn check_roberta_config(config: &Map<String, Value>, path: &Path) -> Result<(), ConvertError> {
    let not_roberta = |reason: String| {
        Err(ConvertError::NotRoberta {
            path: path.to_path_buf(),
            reason,
        })
    };
    match config.get("model_type").and_then(Value::as_str) {
        None => {}
        Some(t) if ROBERTA_MODEL_TYPES.contains(&t) => {}
        Some("longformer") => return not_roberta("model_type is already \"longformer\"".into()),
        Some(t) => {
            return not_roberta(format!(
                "model_type is {t:?}; the recipe needs RoBERTa's position numbering \
                 (one of {ROBERTA_MODEL_TYPES:?})"
            ));
        }
    }
    match config.get("position_embedding_type") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if s == "absolute" => Ok(()),
        Some(other) => not_roberta(format!(
            "position_embedding_type is {other}; Longformer only has absolute positions"
        )),
    }
}

/// Reads every tensor of a `.safetensors` or PyTorch file as raw bytes.
pub fn read_tensors(path: &Path) -> Result<BTreeMap<String, RawTensor>, ConvertError> {
    let bad = |key: &str, message: String| ConvertError::BadTensor {
        path: path.to_path_buf(),
        key: key.to_string(),
        message,
    };
    if path.extension().is_some_and(|e| e == "safetensors") {
        let bytes = std::fs::read(path).map_err(io_error(path))?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| ConvertError::Json {
            path: path.to_path_buf(),
            message: format!("not a safetensors file: {e}"),
        })?;
        Ok(st
            .iter()
            .map(|(name, view)| {
                let tensor = RawTensor {
                    dtype: view.dtype(),
                    shape: view.shape().to_vec(),
                    data: view.data().to_vec(),
                };
                (name.to_string(), tensor)
            })
            .collect())
    } else {
        // The raw PyTorch tensors (PyTorch layout: no transposition happens before `apply`).
        let mut store = PytorchStore::from_file(path).map_indices_contiguous(false);
        let tensors = store.get_all_tensors().map_err(|e| ConvertError::Json {
            path: path.to_path_buf(),
            message: format!("not a readable PyTorch checkpoint: {e}"),
        })?;
        tensors
            .iter()
            .map(|(name, t)| {
                let dtype = safetensors_dtype(t.dtype)
                    .ok_or_else(|| bad(name, format!("unsupported dtype {:?}", t.dtype)))?;
                let data = t.to_bytes().map_err(|e| bad(name, e.to_string()))?;
                let tensor = RawTensor {
                    dtype,
                    shape: t.shape.to_vec(),
                    data: data.to_vec(),
                };
                Ok((name.clone(), tensor))
            })
            .collect()
    }
}

fn safetensors_dtype(dtype: DType) -> Option<Dtype> {
    Some(match dtype {
        DType::F64 => Dtype::F64,
        DType::F32 | DType::Flex32 => Dtype::F32,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        DType::I64 => Dtype::I64,
        DType::I32 => Dtype::I32,
        DType::I16 => Dtype::I16,
        DType::I8 => Dtype::I8,
        DType::U64 => Dtype::U64,
        DType::U32 => Dtype::U32,
        DType::U16 => Dtype::U16,
        DType::U8 => Dtype::U8,
        DType::Bool(_) => Dtype::BOOL,
        DType::QFloat(_) => return None,
    })
}

/// The tensors of a converted checkpoint.
#[derive(Debug, Clone)]
pub struct ConvertedTensors {
    /// Longformer keys → tensors.
    pub tensors: BTreeMap<String, RawTensor>,
    /// Rows of the source's position embedding.
    pub source_rows: usize,
    /// Rows of the new one.
    pub rows: usize,
    /// `"roberta."` or `""`.
    pub source_prefix: String,
    /// `"longformer."` or `""`.
    pub prefix: String,
    /// Source keys left out.
    pub dropped: Vec<String>,
}

/// The tensor part of the conversion: renames `roberta.` → `longformer.`, drops the position
/// buffers, extends the position embedding to `max_pos + pad_token_id + 1` rows and copies the
/// `layers` layers' query/key/value projections to their global twins. `path` names the source
/// file in errors.
pub fn convert_tensors(
    tensors: BTreeMap<String, RawTensor>,
    layers: usize,
    pad_token_id: usize,
    max_pos: usize,
    path: &Path,
) -> Result<ConvertedTensors, ConvertError> {
    let (source_prefix, prefix) = if tensors.contains_key(&format!("roberta.{POSITION_KEY}")) {
        ("roberta.", "longformer.")
    } else if tensors.contains_key(POSITION_KEY) {
        ("", "")
    } else {
        let found = tensors
            .keys()
            .find(|k| k.ends_with(POSITION_KEY))
            .map_or(String::new(), |k| format!(" (found {k})"));
        return Err(ConvertError::NotRoberta {
            path: path.to_path_buf(),
            reason: format!(
                "no {POSITION_KEY} or roberta.{POSITION_KEY}{found}; keys must be bare or \
                 prefixed roberta."
            ),
        });
    };
    if let Some(key) = tensors.keys().find(|k| k.contains("_global.")) {
        return Err(ConvertError::NotRoberta {
            path: path.to_path_buf(),
            reason: format!("it already has global projections ({key})"),
        });
    }

    let mut out = BTreeMap::new();
    let mut dropped = Vec::new();
    for (key, tensor) in tensors {
        let bare = key.strip_prefix(source_prefix).unwrap_or(&key);
        if DROPPED_BUFFERS.contains(&bare) {
            dropped.push(key);
            continue;
        }
        let new_key = match key.strip_prefix(source_prefix) {
            Some(rest) if !source_prefix.is_empty() => format!("{prefix}{rest}"),
            _ => key,
        };
        out.insert(new_key, tensor);
    }

    let position_key = format!("{prefix}{POSITION_KEY}");
    let source_key = format!("{source_prefix}{POSITION_KEY}");
    let position = &out[&position_key];
    let offset = pad_token_id + 1;
    let bad = |message: String| ConvertError::BadTensor {
        path: path.to_path_buf(),
        key: source_key.clone(),
        message,
    };
    let [source_rows, _] = position.shape[..] else {
        return Err(bad(format!("shape {:?} is not 2-D", position.shape)));
    };
    if source_rows <= offset {
        return Err(bad(format!(
            "{source_rows} rows leave no positions after padding_idx {pad_token_id}"
        )));
    }
    let source_positions = source_rows - offset;
    if max_pos < source_positions {
        return Err(ConvertError::Options(format!(
            "--max-pos {max_pos} is smaller than the source's {source_positions} positions \
             ({source_key} has {source_rows} rows)"
        )));
    }
    let rows = max_pos + offset;
    let extended = extend_position_embedding(position, rows, offset).map_err(bad)?;
    out.insert(position_key, extended);

    for layer in 0..layers {
        for projection in ["query", "key", "value"] {
            for part in ["weight", "bias"] {
                let base = format!("encoder.layer.{layer}.attention.self.");
                let local = format!("{prefix}{base}{projection}.{part}");
                let tensor = out
                    .get(&local)
                    .ok_or_else(|| ConvertError::MissingKey {
                        path: path.to_path_buf(),
                        key: format!("{source_prefix}{base}{projection}.{part}"),
                    })?
                    .clone();
                out.insert(format!("{prefix}{base}{projection}_global.{part}"), tensor);
            }
        }
    }

    Ok(ConvertedTensors {
        tensors: out,
        source_rows,
        rows,
        source_prefix: source_prefix.into(),
        prefix: prefix.into(),
        dropped,
    })
}

/// A position embedding of `rows` rows from `source` (`[source_rows, d_model]`, any dtype):
/// rows `0..offset` copied, then rows `offset..` filled with repeated copies of the source's rows
/// `offset..`, the last copy cut short:
///
/// ```text
/// k = offset; step = source_rows - offset
/// while k < rows: new[k : k + step] = source[offset:]; k += step
/// ```
///
/// `rows == source_rows` returns the source unchanged. Errors (as text) for a tensor that is not
/// 2-D, `rows < source_rows`, `offset >= source_rows` or data whose length does not fit the shape.
pub fn extend_position_embedding(
    source: &RawTensor,
    rows: usize,
    offset: usize,
) -> Result<RawTensor, String> {
    let [source_rows, d_model] = source.shape[..] else {
        return Err(format!("shape {:?} is not 2-D", source.shape));
    };
    if offset >= source_rows {
        return Err(format!(
            "offset {offset} leaves no rows to tile out of {source_rows}"
        ));
    }
    if rows < source_rows {
        return Err(format!(
            "cannot shrink {source_rows} rows to {rows}; the conversion only extends"
        ));
    }
    if source.data.len() * 8 != source_rows * d_model * source.dtype.bitsize() {
        return Err(format!(
            "{} bytes do not fit shape {:?}",
            source.data.len(),
            source.shape
        ));
    }
    let row_bytes = source.data.len() / source_rows;
    let tile = &source.data[offset * row_bytes..];
    let mut data = Vec::with_capacity(rows * row_bytes);
    data.extend_from_slice(&source.data[..offset * row_bytes]);
    while data.len() < rows * row_bytes {
        let n = tile.len().min(rows * row_bytes - data.len());
        data.extend_from_slice(&tile[..n]);
    }
    Ok(RawTensor {
        dtype: source.dtype,
        shape: vec![rows, d_model],
        data,
    })
}

/// The Longformer `config.json` of a RoBERTa one: every key kept, `model_type` `"longformer"`,
/// `max_position_embeddings` `rows`, `attention_window` `[window; num_hidden_layers]` and each
/// `architectures` entry `RobertaX` renamed `LongformerX` (`RobertaForMaskedLM` →
/// `LongformerForMaskedLM`, `RobertaModel` → `LongformerModel`; other names kept). Errors (as
/// text) when `num_hidden_layers` is missing or `architectures` is not a list of strings.
pub fn convert_config(
    mut config: Map<String, Value>,
    rows: usize,
    window: usize,
) -> Result<Map<String, Value>, String> {
    let layers = config
        .get("num_hidden_layers")
        .and_then(Value::as_u64)
        .ok_or("num_hidden_layers is missing or not a non-negative integer")?;
    config.insert("model_type".into(), "longformer".into());
    config.insert("max_position_embeddings".into(), rows.into());
    config.insert(
        "attention_window".into(),
        Value::Array(vec![window.into(); layers as usize]),
    );
    match config.get_mut("architectures") {
        None | Some(Value::Null) => {}
        Some(Value::Array(names)) => {
            for name in names.iter_mut() {
                let Value::String(s) = name else {
                    return Err(format!("architectures holds {name}, not a class name"));
                };
                if let Some(rest) = s.strip_prefix("Roberta") {
                    *s = format!("Longformer{rest}");
                }
            }
        }
        Some(other) => return Err(format!("architectures is {other}, not a list")),
    }
    Ok(config)
}

fn write_safetensors(
    tensors: &BTreeMap<String, RawTensor>,
    path: &Path,
) -> Result<(), ConvertError> {
    let views = tensors
        .iter()
        .map(|(key, t)| {
            safetensors::tensor::TensorView::new(t.dtype, t.shape.clone(), &t.data)
                .map(|view| (key.as_str(), view))
                .map_err(|e| ConvertError::BadTensor {
                    path: path.to_path_buf(),
                    key: key.clone(),
                    message: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // transformers reads the "format" entry to know the tensors are PyTorch's.
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(metadata), path).map_err(|e| ConvertError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })
}

/// Copies the tokenizer files of `from` into `to`, setting `model_max_length` to `max_pos` in
/// `tokenizer_config.json`. Returns the names copied.
fn copy_tokenizer(
    from: &Path,
    to: &Path,
    max_pos: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<String>, ConvertError> {
    let mut copied = Vec::new();
    for name in TOKENIZER_FILES {
        let source = from.join(name);
        if !source.is_file() {
            continue;
        }
        let target = to.join(name);
        if name == "tokenizer_config.json" {
            let mut json = read_json_object(&source)?;
            json.insert("model_max_length".into(), max_pos.into());
            let text = serde_json::to_string_pretty(&Value::Object(json)).expect("serializes");
            std::fs::write(&target, text + "\n").map_err(io_error(&target))?;
            progress(&format!(
                "wrote {} (model_max_length {max_pos})",
                target.display()
            ));
        } else {
            std::fs::copy(&source, &target).map_err(io_error(&target))?;
            progress(&format!("copied {}", target.display()));
        }
        copied.push(name.to_string());
    }
    if copied.is_empty() {
        progress("no tokenizer files in the source directory");
    }
    Ok(copied)
}

fn dtype_summary(tensors: &BTreeMap<String, RawTensor>) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for t in tensors.values() {
        *counts.entry(format!("{:?}", t.dtype)).or_default() += 1;
    }
    counts
        .iter()
        .map(|(d, n)| format!("{d} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rows` rows of width 2 whose values are the row index, as f32 bytes.
    fn numbered(rows: usize) -> RawTensor {
        let data = (0..rows)
            .flat_map(|r| [r as f32, r as f32 + 0.5])
            .flat_map(f32::to_le_bytes)
            .collect();
        RawTensor {
            dtype: Dtype::F32,
            shape: vec![rows, 2],
            data,
        }
    }

    fn first_column(t: &RawTensor) -> Vec<f32> {
        t.data
            .chunks_exact(4)
            .step_by(2)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn positions_keep_the_offset_rows_and_tile_the_rest() {
        // 6 rows: 0, 1 kept; 2..6 (4 positions) tiled into 11 rows, the last copy cut to 1 row.
        let out = extend_position_embedding(&numbered(6), 11, 2).unwrap();
        assert_eq!(out.shape, vec![11, 2]);
        assert_eq!(
            first_column(&out),
            vec![0., 1., 2., 3., 4., 5., 2., 3., 4., 5., 2.]
        );
    }

    #[test]
    fn same_length_is_a_copy_and_shrinking_an_error() {
        assert_eq!(
            extend_position_embedding(&numbered(6), 6, 2).unwrap(),
            numbered(6)
        );
        let err = extend_position_embedding(&numbered(6), 5, 2).unwrap_err();
        assert!(err.contains("cannot shrink 6 rows to 5"), "{err}");
    }

    #[test]
    fn config_keeps_keys_and_renames_architectures() {
        let config: Map<String, Value> = serde_json::from_str(
            r#"{"model_type": "roberta", "num_hidden_layers": 3, "max_position_embeddings": 514,
                "architectures": ["RobertaForMaskedLM", "RobertaModel", "Other"],
                "position_embedding_type": "absolute", "vocab_size": 50265}"#,
        )
        .unwrap();
        let out = convert_config(config, 4098, 512).unwrap();
        assert_eq!(out["model_type"], "longformer");
        assert_eq!(out["max_position_embeddings"], 4098);
        assert_eq!(out["attention_window"], serde_json::json!([512, 512, 512]));
        assert_eq!(
            out["architectures"],
            serde_json::json!(["LongformerForMaskedLM", "LongformerModel", "Other"])
        );
        assert_eq!(out["position_embedding_type"], "absolute");
        assert_eq!(out["vocab_size"], 50265);
    }

    fn small_state(prefix: &str) -> BTreeMap<String, RawTensor> {
        let mut state = BTreeMap::new();
        state.insert(format!("{prefix}{POSITION_KEY}"), numbered(5));
        state.insert(format!("{prefix}embeddings.position_ids"), numbered(1));
        for p in ["query", "key", "value"] {
            for part in ["weight", "bias"] {
                state.insert(
                    format!("{prefix}encoder.layer.0.attention.self.{p}.{part}"),
                    numbered(3),
                );
            }
        }
        state.insert("lm_head.bias".into(), numbered(2));
        state
    }

    #[test]
    fn tensors_are_renamed_copied_and_buffers_dropped() {
        let out = convert_tensors(small_state("roberta."), 1, 1, 7, Path::new("m")).unwrap();
        assert_eq!(out.dropped, vec!["roberta.embeddings.position_ids"]);
        assert_eq!(out.rows, 9);
        assert_eq!(out.tensors.len(), 1 + 6 + 6 + 1);
        assert!(out.tensors.keys().all(|k| !k.starts_with("roberta.")));
        assert_eq!(out.tensors["lm_head.bias"], numbered(2));
        assert_eq!(
            out.tensors["longformer.encoder.layer.0.attention.self.key_global.weight"],
            out.tensors["longformer.encoder.layer.0.attention.self.key.weight"]
        );
        let positions = &out.tensors[&format!("longformer.{POSITION_KEY}")];
        assert_eq!(
            first_column(positions),
            vec![0., 1., 2., 3., 4., 2., 3., 4., 2.]
        );
    }

    #[test]
    fn missing_projection_is_named() {
        let mut state = small_state("");
        state.remove("encoder.layer.0.attention.self.value.bias");
        let err = convert_tensors(state, 1, 1, 7, Path::new("w.bin"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "w.bin: missing tensor encoder.layer.0.attention.self.value.bias"
        );
    }

    #[test]
    fn longformer_and_prefixless_bert_sources_are_refused() {
        let mut state = small_state("");
        state.insert(
            "encoder.layer.0.attention.self.query_global.weight".into(),
            numbered(3),
        );
        let err = convert_tensors(state, 1, 1, 7, Path::new("w"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("already has global projections"), "{err}");
        let mut state = small_state("");
        let pos = state.remove(POSITION_KEY).unwrap();
        state.insert(format!("bert.{POSITION_KEY}"), pos);
        let err = convert_tensors(state, 1, 1, 7, Path::new("w"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not a RoBERTa checkpoint") && err.contains("found bert."),
            "{err}"
        );
    }
}
