//! `longformer_train::conversion` (RoBERTa → Longformer) against the reference recipe and HF.
//!
//! `tests/fixtures/roberta_source` is a tiny RobertaForMaskedLM with 16 positions; its
//! `expected.safetensors` holds the reference conversion (max_pos 40, window 8) and
//! `transformers.LongformerForMaskedLM`'s outputs on it for inputs of 37 tokens. Regenerate with
//! `python scripts/gen_conversion_fixtures.py`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, activation};
use longformer_model::{LongformerInput, load_pretrained};
use longformer_tests::{
    HostTensor, PARITY_TOLERANCE, devices, fixtures_dir, max_abs_diff, read_safetensors,
};
use longformer_train::conversion::{
    ConversionReport, ConvertError, ConvertOptions, convert_checkpoint,
};

fn source() -> PathBuf {
    fixtures_dir().join("roberta_source")
}

/// A fresh, non-existent path under the temp dir.
fn out_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lf-convert-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn options(max_pos: usize, window: usize) -> ConvertOptions {
    ConvertOptions {
        max_pos,
        window,
        force: false,
    }
}

/// Converts `from` into `to`, returning the report and the progress lines.
fn convert(
    from: &Path,
    to: &Path,
    options: &ConvertOptions,
) -> Result<(ConversionReport, Vec<String>), ConvertError> {
    let mut lines = Vec::new();
    let report = convert_checkpoint(from, to, options, &mut |l| lines.push(l.to_string()))?;
    Ok((report, lines))
}

/// Every tensor of a safetensors file as (dtype, shape, raw bytes).
fn raw_tensors(path: &Path) -> BTreeMap<String, (safetensors::Dtype, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                (v.dtype(), v.shape().to_vec(), v.data().to_vec()),
            )
        })
        .collect()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn tensors_config_and_tokenizer_match_the_reference() {
    let out = out_dir("reference");
    let (report, lines) = convert(&source(), &out, &options(40, 8)).unwrap();
    assert_eq!(
        (report.source_rows, report.rows, report.layers),
        (18, 42, 2)
    );
    assert_eq!(report.dropped, vec!["roberta.embeddings.position_ids"]);

    let ours = raw_tensors(&out.join("model.safetensors"));
    let reference = raw_tensors(&source().join("expected.safetensors"));
    let mut compared = 0;
    for (key, expected) in reference
        .iter()
        .filter(|(k, _)| k.starts_with("longformer."))
    {
        let found = ours.get(key).unwrap_or_else(|| panic!("{key} not written"));
        assert_eq!(found, expected, "{key} differs from the reference");
        compared += 1;
    }
    assert_eq!(compared, 7);
    // Every source tensor is carried over (renamed), the buffer dropped, 12 global ones added.
    let source_tensors = raw_tensors(&source().join("model.safetensors"));
    assert_eq!(ours.len(), source_tensors.len() - 1 + 12);
    for (key, tensor) in &source_tensors {
        if key.ends_with("position_ids") || key.ends_with("position_embeddings.weight") {
            continue;
        }
        let new_key = key.replacen("roberta.", "longformer.", 1);
        assert_eq!(ours.get(&new_key), Some(tensor), "{key} not carried over");
    }
    assert!(!ours.keys().any(|k| k.starts_with("roberta.")));

    let config = json(&out.join("config.json"));
    assert_eq!(config["model_type"], "longformer");
    assert_eq!(config["max_position_embeddings"], 42);
    assert_eq!(config["attention_window"], serde_json::json!([8, 8]));
    assert_eq!(
        config["architectures"],
        serde_json::json!(["LongformerForMaskedLM"])
    );
    let source_config = json(&source().join("config.json"));
    for key in source_config.as_object().unwrap().keys() {
        assert!(config.get(key).is_some(), "config key {key} lost");
    }
    assert_eq!(
        json(&out.join("tokenizer_config.json"))["model_max_length"],
        40
    );
    assert_eq!(
        std::fs::read(out.join("tokenizer.json")).unwrap(),
        std::fs::read(source().join("tokenizer.json")).unwrap()
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("reading ") && l.contains("KiB"))
            && lines.iter().any(|l| l.contains("18 → 42 rows")),
        "{lines:#?}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

/// The MLM head of HF's RoBERTa/Longformer on host tensors: dense, gelu, LayerNorm, then the
/// decoder tied to the word embedding, plus `lm_head.bias`.
fn mlm_logits(hidden: Tensor<3>, w: &HashMap<String, HostTensor>, device: &Device) -> Tensor<3> {
    let t2 = |k: &str| w[k].float_tensor::<2>(device);
    let t1 = |k: &str| w[k].float_tensor::<1>(device);
    let [batch, seq, d_model] = hidden.dims();
    let x = hidden.reshape([batch * seq, d_model]);
    let x = x.matmul(t2("lm_head.dense.weight").transpose()) + t1("lm_head.dense.bias").unsqueeze();
    let x = activation::gelu(x);
    let mean = x.clone().mean_dim(1);
    let centered = x - mean;
    let var = centered.clone().powi_scalar(2).mean_dim(1);
    let x = centered / (var + 1e-5).sqrt();
    let x =
        x * t1("lm_head.layer_norm.weight").unsqueeze() + t1("lm_head.layer_norm.bias").unsqueeze();
    let logits = x.matmul(t2("longformer.embeddings.word_embeddings.weight").transpose())
        + t1("lm_head.bias").unsqueeze();
    let vocab = logits.dims()[1];
    logits.reshape([batch, seq, vocab])
}

#[test]
fn converted_model_matches_hf_on_every_device() {
    let out = out_dir("parity");
    convert(&source(), &out, &options(40, 8)).unwrap();
    let expected = read_safetensors(&source().join("expected.safetensors"));
    let weights = read_safetensors(&out.join("model.safetensors"));
    let ids = expected["input_ids"].rows_i64();
    let mask = expected["attention_mask"].rows_i64();
    let global = expected["global_attention_mask"].rows_i64();
    // Longer than the source model could number: the tiled positions are in use.
    assert!(ids[0].len() > 16);
    for (name, device) in devices() {
        let model = load_pretrained(&out, &device).unwrap_or_else(|e| panic!("{name}: {e}"));
        let input = LongformerInput::from_rows(&ids, Some(&mask), Some(&global), 1, &device);
        let hidden = model.try_forward(input).unwrap().last_hidden_state;
        let diff = max_abs_diff(hidden.clone(), &expected["last_hidden_state"]);
        eprintln!("{name}: last_hidden_state max |diff| {diff:.3e}");
        assert!(
            diff <= PARITY_TOLERANCE,
            "{name}: last_hidden_state differs from HF by {diff}"
        );
        // The carried-over MLM head on our hidden states gives HF's logits.
        let logits = mlm_logits(hidden, &weights, &device);
        let diff = max_abs_diff(logits, &expected["logits"]);
        eprintln!("{name}: MLM logits max |diff| {diff:.3e}");
        assert!(
            diff <= PARITY_TOLERANCE,
            "{name}: MLM logits differ from HF by {diff}"
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn pytorch_f16_bare_keys_stay_f16_and_bare() {
    let from = source().join("bin");
    let out = out_dir("bin");
    let (report, _) = convert(&from, &out, &options(20, 4)).unwrap();
    assert_eq!((report.source_rows, report.rows), (10, 22));
    assert!(report.source_weights.ends_with("pytorch_model.bin"));
    assert!(report.tokenizer_files.is_empty());
    let ours = raw_tensors(&out.join("model.safetensors"));
    for (key, expected) in raw_tensors(&from.join("expected.safetensors")) {
        assert_eq!(expected.0, safetensors::Dtype::F16);
        assert_eq!(ours.get(&key), Some(&expected), "{key}");
    }
    assert!(ours.values().all(|t| t.0 == safetensors::Dtype::F16));
    assert!(ours.contains_key("pooler.dense.weight"));
    assert_eq!(
        json(&out.join("config.json"))["architectures"],
        serde_json::json!(["LongformerModel"])
    );
    // Our loader reads it (casting to f32) and numbers all 20 positions.
    let device = Device::flex();
    let model = load_pretrained(&out, &device).unwrap();
    let row: Vec<i64> = std::iter::once(0)
        .chain((0..18).map(|i| 3 + i % 13))
        .chain([2])
        .collect();
    let input = LongformerInput::from_rows(&[row], None, None, 1, &device);
    let hidden = model.try_forward(input).unwrap().last_hidden_state;
    assert_eq!(hidden.dims(), [1, 20, 8]);
    let values: Vec<f32> = hidden.into_data().iter::<f32>().collect();
    assert!(values.iter().all(|v| v.is_finite()));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn same_length_copies_the_position_embedding() {
    let out = out_dir("same");
    let (report, _) = convert(&source(), &out, &options(16, 4)).unwrap();
    assert_eq!(report.rows, 18);
    let key = "embeddings.position_embeddings.weight";
    let ours = raw_tensors(&out.join("model.safetensors"));
    let src = raw_tensors(&source().join("model.safetensors"));
    assert_eq!(
        ours[&format!("longformer.{key}")],
        src[&format!("roberta.{key}")]
    );
    let _ = std::fs::remove_dir_all(&out);
}

fn error(from: &Path, to: &Path, options: &ConvertOptions) -> String {
    match convert(from, to, options) {
        Ok(_) => panic!("converting {} succeeded", from.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_window_and_max_pos_are_refused_before_writing() {
    let out = out_dir("bad-options");
    for window in [7, 0] {
        let err = error(&source(), &out, &options(40, window));
        assert!(
            err.contains(&format!("--window {window} must be even")),
            "{err}"
        );
    }
    let err = error(&source(), &out, &options(15, 8));
    assert!(
        err.contains("--max-pos 15 is smaller than the source's 16 positions")
            && err.contains("roberta.embeddings.position_embeddings.weight has 18 rows"),
        "{err}"
    );
    assert!(!out.exists(), "nothing may be written on error");
}

#[test]
fn existing_output_dir_needs_force() {
    let out = out_dir("exists");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "keep").unwrap();
    let err = convert(&source(), &out, &options(40, 8))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("exists and is not empty") && err.contains("--force"),
        "{err}"
    );
    assert!(!out.join("model.safetensors").exists());
    let forced = ConvertOptions {
        force: true,
        ..options(40, 8)
    };
    convert(&source(), &out, &forced).unwrap();
    assert!(out.join("model.safetensors").is_file() && out.join("notes.txt").is_file());
    // Never into the source itself, even with --force.
    let err = convert(&source(), &source(), &forced)
        .unwrap_err()
        .to_string();
    assert!(err.contains("is the source directory"), "{err}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn sources_that_are_not_roberta_are_named() {
    let out = out_dir("not-roberta");
    // A Longformer checkpoint.
    let err = error(
        &fixtures_dir().join("ragged_padding"),
        &out,
        &options(40, 8),
    );
    assert!(
        err.contains("config.json") && err.contains("already \"longformer\""),
        "{err}"
    );

    // RoBERTa config, weights without a position embedding.
    let dir = out_dir("no-positions");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(source().join("config.json"), dir.join("config.json")).unwrap();
    let data = vec![0u8; 8];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2], &data).unwrap();
    safetensors::serialize_to_file(
        [("roberta.embeddings.word_embeddings.weight", view)],
        None,
        &dir.join("model.safetensors"),
    )
    .unwrap();
    let err = error(&dir, &out, &options(40, 8));
    assert!(
        err.contains("model.safetensors")
            && err.contains("not a RoBERTa checkpoint")
            && err.contains("embeddings.position_embeddings.weight"),
        "{err}"
    );

    // No weights, then no config at all.
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let err = error(&dir, &out, &options(40, 8));
    assert!(
        err.contains("no model.safetensors or pytorch_model.bin"),
        "{err}"
    );
    std::fs::remove_file(dir.join("config.json")).unwrap();
    let err = error(&dir, &out, &options(40, 8));
    assert!(
        err.contains(&format!("{}", dir.join("config.json").display())),
        "{err}"
    );
    let err = error(&dir.join("absent"), &out, &options(40, 8));
    assert!(err.contains("absent"), "{err}");
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A copy of the source's files (not its subdirectories) in a fresh directory, with
/// `config.json` changed by `edit`.
fn edited_source(
    tag: &str,
    edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> PathBuf {
    let dir = out_dir(tag);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(source()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    let serde_json::Value::Object(mut config) = json(&dir.join("config.json")) else {
        panic!("config.json is an object")
    };
    edit(&mut config);
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config).unwrap(),
    )
    .unwrap();
    dir
}

/// Changes a source `config.json`.
type ConfigEdit = fn(&mut serde_json::Map<String, serde_json::Value>);

/// A `config.json` that does not describe its weights is refused, naming the tensor, before
/// anything is written (the checkpoint it would write does not load).
#[test]
fn a_config_that_does_not_describe_the_weights_is_refused_before_writing() {
    let out = out_dir("mismatch-out");
    let cases: [(&str, ConfigEdit, &str); 4] = [
        (
            "wider",
            |c| {
                c.insert("hidden_size".into(), 64.into());
            },
            "[vocab_size, hidden_size]",
        ),
        (
            "vocab",
            |c| {
                c.insert("vocab_size".into(), 999.into());
            },
            "[vocab_size, hidden_size]",
        ),
        (
            "ffn",
            |c| {
                c.insert("intermediate_size".into(), 8.into());
            },
            "[intermediate_size, hidden_size]",
        ),
        (
            "fewer-layers",
            |c| {
                let n = c["num_hidden_layers"].as_u64().unwrap();
                c.insert("num_hidden_layers".into(), (n - 1).into());
            },
            "num_hidden_layers",
        ),
    ];
    for (tag, edit, expected) in cases {
        let dir = edited_source(&format!("mismatch-{tag}"), edit);
        let err = error(&dir, &out, &options(40, 8));
        assert!(
            err.contains("model.safetensors")
                && err.contains(expected)
                && err.contains("does not describe these weights"),
            "{tag}: {err}"
        );
        assert!(!out.exists(), "{tag}: nothing may be written on error");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// A malformed tokenizer file stops the conversion before the weights and config are written,
/// so that a corrected rerun needs no `--force`.
#[test]
fn a_malformed_tokenizer_file_stops_the_conversion_before_writing() {
    let dir = edited_source("bad-tokenizer-config", |_| {});
    std::fs::write(dir.join("tokenizer_config.json"), "{1: 2}").unwrap();
    let out = out_dir("bad-tokenizer-config-out");
    let err = error(&dir, &out, &options(40, 8));
    assert!(err.contains("tokenizer_config.json"), "{err}");
    assert!(!out.exists(), "nothing may be written on error");
    std::fs::remove_dir_all(dir).unwrap();
}

/// A source config with `pad_token_id: null` converts with the pad id its positions were laid
/// out for (HF's default, 1), and the result loads.
#[test]
fn a_null_pad_id_converts_to_the_default_one() {
    let dir = edited_source("null-pad", |c| {
        c.insert("pad_token_id".into(), serde_json::Value::Null);
    });
    let out = out_dir("null-pad-out");
    convert(&dir, &out, &options(40, 8)).unwrap();
    assert_eq!(json(&out.join("config.json"))["pad_token_id"], 1);
    load_pretrained(&out, &Device::flex()).unwrap();
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::remove_dir_all(out).unwrap();
}
