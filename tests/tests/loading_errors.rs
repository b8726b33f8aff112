//! Bad checkpoints give errors that name the file and key.

use std::path::Path;

use burn::tensor::Device;
use longformer_model::{LoadError, load_pretrained};
use longformer_tests::scratch_copy;

fn rewrite_config(dir: &Path, key: &str, value: serde_json::Value) {
    let path = dir.join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json[key] = value;
    std::fs::write(path, json.to_string()).unwrap();
}

#[test]
fn shape_mismatch_names_key_and_file() {
    let dir = scratch_copy("ragged_padding", "shape");
    rewrite_config(&dir, "vocab_size", serde_json::json!(120));
    let err = load_pretrained(&dir, &Device::flex()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LoadError::BadTensor { .. }), "{msg}");
    assert!(
        msg.contains("model.safetensors") && msg.contains("embeddings.word_embeddings.weight"),
        "{msg}"
    );
}

#[test]
fn missing_keys_are_listed_with_hf_names() {
    let dir = scratch_copy("ragged_padding", "missing");
    rewrite_config(&dir, "num_hidden_layers", serde_json::json!(3));
    rewrite_config(&dir, "attention_window", serde_json::json!(8));
    let msg = load_pretrained(&dir, &Device::flex())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("encoder.layer.2.attention.self.query_global.weight"),
        "{msg}"
    );
    assert!(
        msg.contains("encoder.layer.2.output.LayerNorm.weight"),
        "{msg}"
    );
}

#[test]
fn unexpected_keys_are_an_error() {
    let dir = scratch_copy("ragged_padding", "unexpected");
    rewrite_config(&dir, "num_hidden_layers", serde_json::json!(1));
    rewrite_config(&dir, "attention_window", serde_json::json!(8));
    let msg = load_pretrained(&dir, &Device::flex())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("unexpected") && msg.contains("encoder.layer.1.attention.self.query.weight"),
        "{msg}"
    );
}

#[test]
fn invalid_config_names_the_file() {
    let dir = scratch_copy("ragged_padding", "odd-window");
    rewrite_config(&dir, "attention_window", serde_json::json!([8, 7]));
    let msg = load_pretrained(&dir, &Device::flex())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("config.json") && msg.contains("must be even"),
        "{msg}"
    );
}

#[test]
fn corrupt_weights_are_an_error() {
    let dir = scratch_copy("ragged_padding", "corrupt");
    std::fs::write(dir.join("model.safetensors"), b"not a safetensors file").unwrap();
    let msg = load_pretrained(&dir, &Device::flex())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("model.safetensors"), "{msg}");
}
