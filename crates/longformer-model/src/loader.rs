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
//! Head weights (`lm_head.*`, `classifier.*`, `qa_outputs.*`) and the `position_ids` buffer are
//! ignored; any other unknown key, a missing key, a wrong shape or a non-float tensor is an
//! error naming the key and the file. Half-precision and f64 checkpoints are converted to f32.

use std::path::{Path, PathBuf};

use burn::store::{
    ApplyError, ApplyResult, FloatCastAdapter, ModuleAdapter, ModuleSnapshot, ModuleStore,
    PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};
use burn::tensor::{DType, Device};

use crate::config::LongformerConfig;
use crate::error::LoadError;
use crate::model::LongformerModel;

/// Key prefixes of HF checkpoints, tried in this order.
const PREFIXES: [&str; 2] = ["longformer.", "roberta."];

/// Keys a base-model load ignores: task heads and buffers.
const IGNORED_PREFIXES: [&str; 5] = [
    "lm_head.",
    "classifier.",
    "qa_outputs.",
    "embeddings.position_ids",
    "embeddings.token_type_ids",
];

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
    if path.extension().is_some_and(|e| e == "safetensors") {
        let prefix = detect_prefix(SafetensorsStore::from_file(path), path)?;
        let store = remap(SafetensorsStore::from_file(path), &prefix, |s, from, to| {
            s.with_key_remapping(from, to)
        })
        .with_from_adapter(PyTorchToBurnAdapter.chain(FloatCastAdapter::to(DType::F32)))
        .validate(false)
        .allow_partial(true);
        load_into(config, store, path, &prefix, device)
    } else {
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
        let prefix = detect_prefix(raw, path)?;
        let store = remap(PytorchStore::from_file(path), &prefix, |s, from, to| {
            s.with_key_remapping(from, to)
        })
        .validate(false)
        .allow_partial(true);
        load_into(config, store, path, &prefix, device)
    }
}

/// The prefix every model key carries in this file (`""`, `"longformer."` or `"roberta."`).
fn detect_prefix<S: ModuleStore>(mut store: S, path: &Path) -> Result<String, LoadError> {
    let keys = store.keys().map_err(|e| read_error(path, e))?;
    let has = |p: &str| {
        keys.iter()
            .any(|k| k.starts_with(&format!("{p}embeddings.")))
    };
    Ok(PREFIXES
        .iter()
        .find(|p| has(p))
        .map(|p| p.to_string())
        .unwrap_or_default())
}

/// HF names → module paths.
fn remap<S>(store: S, prefix: &str, with: impl Fn(S, &str, &str) -> S) -> S {
    let mut store = store;
    if !prefix.is_empty() {
        store = with(store, &format!("^{}", regex_escape(prefix)), "");
    }
    store = with(store, r"\.LayerNorm\.", ".layer_norm.");
    with(store, r"\.attention\.self\.", ".attention.self_attn.")
}

fn load_into<S: ModuleStore>(
    config: &LongformerConfig,
    mut store: S,
    path: &Path,
    prefix: &str,
    device: &Device,
) -> Result<LongformerModel, LoadError> {
    let keys = store.keys().map_err(|e| read_error(path, e))?;
    let has_pooler = keys.iter().any(|k| k.starts_with("pooler."));
    let mut model = config.init_with_pooler(has_pooler, device);
    let result = model
        .load_from(&mut store)
        .map_err(|e| read_error(path, e))?;
    check_result(result, path, prefix)?;
    Ok(model)
}

fn check_result(result: ApplyResult, path: &Path, prefix: &str) -> Result<(), LoadError> {
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
            key: hf_key(key, prefix),
            message,
        });
    }
    if !result.missing.is_empty() {
        return Err(LoadError::MissingKeys {
            path: path.to_path_buf(),
            keys: result
                .missing
                .iter()
                .map(|(k, _)| hf_key(k, prefix))
                .collect(),
        });
    }
    let unexpected: Vec<String> = result
        .unused
        .iter()
        .filter(|k| !IGNORED_PREFIXES.iter().any(|p| k.starts_with(p)))
        .map(|k| hf_key(k, prefix))
        .collect();
    if !unexpected.is_empty() {
        return Err(LoadError::UnexpectedKeys {
            path: path.to_path_buf(),
            keys: unexpected,
        });
    }
    Ok(())
}

/// The checkpoint key of a module path (inverse of [`remap`] and of the norm renaming).
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
