//! The conversion rules: tensor renames and copies ([`convert_tensors`]), the position
//! embedding's extension ([`extend_position_embedding`]) and the new `config.json`
//! ([`convert_config`]).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use super::error::ConvertError;
use super::tensors::RawTensor;

/// The position embedding's HF key, without prefix.
const POSITION_KEY: &str = "embeddings.position_embeddings.weight";

/// Buffers of RoBERTa's embeddings that older `transformers` saved and Longformer does not have.
const DROPPED_BUFFERS: [&str; 2] = ["embeddings.position_ids", "embeddings.token_type_ids"];

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

/// Checks the converted tensors against the converted configuration, so that a source whose
/// `config.json` does not describe its weights (other layer count, widths or vocabulary) is
/// refused instead of written: the word embedding is `[vocab_size, hidden_size]`, every layer's
/// query projection `[hidden_size, hidden_size]` and intermediate projection
/// `[intermediate_size, hidden_size]`, and no layer lies past `num_hidden_layers`. `weights`
/// names the source file in errors.
pub fn check_against_config(
    converted: &ConvertedTensors,
    config: &longformer_model::LongformerConfig,
    weights: &Path,
) -> Result<(), ConvertError> {
    let prefix = &converted.prefix;
    let source = |key: &str| format!("{}{key}", converted.source_prefix);
    let hidden = config.hidden_size;
    let mut expected = vec![(
        "embeddings.word_embeddings.weight".to_string(),
        vec![config.vocab_size, hidden],
        "[vocab_size, hidden_size]",
    )];
    for layer in 0..config.num_hidden_layers {
        expected.push((
            format!("encoder.layer.{layer}.attention.self.query.weight"),
            vec![hidden, hidden],
            "[hidden_size, hidden_size]",
        ));
        expected.push((
            format!("encoder.layer.{layer}.intermediate.dense.weight"),
            vec![config.intermediate_size, hidden],
            "[intermediate_size, hidden_size]",
        ));
    }
    for (key, shape, names) in expected {
        let tensor = converted
            .tensors
            .get(&format!("{prefix}{key}"))
            .ok_or_else(|| ConvertError::MissingKey {
                path: weights.to_path_buf(),
                key: source(&key),
            })?;
        if tensor.shape != shape {
            return Err(ConvertError::BadTensor {
                path: weights.to_path_buf(),
                key: source(&key),
                message: format!(
                    "shape {:?}, but config.json says {names} = {shape:?}: the configuration \
                     does not describe these weights",
                    tensor.shape
                ),
            });
        }
    }
    let layer_prefix = format!("{prefix}encoder.layer.");
    for key in converted.tensors.keys() {
        let layer = key
            .strip_prefix(&layer_prefix)
            .and_then(|rest| rest.split('.').next())
            .and_then(|n| n.parse::<usize>().ok());
        if let Some(layer) = layer.filter(|&l| l >= config.num_hidden_layers) {
            return Err(ConvertError::BadTensor {
                path: weights.to_path_buf(),
                key: source(key.strip_prefix(prefix.as_str()).unwrap_or(key)),
                message: format!(
                    "layer {layer}, but config.json says num_hidden_layers = {}: the \
                     configuration does not describe these weights",
                    config.num_hidden_layers
                ),
            });
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::Dtype;

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
