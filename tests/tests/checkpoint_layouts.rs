//! Checkpoint layouts HF loads besides one plain float32 file, against the committed HF
//! fixtures: sharded checkpoints (`model.safetensors.index.json`), keys whose prefixes are
//! mixed, half-precision files, and the errors of such files, which name the keys and shapes as
//! the file writes them.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::Device;
use longformer_model::{LoadError, LongformerInput, LongformerModel, load_pretrained};
use longformer_tests::{
    PARITY_TOLERANCE, devices, fixtures_dir, max_abs_diff, read_safetensors, scratch_copy,
};

/// name → (shape, little-endian f32 bytes).
type Tensors = BTreeMap<String, (Vec<usize>, Vec<u8>)>;

fn read(path: &Path) -> Tensors {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            (name, (view.shape().to_vec(), view.data().to_vec()))
        })
        .collect()
}

fn write(path: &Path, tensors: &Tensors) {
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(name, (shape, data))| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                    .unwrap();
            (name.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// Rewrites `dir/model.safetensors` with `edit`.
fn edit(dir: &Path, edit: impl FnOnce(&mut Tensors)) {
    let path = dir.join("model.safetensors");
    let mut tensors = read(&path);
    edit(&mut tensors);
    write(&path, &tensors);
}

/// Splits `dir/model.safetensors` into `n` shards and their index, as `save_pretrained` with a
/// small `max_shard_size` writes them.
fn shard(dir: &Path, n: usize) {
    let tensors = read(&dir.join("model.safetensors"));
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let per_shard = tensors.len().div_ceil(n);
    let mut weight_map = serde_json::Map::new();
    let entries: Vec<_> = tensors.into_iter().collect();
    for (i, chunk) in entries.chunks(per_shard).enumerate() {
        let name = format!("model-{:05}-of-{n:05}.safetensors", i + 1);
        for (key, _) in chunk {
            weight_map.insert(key.clone(), name.clone().into());
        }
        write(&dir.join(&name), &chunk.iter().cloned().collect());
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

/// `model` (on flex) against HF's outputs of the fixture `case`.
fn check_parity(case: &str, model: LongformerModel) {
    check_parity_on(case, model, &Device::flex());
}

/// `model` (on `device`) against HF's outputs of the fixture `case`.
fn check_parity_on(case: &str, model: LongformerModel, device: &Device) {
    let expected = read_safetensors(&fixtures_dir().join(case).join("expected.safetensors"));
    let input = LongformerInput::from_rows(
        &expected["input_ids"].rows_i64(),
        Some(&expected["attention_mask"].rows_i64()),
        Some(&expected["global_attention_mask"].rows_i64()),
        1,
        device,
    );
    let out = model.forward(input);
    let diff = max_abs_diff(out.last_hidden_state, &expected["last_hidden_state"]);
    assert!(
        diff <= PARITY_TOLERANCE,
        "{case}: last_hidden_state differs by {diff}"
    );
    let pooled = out.pooler_output.expect("the fixture has a pooler");
    let diff = max_abs_diff(pooled, &expected["pooler_output"]);
    assert!(
        diff <= PARITY_TOLERANCE,
        "{case}: pooler_output differs by {diff}"
    );
}

fn load_error(dir: &Path) -> (LoadError, String) {
    let err = load_pretrained(dir, &Device::flex()).unwrap_err();
    let msg = err.to_string();
    (err, msg)
}

#[test]
fn a_sharded_checkpoint_loads_and_matches_hf() {
    let dir = scratch_copy("ragged_padding", "sharded");
    shard(&dir, 3);
    let model = load_pretrained(&dir, &Device::flex()).unwrap();
    check_parity("ragged_padding", model);
}

/// A PyTorch checkpoint behind `pytorch_model.bin.index.json` (one shard: the tests cannot write
/// `.bin` files; the loader reads only the index's file names).
#[test]
fn a_sharded_pytorch_checkpoint_loads_and_matches_hf() {
    let dir = scratch_copy("many_global", "sharded-bin");
    let shard = "pytorch_model-00001-of-00001.bin";
    std::fs::rename(dir.join("pytorch_model.bin"), dir.join(shard)).unwrap();
    let index = serde_json::json!({"weight_map": {"embeddings.word_embeddings.weight": shard}});
    std::fs::write(dir.join("pytorch_model.bin.index.json"), index.to_string()).unwrap();
    let model = load_pretrained(&dir, &Device::flex()).unwrap();
    check_parity("many_global", model);
}

/// Checkpoints stored in half precision (a half model's `torch.save`, float16 `pytorch_model.bin`
/// with `longformer.` keys; bfloat16 `model.safetensors`) load into the float32 model as HF
/// computes with their weights cast back to float32, on every backend.
#[test]
fn half_precision_checkpoints_load_as_float32() {
    for case in ["half_checkpoint_bin", "half_checkpoint_safetensors"] {
        for (name, device) in devices() {
            let model = load_pretrained(fixtures_dir().join(case), &device)
                .unwrap_or_else(|e| panic!("{case} on {name}: {e}"));
            check_parity_on(case, model, &device);
        }
    }
}

#[test]
fn a_shard_the_index_names_but_that_is_absent_is_named() {
    let dir = scratch_copy("ragged_padding", "shard-absent");
    shard(&dir, 3);
    std::fs::remove_file(dir.join("model-00002-of-00003.safetensors")).unwrap();
    let (err, msg) = load_error(&dir);
    assert!(matches!(err, LoadError::Read { .. }), "{msg}");
    assert!(
        msg.contains("model.safetensors.index.json") && msg.contains("model-00002-of-00003"),
        "{msg}"
    );
}

#[test]
fn a_shard_error_names_the_shard_and_key() {
    let dir = scratch_copy("ragged_padding", "shard-shape");
    edit(&dir, |t| {
        t.get_mut("pooler.dense.bias").unwrap().0 = vec![8, 4];
    });
    shard(&dir, 2);
    let (err, msg) = load_error(&dir);
    assert!(matches!(err, LoadError::BadTensor { .. }), "{msg}");
    assert!(
        msg.contains("model-00002-of-00002.safetensors: tensor pooler.dense.bias"),
        "{msg}"
    );
}

/// The audit's case: only `embeddings.*` carry `longformer.`. HF loads it; so do we (the pooler
/// included), and an unknown key is named as written, not with a prefix it does not have.
#[test]
fn keys_with_mixed_prefixes_load_as_hf_loads_them() {
    let dir = scratch_copy("ragged_padding", "mixed-prefix");
    let prefix_embeddings = |t: &mut Tensors| {
        let keys: Vec<String> = t
            .keys()
            .filter(|k| k.starts_with("embeddings."))
            .cloned()
            .collect();
        for k in keys {
            let v = t.remove(&k).unwrap();
            t.insert(format!("longformer.{k}"), v);
        }
    };
    edit(&dir, prefix_embeddings);
    let model = load_pretrained(&dir, &Device::flex()).unwrap();
    check_parity("ragged_padding", model);

    edit(&dir, |t| {
        let bias = t["pooler.dense.bias"].clone();
        t.insert("encoder.layer.0.extra.bias".into(), bias);
    });
    let (err, msg) = load_error(&dir);
    assert!(matches!(err, LoadError::UnexpectedKeys { .. }), "{msg}");
    assert!(
        msg.contains(": encoder.layer.0.extra.bias") && !msg.contains("longformer.encoder"),
        "{msg}"
    );
}

#[test]
fn one_tensor_under_two_prefixes_is_an_error() {
    let dir = scratch_copy("ragged_padding", "twice");
    edit(&dir, |t| {
        let v = t["embeddings.word_embeddings.weight"].clone();
        t.insert("longformer.embeddings.word_embeddings.weight".into(), v);
    });
    let (err, msg) = load_error(&dir);
    assert!(matches!(err, LoadError::BadTensor { .. }), "{msg}");
    assert!(
        msg.contains("embeddings.word_embeddings.weight")
            && msg.contains("longformer.embeddings.word_embeddings.weight"),
        "{msg}"
    );
}

/// HF's linear weights are `[d_out, d_in]`; the error gives the file's shape and the one the
/// model needs in that layout, not Burn's transposed `[d_in, d_out]`.
#[test]
fn shape_errors_give_shapes_in_the_files_layout() {
    let key = "encoder.layer.0.intermediate.dense.weight"; // HF [64, 32]
    for (shape, found) in [(vec![64, 31], "[64, 31]"), (vec![32, 64], "[32, 64]")] {
        let dir = scratch_copy("ragged_padding", &format!("shape-{found}"));
        edit(&dir, |t| {
            let (s, data) = t.get_mut(key).unwrap();
            *s = shape.clone();
            data.truncate(shape.iter().product::<usize>() * 4);
        });
        let (_, msg) = load_error(&dir);
        assert!(
            msg.contains(&format!(
                "tensor {key}: shape {found} does not fit the model's [64, 32]"
            )),
            "{msg}"
        );
    }
    // Embeddings are not transposed: [97, 32] in the file, [120, 32] in a model of 120 words.
    let dir = scratch_copy("ragged_padding", "shape-embedding");
    let config = dir.join("config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("\"vocab_size\": 97", "\"vocab_size\": 120"),
    )
    .unwrap();
    let (_, msg) = load_error(&dir);
    assert!(
        msg.contains("shape [97, 32] does not fit the model's [120, 32]"),
        "{msg}"
    );
}
