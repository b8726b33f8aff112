//! Loading HuggingFace Longformer checkpoints.
//!
//! A checkpoint directory holds `config.json` and `model.safetensors` or `pytorch_model.bin`.
//! Keys may be bare (`LongformerModel.save_pretrained`), prefixed `longformer.` (task-head
//! models) or `roberta.` (the original allenai release). HF key → module path:
//!
//! | HF key | module path |
//! |---|---|
//! | `embeddings.{word,position,token_type}_embeddings.weight` | same |
//! | `embeddings.LayerNorm.{weight,bias}` | `embeddings.layer_norm.{gamma,beta}` |
//! | `encoder.layer.{i}.attention.self.{query,key,value}{,_global}.{weight,bias}` | `encoder.layer.{i}.attention.self_attn.…` (weights transposed) |
//! | `encoder.layer.{i}.attention.output.{dense,LayerNorm}.…` | `….attention.output.{dense,layer_norm}.…` |
//! | `encoder.layer.{i}.{intermediate,output}.dense.…`, `output.LayerNorm.…` | same, `layer_norm` |
//! | `pooler.dense.{weight,bias}` | same (the pooler is built only when the file has it) |
//!
//! [`load_pretrained`] ignores head weights (`lm_head.*`, `classifier.*`, `qa_outputs.*`) and
//! the `position_ids` buffer; any other unknown key, a missing key, a wrong shape or a non-float
//! tensor is an error naming the key and the file. Half-precision and f64 checkpoints are
//! converted to f32.
//!
//! Task-head models ([`crate::heads`]) load with [`load_head`]: their modules carry HF's names
//! (`longformer`, `lm_head`, `classifier`, `qa_outputs`), so a head checkpoint's keys are module
//! paths after the same two renamings (`roberta.` and bare encoder keys become `longformer.`);
//! head keys (`lm_head.layer_norm.weight`, `classifier.out_proj.bias`, ...) map to themselves, with
//! the same strict checks. [`load_with_new_head`] starts a head from any checkpoint's encoder.

use std::path::{Path, PathBuf};

use burn::store::{
    ApplyError, ApplyResult, FloatCastAdapter, ModuleAdapter, ModuleSnapshot, ModuleStore,
    PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};
use burn::tensor::{DType, Device};

use crate::config::LongformerConfig;
use crate::error::LoadError;
use crate::heads::{LongformerHeadConfig, TaskHead};
use crate::model::LongformerModel;

/// Key prefixes of HF checkpoints, tried in this order.
const PREFIXES: [&str; 2] = ["longformer.", "roberta."];

/// Keys a base-model load ignores: task heads.
const HEAD_PREFIXES: [&str; 3] = ["lm_head.", "classifier.", "qa_outputs."];

/// Buffers HF may save with the encoder; every load ignores them.
const BUFFERS: [&str; 2] = ["embeddings.position_ids", "embeddings.token_type_ids"];

/// Loads `config.json` and the weights of a HuggingFace model directory.
pub fn load_pretrained(
    dir: impl AsRef<Path>,
    device: &Device,
) -> Result<LongformerModel, LoadError> {
    let dir = dir.as_ref();
    let config = LongformerConfig::from_json_file(dir.join("config.json"))?;
    load_weights(&config, weights_file(dir)?, device)
}

/// The weight file of a model directory: `model.safetensors`, else `pytorch_model.bin`.
pub fn weights_file(dir: &Path) -> Result<PathBuf, LoadError> {
    ["model.safetensors", "pytorch_model.bin"]
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| LoadError::NoWeights(dir.to_path_buf()))
}

/// Builds a model for `config` and fills it from a `.safetensors` or PyTorch (`.bin`, `.pt`) file.
pub fn load_weights(
    config: &LongformerConfig,
    path: impl AsRef<Path>,
    device: &Device,
) -> Result<LongformerModel, LoadError> {
    config.validate()?;
    let path = path.as_ref();
    let keys = file_keys(path)?;
    let prefix = detect_prefix(&keys);
    let has_pooler = keys
        .iter()
        .any(|k| k.starts_with(&format!("{prefix}pooler.")));
    let mut model = config.init_with_pooler(has_pooler, device);
    let mut remaps = Vec::new();
    if !prefix.is_empty() {
        remaps.push((format!("^{}", regex_escape(&prefix)), String::new()));
    }
    remaps.extend(encoder_remaps());
    let result = apply_file(&mut model, path, &remaps)?;
    check_result(
        result,
        path,
        |k| hf_key(k, &prefix),
        |k| {
            HEAD_PREFIXES
                .iter()
                .chain(&BUFFERS)
                .any(|p| k.starts_with(p))
        },
    )?;
    Ok(model)
}

/// Loads a task-head model (see [`crate::heads`]) from a HuggingFace directory: `config.json`
/// and `model.safetensors` or `pytorch_model.bin`, as the head's `save_pretrained` writes them.
///
/// Strict: every tensor of the model must be in the file and every tensor of the file must be
/// used, except the buffers `position_ids` / `token_type_ids` and the head's own duplicates
/// ([`TaskHead::IGNORED_KEYS`], e.g. the tied `lm_head.decoder.weight`). A base-model checkpoint
/// lacks the head's keys and is an error naming them: start a head from one with
/// [`load_with_new_head`].
pub fn load_head<H: TaskHead>(dir: impl AsRef<Path>, device: &Device) -> Result<H, LoadError> {
    let dir = dir.as_ref();
    let config = LongformerHeadConfig::from_json_file(dir.join("config.json"))?;
    load_head_weights(&config, weights_file(dir)?, device)
}

/// Builds a head model for `config` and fills it, strictly, from a `.safetensors` or PyTorch
/// file. Encoder keys may be prefixed `longformer.` (HF heads), `roberta.` or bare.
pub fn load_head_weights<H: TaskHead>(
    config: &LongformerHeadConfig,
    path: impl AsRef<Path>,
    device: &Device,
) -> Result<H, LoadError> {
    let path = path.as_ref();
    let mut model: H = config.init(device)?;
    let keys = file_keys(path)?;
    let prefix = detect_prefix(&keys);
    let mut remaps = match prefix.as_str() {
        "longformer." => Vec::new(),
        "" => vec![(
            r"^(embeddings|encoder|pooler)\.".to_string(),
            "longformer.${1}.".to_string(),
        )],
        other => vec![(
            format!("^{}", regex_escape(other)),
            "longformer.".to_string(),
        )],
    };
    remaps.extend(encoder_remaps());
    remaps.extend(H::key_remaps(&keys));
    let result = apply_file(&mut model, path, &remaps)?;
    check_result(
        result,
        path,
        |k| head_hf_key(k, &prefix),
        |k| {
            H::IGNORED_KEYS.contains(&k)
                || k.strip_prefix("longformer.")
                    .is_some_and(|rest| BUFFERS.iter().any(|p| rest.starts_with(p)))
        },
    )?;
    Ok(model)
}

/// Starts a head model from any Longformer checkpoint directory (a base model, or another
/// head's): the encoder is loaded as [`load_pretrained`] loads it (strictly, other heads'
/// weights ignored) and the head is freshly initialised as HF's `_init_weights` does, as HF's
/// `from_pretrained` does for a fine-tuning run. The pooler follows the head: kept (or freshly
/// initialised, when the checkpoint has none) for multiple choice, dropped otherwise.
pub fn load_with_new_head<H: TaskHead>(
    dir: impl AsRef<Path>,
    device: &Device,
) -> Result<H, LoadError> {
    let dir = dir.as_ref();
    let config = LongformerHeadConfig::from_json_file(dir.join("config.json"))?;
    let encoder = load_weights(&config.model, weights_file(dir)?, device)?;
    Ok(H::with_encoder(encoder, &config, device)?)
}

/// The keys of a weight file, as written; PyTorch files must be float32.
fn file_keys(path: &Path) -> Result<Vec<String>, LoadError> {
    if is_safetensors(path) {
        return SafetensorsStore::from_file(path)
            .keys()
            .map_err(|e| read_error(path, e));
    }
    // PytorchStore always applies the PyTorch → Burn adapter and cannot cast: require f32.
    let mut raw = PytorchStore::from_file(path);
    let tensors = raw.get_all_tensors().map_err(|e| read_error(path, e))?;
    if let Some(t) = tensors
        .values()
        .find(|t| t.dtype.is_float() && t.dtype != DType::F32)
    {
        return Err(LoadError::BadTensor {
            path: path.to_path_buf(),
            key: t.name.clone(),
            message: format!(
                "dtype {:?}; PyTorch checkpoints must be float32 (save as safetensors to load half precision)",
                t.dtype
            ),
        });
    }
    Ok(tensors.keys().cloned().collect())
}

fn is_safetensors(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "safetensors")
}

/// Fills `module` from the file at `path`, keys renamed by `remaps` (regex, replacement) in order.
fn apply_file<M: ModuleSnapshot>(
    module: &mut M,
    path: &Path,
    remaps: &[(String, String)],
) -> Result<ApplyResult, LoadError> {
    if is_safetensors(path) {
        let mut store = remaps
            .iter()
            .fold(SafetensorsStore::from_file(path), |s, (from, to)| {
                s.with_key_remapping(from, to.as_str())
            })
            .with_from_adapter(PyTorchToBurnAdapter.chain(FloatCastAdapter::to(DType::F32)))
            .validate(false)
            .allow_partial(true);
        module
            .load_from(&mut store)
            .map_err(|e| read_error(path, e))
    } else {
        let mut store = remaps
            .iter()
            .fold(PytorchStore::from_file(path), |s, (from, to)| {
                s.with_key_remapping(from, to.as_str())
            })
            .validate(false)
            .allow_partial(true);
        module
            .load_from(&mut store)
            .map_err(|e| read_error(path, e))
    }
}

/// The prefix every model key carries in this file (`""`, `"longformer."` or `"roberta."`).
fn detect_prefix(keys: &[String]) -> String {
    let has = |p: &str| {
        keys.iter()
            .any(|k| k.starts_with(&format!("{p}embeddings.")))
    };
    PREFIXES
        .iter()
        .find(|p| has(p))
        .map(|p| p.to_string())
        .unwrap_or_default()
}

/// HF names → module paths inside the encoder.
fn encoder_remaps() -> [(String, String); 2] {
    [
        (r"\.LayerNorm\.".into(), ".layer_norm.".into()),
        (
            r"\.attention\.self\.".into(),
            ".attention.self_attn.".into(),
        ),
    ]
}

/// Missing keys, unused keys (unless `ignored`) and tensor errors as a [`LoadError`]; `key_of`
/// turns a module path back into the file's key.
fn check_result(
    result: ApplyResult,
    path: &Path,
    key_of: impl Fn(&str) -> String,
    ignored: impl Fn(&str) -> bool,
) -> Result<(), LoadError> {
    if let Some(error) = result.errors.first() {
        let (key, message) = match error {
            ApplyError::ShapeMismatch {
                path,
                expected,
                found,
            } => (
                path,
                format!(
                    "shape {:?} does not fit the model's {:?}",
                    found.as_slice(),
                    expected.as_slice()
                ),
            ),
            ApplyError::DTypeMismatch {
                path,
                expected,
                found,
            } => (
                path,
                format!("dtype {found:?} where the model needs {expected:?}"),
            ),
            ApplyError::AdapterError { path, message }
            | ApplyError::LoadError { path, message } => (path, message.clone()),
        };
        return Err(LoadError::BadTensor {
            path: path.to_path_buf(),
            key: key_of(key),
            message,
        });
    }
    if !result.missing.is_empty() {
        return Err(LoadError::MissingKeys {
            path: path.to_path_buf(),
            keys: result.missing.iter().map(|(k, _)| key_of(k)).collect(),
        });
    }
    let unexpected: Vec<String> = result
        .unused
        .iter()
        .filter(|k| !ignored(k))
        .map(|k| key_of(k))
        .collect();
    if !unexpected.is_empty() {
        return Err(LoadError::UnexpectedKeys {
            path: path.to_path_buf(),
            keys: unexpected,
        });
    }
    Ok(())
}

/// The checkpoint key of a module path (inverse of the prefix removal, `encoder_remaps` and
/// the norm renaming).
pub fn hf_key(module_path: &str, prefix: &str) -> String {
    let key = module_path
        .replace(".attention.self_attn.", ".attention.self.")
        .replace(".layer_norm.", ".LayerNorm.");
    let key = if key.contains(".LayerNorm.") {
        key.replace(".gamma", ".weight").replace(".beta", ".bias")
    } else {
        key
    };
    format!("{prefix}{key}")
}

/// The checkpoint key of a head model's module path: encoder paths (`longformer.…`) as
/// [`hf_key`] with the file's `prefix`, head paths with HF's `weight`/`bias` for norm parameters.
pub fn head_hf_key(module_path: &str, prefix: &str) -> String {
    match module_path.strip_prefix("longformer.") {
        Some(rest) => hf_key(rest, prefix),
        None if module_path.contains("layer_norm.") => module_path
            .replace("layer_norm.gamma", "layer_norm.weight")
            .replace("layer_norm.beta", "layer_norm.bias"),
        None => module_path.to_string(),
    }
}

fn read_error(path: &Path, e: impl std::fmt::Display) -> LoadError {
    LoadError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn regex_escape(s: &str) -> String {
    s.replace('.', r"\.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_paths_map_back_to_hf_keys() {
        assert_eq!(
            hf_key(
                "encoder.layer.3.attention.self_attn.key_global.weight",
                "roberta."
            ),
            "roberta.encoder.layer.3.attention.self.key_global.weight"
        );
        assert_eq!(
            hf_key("embeddings.layer_norm.gamma", ""),
            "embeddings.LayerNorm.weight"
        );
    }

    #[test]
    fn directory_without_weights_is_an_error() {
        let dir = std::env::temp_dir().join("longformer-no-weights");
        std::fs::create_dir_all(&dir).unwrap();
        let err = weights_file(&dir).unwrap_err().to_string();
        assert!(
            err.contains("no model.safetensors or pytorch_model.bin"),
            "{err}"
        );
    }
}
