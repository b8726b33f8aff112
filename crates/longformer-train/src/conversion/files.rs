//! The files around the weights: the output directory's checks, reading and checking the
//! source's `config.json`, copying the tokenizer, and sizes for progress lines.

use std::path::Path;

use serde_json::{Map, Value};

use super::error::{ConvertError, io_error};

/// Tokenizer files copied from the source directory when present.
pub const TOKENIZER_FILES: [&str; 6] = [
    "tokenizer.json",
    "vocab.json",
    "merges.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
];

/// `model_type`s whose position ids start after the padding index, as this recipe assumes.
const ROBERTA_MODEL_TYPES: [&str; 3] = ["roberta", "xlm-roberta", "camembert"];

/// Checks that `to` is absent, an empty directory, or (with `force`) any directory other than
/// `from`.
pub(super) fn check_output_dir(from: &Path, to: &Path, force: bool) -> Result<(), ConvertError> {
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

/// The JSON object in the file `path`.
pub(super) fn read_json_object(path: &Path) -> Result<Map<String, Value>, ConvertError> {
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

/// The non-negative integer `map[key]`; `path` names the file in errors.
pub(super) fn json_usize(
    map: &Map<String, Value>,
    key: &str,
    path: &Path,
) -> Result<usize, ConvertError> {
    map.get(key)
        .and_then(Value::as_u64)
        .map(|v| v as usize)
        .ok_or_else(|| ConvertError::Json {
            path: path.to_path_buf(),
            message: format!("{key} is missing or not a non-negative integer"),
        })
}

/// A RoBERTa-family config with absolute positions (Longformer has no other kind).
pub(super) fn check_roberta_config(
    config: &Map<String, Value>,
    path: &Path,
) -> Result<(), ConvertError> {
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

/// The tokenizer files of `from` (those of [`TOKENIZER_FILES`] it has), read into memory with
/// `tokenizer_config.json`'s `model_max_length` set to `max_pos`: read before anything is
/// written, so that a malformed one stops the conversion with the output untouched.
pub(super) fn read_tokenizer_files(
    from: &Path,
    max_pos: usize,
) -> Result<Vec<(&'static str, Vec<u8>)>, ConvertError> {
    let mut files = Vec::new();
    for name in TOKENIZER_FILES {
        let source = from.join(name);
        if !source.is_file() {
            continue;
        }
        let bytes = if name == "tokenizer_config.json" {
            let mut json = read_json_object(&source)?;
            json.insert("model_max_length".into(), max_pos.into());
            let text = serde_json::to_string_pretty(&Value::Object(json)).expect("serializes");
            (text + "\n").into_bytes()
        } else {
            std::fs::read(&source).map_err(io_error(&source))?
        };
        files.push((name, bytes));
    }
    Ok(files)
}

/// Writes the files of [`read_tokenizer_files`] into `to`; their names.
pub(super) fn write_tokenizer_files(
    files: Vec<(&'static str, Vec<u8>)>,
    to: &Path,
    max_pos: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<String>, ConvertError> {
    if files.is_empty() {
        progress("no tokenizer files in the source directory");
    }
    let mut written = Vec::new();
    for (name, bytes) in files {
        let target = to.join(name);
        crate::output::write_file(&target, &bytes).map_err(io_error(&target))?;
        if name == "tokenizer_config.json" {
            progress(&format!(
                "wrote {} (model_max_length {max_pos})",
                target.display()
            ));
        } else {
            progress(&format!("copied {}", target.display()));
        }
        written.push(name.to_string());
    }
    Ok(written)
}

/// `bytes` in B, KiB, MiB or GiB.
pub(super) fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}
