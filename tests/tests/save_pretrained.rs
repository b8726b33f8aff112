//! `save_pretrained` and `save_head` against the committed HF fixtures: every Longformer
//! fixture is loaded, saved and compared with what HF wrote. The saved `model.safetensors` must
//! hold the fixture's tensors under the keys transformers' `save_pretrained` writes for the class
//! (bare for the base model, `longformer.` for a head's encoder), with the same shapes and
//! bytes; the saved `config.json` must read back as the same config and agree with HF's; and
//! the model loaded from the saved directory must compute bit for bit what the first did.
//!
//! The one set of keys HF does not write: the copies of a tied masked-LM decoder
//! (`lm_head.decoder.weight` = the word embedding, `lm_head.decoder.bias` = `lm_head.bias`).
//! Some fixtures carry them (`head_mlm_bin`, a `torch.save` file, and `mlm_checkpoint`), but
//! transformers 5.24 drops tied tensors from `model.safetensors` (the fixture `head_mlm`, which it
//! wrote, lacks them) and ties them back on load; so does `save_head`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use burn::store::{ModuleStore, PytorchStore};
use burn::tensor::{Device, FloatDType, TensorData};
use longformer_model::heads::MultipleChoiceInput;
use longformer_model::precision::cast_float_params;
use longformer_model::{
    LongformerConfig, LongformerForMaskedLM, LongformerForMultipleChoice,
    LongformerForQuestionAnswering, LongformerForSequenceClassification,
    LongformerForTokenClassification, LongformerHeadConfig, LongformerInput, LongformerModel,
    TaskHead, load_head, load_pretrained, save_head, save_pretrained, weights_file,
};
use longformer_tests::{fixtures_dir, read_safetensors};

/// Fixtures of a bare `LongformerModel` (keys bare, `longformer.` or `roberta.`; safetensors or
/// `pytorch_model.bin`; with and without a pooler).
const BASE_FIXTURES: [&str; 8] = [
    "half_precision",
    "left_padding",
    "many_global",
    "no_global",
    "per_layer_windows",
    "ragged_padding",
    "shorter_than_window",
    "wikihop_grad",
];

/// Key → (dtype, shape, little-endian bytes), as a weight file stores it.
type Tensors = BTreeMap<String, (String, Vec<usize>, Vec<u8>)>;

/// The tensors of a `.safetensors` file and its metadata.
fn read_safetensors_file(path: &Path) -> (Tensors, Option<BTreeMap<String, String>>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = metadata
        .metadata()
        .as_ref()
        .map(|m| m.clone().into_iter().collect());
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensors = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let entry = (
                format!("{:?}", view.dtype()),
                view.shape().to_vec(),
                view.data().to_vec(),
            );
            (name, entry)
        })
        .collect();
    (tensors, metadata)
}

/// The tensors of a fixture's weight file (safetensors, or a PyTorch zip read by Burn's store,
/// which keeps the file's layout).
fn read_fixture_weights(dir: &Path) -> Tensors {
    let path = weights_file(dir).unwrap();
    if path.extension().is_some_and(|e| e == "safetensors") {
        return read_safetensors_file(&path).0;
    }
    let mut store = PytorchStore::from_file(&path);
    store
        .get_all_tensors()
        .unwrap()
        .iter()
        .map(|(name, t)| {
            let entry = (
                format!("{:?}", t.dtype),
                t.shape.as_slice().to_vec(),
                t.to_bytes().unwrap().to_vec(),
            );
            (name.clone(), entry)
        })
        .collect()
}

/// The key HF's `save_pretrained` writes for the fixture's `key` (`head`: the class is a task
/// head, whose encoder is `longformer.`), or `None` for a tied masked-LM decoder's copies,
/// which it does not write (see the file's docs).
fn hf_saved_key(key: &str, head: bool, tied_decoder: bool) -> Option<String> {
    if tied_decoder && (key == "lm_head.decoder.weight" || key == "lm_head.decoder.bias") {
        return None;
    }
    let bare = ["longformer.", "roberta."]
        .iter()
        .find_map(|p| key.strip_prefix(p))
        .unwrap_or(key);
    let encoder = ["embeddings.", "encoder.", "pooler."]
        .iter()
        .any(|p| bare.starts_with(p));
    Some(if head && encoder {
        format!("longformer.{bare}")
    } else {
        bare.to_string()
    })
}

/// A fresh directory to save into.
fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("longformer-save-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// (a): `saved` holds the fixture's tensors under HF's keys, same dtype, shape and bytes, with
/// HF's `format: pt` metadata.
fn check_weights(fixture: &Path, saved: &Path, head: bool, tied_decoder: bool) {
    let name = fixture.file_name().unwrap().to_string_lossy();
    let expected: Tensors = read_fixture_weights(fixture)
        .into_iter()
        .filter_map(|(k, t)| hf_saved_key(&k, head, tied_decoder).map(|k| (k, t)))
        .collect();
    let (written, metadata) = read_safetensors_file(&saved.join("model.safetensors"));
    let format = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    assert_eq!(metadata, Some(format), "{name}: metadata");
    let keys = |t: &Tensors| t.keys().cloned().collect::<BTreeSet<_>>();
    let (written_keys, expected_keys) = (keys(&written), keys(&expected));
    let missing: Vec<_> = expected_keys.difference(&written_keys).collect();
    let extra: Vec<_> = written_keys.difference(&expected_keys).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{name}: the saved file lacks {missing:?} and has {extra:?} besides"
    );
    for (key, (dtype, shape, bytes)) in &expected {
        let (saved_dtype, saved_shape, saved_bytes) = &written[key];
        assert_eq!(
            (saved_dtype, saved_shape),
            (dtype, shape),
            "{name}: {key} dtype and shape"
        );
        assert!(saved_bytes == bytes, "{name}: {key} holds other values");
    }
}

/// The saved `config.json` agrees with the fixture's, key for key, except for what HF writes
/// and we do not: its version, and defaults (`onnx_export`; `tie_word_embeddings` of a base
/// model, which has no decoder to tie). Keys HF's fixtures may lack (written by
/// `config.save_pretrained` alone): `architectures` and `dtype`.
fn check_config_json(fixture: &Path, saved: &Path, head: bool) {
    let name = fixture.file_name().unwrap().to_string_lossy();
    let read = |dir: &Path| -> serde_json::Map<String, serde_json::Value> {
        let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    let (hf, ours) = (read(fixture), read(saved));
    for (key, value) in &hf {
        match ours.get(key) {
            Some(v) => assert_eq!(v, value, "{name}: config.json {key}"),
            None => assert!(
                ["transformers_version", "onnx_export"].contains(&key.as_str())
                    || (!head && key == "tie_word_embeddings"),
                "{name}: config.json lacks {key}"
            ),
        }
    }
    for key in ours.keys().filter(|k| !hf.contains_key(*k)) {
        assert!(
            ["architectures", "dtype"].contains(&key.as_str()),
            "{name}: config.json has {key}, HF's has not"
        );
    }
    assert_eq!(ours["model_type"], "longformer", "{name}");
}

/// A fixture's input rows (choices flattened to rows), masks where it has them.
struct Input {
    ids: Vec<Vec<i64>>,
    mask: Option<Vec<Vec<i64>>>,
    global: Option<Vec<Vec<i64>>>,
    n_choices: usize,
}

impl Input {
    fn of(fixture: &Path) -> Self {
        let expected = read_safetensors(&fixture.join("expected.safetensors"));
        let rows = |key: &str| {
            expected.get(key).map(|t| {
                let width = *t.shape.last().unwrap();
                t.values
                    .chunks(width)
                    .map(|r| r.iter().map(|v| *v as i64).collect())
                    .collect()
            })
        };
        let ids = expected["input_ids"].shape.clone();
        Self {
            ids: rows("input_ids").unwrap(),
            mask: rows("attention_mask"),
            global: rows("global_attention_mask"),
            n_choices: if ids.len() == 3 { ids[1] } else { 1 },
        }
    }

    fn rows(&self, device: &Device) -> LongformerInput {
        LongformerInput::from_rows(
            &self.ids,
            self.mask.as_deref(),
            self.global.as_deref(),
            1,
            device,
        )
    }
}

/// Every output of a model on an input, as data to compare bit for bit.
trait Outputs {
    fn outputs(&self, input: &Input, device: &Device) -> Vec<TensorData>;
}

impl Outputs for LongformerModel {
    fn outputs(&self, input: &Input, device: &Device) -> Vec<TensorData> {
        let out = self.try_forward(input.rows(device)).unwrap();
        let mut data = vec![out.last_hidden_state.into_data()];
        data.extend(out.pooler_output.map(|p| p.into_data()));
        data
    }
}

impl Outputs for LongformerForMaskedLM {
    fn outputs(&self, input: &Input, device: &Device) -> Vec<TensorData> {
        vec![self.forward(input.rows(device)).unwrap().into_data()]
    }
}

impl Outputs for LongformerForSequenceClassification {
    fn outputs(&self, input: &Input, device: &Device) -> Vec<TensorData> {
        vec![self.forward(input.rows(device)).unwrap().into_data()]
    }
}

impl Outputs for LongformerForTokenClassification {
    fn outputs(&self, input: &Input, device: &Device) -> Vec<TensorData> {
        vec![self.forward(input.rows(device)).unwrap().into_data()]
    }
}

impl Outputs for LongformerForQuestionAnswering {
    fn outputs(&self, input: &Input, device: &Device) -> Vec<TensorData> {
        let out = self.forward(input.rows(device)).unwrap();
        vec![out.start_logits.into_data(), out.end_logits.into_data()]
    }
}

impl Outputs for LongformerForMultipleChoice {
    fn outputs(&self, input: &Input, device: &Device) -> Vec<TensorData> {
        let choices = MultipleChoiceInput::new(input.rows(device), input.n_choices).unwrap();
        vec![self.forward(choices).unwrap().into_data()]
    }
}

/// (b): the same outputs, bit for bit.
fn assert_same_outputs(what: &str, first: Vec<TensorData>, second: Vec<TensorData>) {
    assert_eq!(first.len(), second.len(), "{what}");
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(a.shape(), b.shape(), "{what}");
        assert!(a.as_bytes() == b.as_bytes(), "{what}: outputs differ");
    }
}

/// The saved files are as readable as a plain `create` makes a file (the umask's), not private
/// to their owner as a temporary file is, and nothing else is left in the directory.
fn check_permissions(saved: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let plain = saved.join("plain");
        std::fs::write(&plain, b"x").unwrap();
        for name in ["model.safetensors", "config.json"] {
            assert_eq!(mode(&saved.join(name)), mode(&plain), "{name}");
        }
        std::fs::remove_file(plain).unwrap();
    }
    let names: BTreeSet<String> = std::fs::read_dir(saved)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["config.json".to_string(), "model.safetensors".to_string()])
    );
}

fn check_base(case: &str) {
    let device = Device::flex();
    let fixture = fixtures_dir().join(case);
    let config = LongformerConfig::from_json_file(fixture.join("config.json")).unwrap();
    let model = load_pretrained(&fixture, &device).unwrap();
    let saved = scratch(case);
    save_pretrained(&model, &config, &saved).unwrap();

    check_weights(&fixture, &saved, false, false);
    check_config_json(&fixture, &saved, false);
    check_permissions(&saved);
    let reread = LongformerConfig::from_json_file(saved.join("config.json")).unwrap();
    assert_eq!(reread.to_string(), config.to_string(), "{case}: config");

    let reloaded = load_pretrained(&saved, &device).unwrap();
    let input = Input::of(&fixture);
    assert_same_outputs(
        case,
        model.outputs(&input, &device),
        reloaded.outputs(&input, &device),
    );
    std::fs::remove_dir_all(&saved).unwrap();
}

fn check_head<H: TaskHead + Outputs>(case: &str) {
    let device = Device::flex();
    let fixture = fixtures_dir().join(case);
    let config = LongformerHeadConfig::from_json_file(fixture.join("config.json")).unwrap();
    let model: H = load_head(&fixture, &device).unwrap();
    let saved = scratch(case);
    save_head(&model, &config, &saved).unwrap();

    let tied_decoder = H::HF_CLASS == "LongformerForMaskedLM" && config.tie_word_embeddings;
    check_weights(&fixture, &saved, true, tied_decoder);
    check_config_json(&fixture, &saved, true);
    let reread = LongformerHeadConfig::from_json_file(saved.join("config.json")).unwrap();
    assert_eq!(reread.to_string(), config.to_string(), "{case}: config");

    let reloaded: H = load_head(&saved, &device).unwrap();
    let input = Input::of(&fixture);
    assert_same_outputs(
        case,
        model.outputs(&input, &device),
        reloaded.outputs(&input, &device),
    );
    std::fs::remove_dir_all(&saved).unwrap();
}

#[test]
fn base_models_save_as_hf_writes_them() {
    for case in BASE_FIXTURES {
        check_base(case);
    }
}

/// Tied (safetensors without the decoder copies, a `.bin` with them, a 2052-token vocabulary,
/// `mlm_checkpoint` with them and no `architectures`) and untied.
#[test]
fn masked_lm_saves_as_hf_writes_it() {
    for case in [
        "head_mlm",
        "head_mlm_bin",
        "head_mlm_text",
        "head_mlm_untied",
        "mlm_checkpoint",
    ] {
        check_head::<LongformerForMaskedLM>(case);
    }
}

#[test]
fn sequence_classification_saves_as_hf_writes_it() {
    check_head::<LongformerForSequenceClassification>("head_sequence_classification");
}

/// From a `.bin`.
#[test]
fn question_answering_saves_as_hf_writes_it() {
    check_head::<LongformerForQuestionAnswering>("head_question_answering");
}

/// From `roberta.` keys, saved as `longformer.`.
#[test]
fn token_classification_saves_as_hf_writes_it() {
    check_head::<LongformerForTokenClassification>("head_token_classification");
}

/// With the pooler.
#[test]
fn multiple_choice_saves_as_hf_writes_it() {
    check_head::<LongformerForMultipleChoice>("head_multiple_choice");
}

/// Named labels come back, as HF writes them (`id2label` with string ids, `label2id`), and so
/// do the separator and the untied decoder.
#[test]
fn a_saved_config_json_round_trips() {
    let device = Device::flex();
    let fixture = fixtures_dir().join("head_sequence_classification");
    let config = LongformerHeadConfig::from_json_file(fixture.join("config.json"))
        .unwrap()
        .with_labels(["negative", "neutral", "positive", "mixed"])
        .with_sep_token_id(7)
        .with_tie_word_embeddings(false);
    let model: LongformerForSequenceClassification = config.init(&device).unwrap();
    let saved = scratch("named-labels");
    save_head(&model, &config, &saved).unwrap();

    let path = saved.join("config.json");
    let reread = LongformerHeadConfig::from_json_file(&path).unwrap();
    assert_eq!(reread.to_string(), config.to_string());
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        json["architectures"],
        serde_json::json!(["LongformerForSequenceClassification"])
    );
    assert_eq!(json["id2label"]["3"], "mixed");
    assert_eq!(json["label2id"]["neutral"], 1);
    assert!(json.get("num_labels").is_none(), "HF does not write it");

    // HF's default labels are left out, as HF leaves them out, and read back as the default.
    let config = config.with_labels(["LABEL_0", "LABEL_1"]);
    let model: LongformerForSequenceClassification = config.init(&device).unwrap();
    save_head(&model, &config, &saved).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(json.get("id2label").is_none(), "{json}");
    let reread = LongformerHeadConfig::from_json_file(&path).unwrap();
    assert_eq!((reread.num_labels, reread.label(1)), (2, "LABEL_1".into()));
    std::fs::remove_dir_all(&saved).unwrap();
}

/// Half precision is saved as such (`F16` / `BF16` tensors, `dtype` in `config.json`); the
/// loader reads it back to f32, which cast again is the same model.
#[test]
fn half_precision_models_keep_their_dtype() {
    let device = Device::flex();
    let fixture = fixtures_dir().join("half_precision");
    let config = LongformerConfig::from_json_file(fixture.join("config.json")).unwrap();
    let input = Input::of(&fixture);
    for (dtype, st_dtype, name) in [
        (FloatDType::F16, "F16", "float16"),
        (FloatDType::BF16, "BF16", "bfloat16"),
    ] {
        let model = load_pretrained(&fixture, &device).unwrap();
        let model = cast_float_params(model, dtype, &device).unwrap();
        let saved = scratch(name);
        save_pretrained(&model, &config, &saved).unwrap();

        let (tensors, _) = read_safetensors_file(&saved.join("model.safetensors"));
        for (key, (dtype, _, _)) in &tensors {
            assert_eq!(dtype, st_dtype, "{key}");
        }
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(saved.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(json["dtype"], name);

        let reloaded = load_pretrained(&saved, &device).unwrap();
        let reloaded = cast_float_params(reloaded, dtype, &device).unwrap();
        assert_same_outputs(
            name,
            model.outputs(&input, &device),
            reloaded.outputs(&input, &device),
        );
        std::fs::remove_dir_all(&saved).unwrap();
    }
}
