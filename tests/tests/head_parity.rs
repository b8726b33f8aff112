//! The five task heads against HuggingFace `transformers` (float32) on the committed fixtures, on
//! every backend, with the given global attention and with HF's default (`None`); plus the
//! errors of head loading and of the default global attention. Regenerate the fixtures with
//! `python scripts/gen_head_fixtures.py`.

use std::path::Path;

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use longformer_model::heads::MultipleChoiceInput;
use longformer_model::{
    InputError, LoadError, LongformerForMaskedLM, LongformerForMultipleChoice,
    LongformerForQuestionAnswering, LongformerForSequenceClassification,
    LongformerForTokenClassification, LongformerInput, load_head, load_pretrained,
    load_with_new_head,
};
use longformer_tests::head_fixture::HeadFixture;
use longformer_tests::{
    PARITY_TOLERANCE, devices, fixtures_dir, max_abs_diff, max_abs_diff_tensors, read_safetensors,
    scratch_copy,
};

/// A head fixture, and its comparison with HF's outputs.
struct Case(HeadFixture);

impl std::ops::Deref for Case {
    type Target = HeadFixture;
    fn deref(&self) -> &HeadFixture {
        &self.0
    }
}

impl Case {
    fn new(name: &str) -> Self {
        Self(HeadFixture::new(name))
    }

    /// Compares `actual` with HF's `key`, failing above the tolerance.
    fn check<const D: usize>(&self, what: &str, backend: &str, actual: Tensor<D>, key: &str) {
        let diff = max_abs_diff(actual, &self.expected[key]);
        eprintln!(
            "{} {key} on {backend}: max |diff| {diff:.2e}",
            self.dir.file_name().unwrap().to_string_lossy()
        );
        assert!(
            diff <= PARITY_TOLERANCE,
            "{what} on {backend}: {key} differs from HF by {diff}"
        );
    }
}

/// `key` (and `key_default_global`) for both global-mask settings.
fn settings(key: &str) -> [(bool, String); 2] {
    [
        (true, key.to_string()),
        (false, format!("{key}_default_global")),
    ]
}

fn check_masked_lm(name: &str) {
    let case = Case::new(name);
    for (backend, device) in devices() {
        let model: LongformerForMaskedLM = case.load(&device);
        for (with_global, key) in settings("logits") {
            let logits = model.forward(case.input(with_global, &device)).unwrap();
            case.check(name, backend, logits, &key);
        }
    }
}

#[test]
fn masked_lm_matches_hf() {
    check_masked_lm("head_mlm");
}

#[test]
fn masked_lm_from_a_bin_with_tied_decoder_duplicates_matches_hf() {
    check_masked_lm("head_mlm_bin");
}

/// `tie_word_embeddings: false`: HF's decoder is `lm_head.decoder.{weight,bias}`, not the word
/// embedding and `lm_head.bias`.
#[test]
fn masked_lm_with_an_untied_decoder_matches_hf() {
    check_masked_lm("head_mlm_untied");
}

#[test]
fn an_untied_decoder_missing_from_the_file_is_an_error_naming_the_key() {
    for key in ["lm_head.decoder.weight", "lm_head.decoder.bias"] {
        let dir = scratch_copy("head_mlm_untied", &format!("untied-without-{key}"));
        edit_safetensors(&dir, |tensors| tensors.retain(|t| t.0 != key));
        let err = load_head::<LongformerForMaskedLM>(&dir, &Device::flex()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, LoadError::MissingKeys { .. }), "{msg}");
        assert!(
            msg.contains(key) && msg.contains("model.safetensors"),
            "{msg}"
        );
    }
}

#[test]
fn sequence_classification_matches_hf() {
    let case = Case::new("head_sequence_classification");
    for (backend, device) in devices() {
        let model: LongformerForSequenceClassification = case.load(&device);
        for (with_global, key) in settings("logits") {
            let logits = model.forward(case.input(with_global, &device)).unwrap();
            case.check("sequence classification", backend, logits, &key);
        }
    }
}

#[test]
fn question_answering_matches_hf() {
    let case = Case::new("head_question_answering");
    for (backend, device) in devices() {
        let model: LongformerForQuestionAnswering = case.load(&device);
        for with_global in [true, false] {
            let out = model.forward(case.input(with_global, &device)).unwrap();
            let suffix = if with_global { "" } else { "_default_global" };
            let what = "question answering";
            case.check(
                what,
                backend,
                out.start_logits,
                &format!("start_logits{suffix}"),
            );
            case.check(
                what,
                backend,
                out.end_logits,
                &format!("end_logits{suffix}"),
            );
        }
    }
}

#[test]
fn token_classification_with_roberta_prefix_matches_hf() {
    let case = Case::new("head_token_classification");
    for (backend, device) in devices() {
        let model: LongformerForTokenClassification = case.load(&device);
        for (with_global, key) in settings("logits") {
            let logits = model.forward(case.input(with_global, &device)).unwrap();
            case.check("token classification", backend, logits, &key);
        }
    }
}

#[test]
fn multiple_choice_matches_hf() {
    let case = Case::new("head_multiple_choice");
    let shape: [usize; 3] = case.expected["input_ids"].shape.clone().try_into().unwrap();
    for (backend, device) in devices() {
        let model: LongformerForMultipleChoice = case.load(&device);
        let ints = |key: &str| -> Tensor<3, Int> {
            let values: Vec<i64> = case.rows(key).into_iter().flatten().collect();
            Tensor::from_data(TensorData::new(values, shape), &device)
        };
        let bools = |key: &str| -> Tensor<3, Bool> { ints(key).equal_elem(1) };
        for (with_global, key) in settings("logits") {
            let input = MultipleChoiceInput::from_tensors(
                ints("input_ids"),
                Some(bools("attention_mask")),
                with_global.then(|| bools("global_attention_mask")),
            )
            .unwrap();
            let logits = model.forward(input).unwrap();
            case.check("multiple choice", backend, logits, &key);
        }
    }
}

/// Rewrites `dir/model.safetensors` through `edit` on its (name, shape, f32 values).
fn edit_safetensors(dir: &Path, edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<u8>)>)) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            (name, view.shape().to_vec(), view.data().to_vec())
        })
        .collect();
    edit(&mut tensors);
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(name, shape, data)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                    .unwrap();
            (name.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, &path).unwrap();
}

#[test]
fn masked_lm_takes_the_decoder_bias_when_lm_head_bias_is_absent() {
    let dir = scratch_copy("head_mlm", "decoder-bias");
    edit_safetensors(&dir, |tensors| {
        let bias = tensors.iter_mut().find(|t| t.0 == "lm_head.bias").unwrap();
        bias.0 = "lm_head.decoder.bias".into();
    });
    let case = Case::new("head_mlm");
    let device = Device::flex();
    let model: LongformerForMaskedLM = load_head(&dir, &device).unwrap();
    let logits = model.forward(case.input(true, &device)).unwrap();
    case.check("masked LM (decoder.bias only)", "flex", logits, "logits");
}

#[test]
fn a_missing_head_key_is_an_error_naming_key_and_file() {
    let dir = scratch_copy("head_sequence_classification", "missing-head-key");
    edit_safetensors(&dir, |tensors| {
        tensors.retain(|t| t.0 != "classifier.out_proj.weight");
    });
    let err = load_head::<LongformerForSequenceClassification>(&dir, &Device::flex()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LoadError::MissingKeys { .. }), "{msg}");
    assert!(
        msg.contains("classifier.out_proj.weight") && msg.contains("model.safetensors"),
        "{msg}"
    );
}

#[test]
fn an_unknown_head_key_is_an_error() {
    let dir = scratch_copy("head_mlm", "unexpected-head-key");
    edit_safetensors(&dir, |tensors| {
        let extra = tensors
            .iter()
            .find(|t| t.0 == "lm_head.dense.bias")
            .unwrap()
            .clone();
        tensors.push(("lm_head.extra.bias".into(), extra.1, extra.2));
    });
    let msg = load_head::<LongformerForMaskedLM>(&dir, &Device::flex())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("unexpected") && msg.contains("lm_head.extra.bias"),
        "{msg}"
    );
}

#[test]
fn a_head_shape_mismatch_names_the_hf_key() {
    let dir = scratch_copy("head_token_classification", "head-shape");
    // The checkpoint has 5 labels; a config claiming 4 must not load it.
    let path = dir.join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json.as_object_mut().unwrap().remove("id2label");
    json.as_object_mut().unwrap().remove("label2id");
    json["num_labels"] = serde_json::json!(4);
    std::fs::write(&path, json.to_string()).unwrap();
    let err = load_head::<LongformerForTokenClassification>(&dir, &Device::flex()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LoadError::BadTensor { .. }), "{msg}");
    assert!(msg.contains("classifier.weight"), "{msg}");
}

#[test]
fn a_base_checkpoint_is_not_a_head_checkpoint() {
    let dir = fixtures_dir().join("ragged_padding");
    let msg = load_head::<LongformerForQuestionAnswering>(&dir, &Device::flex())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("qa_outputs.weight") && msg.contains("qa_outputs.bias"),
        "{msg}"
    );
}

#[test]
fn question_answering_without_the_separators_is_a_clear_error() {
    let case = Case::new("head_question_answering");
    let device = Device::flex();
    let model: LongformerForQuestionAnswering = case.load(&device);
    let mut ids = case.rows("input_ids");
    // Row 1 loses its closing separator: `<s> q </s></s> context` has 2.
    let last_sep = ids[1].iter().rposition(|&t| t == 2).unwrap();
    ids[1][last_sep] = 7;
    let mask = case.rows("attention_mask");
    let input = LongformerInput::from_rows(&ids, Some(&mask), None, 1, &device);
    let err = model.forward(input).unwrap_err();
    assert_eq!(
        err,
        InputError::Separators {
            row: 1,
            found: 2,
            sep_token_id: 2,
            task: "question answering"
        }
    );
    assert!(err.to_string().contains("row 1 has 2 separator"), "{err}");
    // With a global mask given, the layout does not matter.
    let global = case.rows("global_attention_mask");
    let input = LongformerInput::from_rows(&ids, Some(&mask), Some(&global), 1, &device);
    assert!(model.forward(input).is_ok());
}

#[test]
fn multiple_choice_without_the_separators_is_a_clear_error() {
    let device = Device::flex();
    let model: LongformerForMultipleChoice = Case::new("head_multiple_choice").load(&device);
    let rows = vec![vec![0, 5, 2, 2, 6, 2], vec![0, 5, 2, 6, 7, 2]];
    let input = LongformerInput::from_rows(&rows, None, None, 1, &device);
    let err = model
        .forward(MultipleChoiceInput::new(input, 2).unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("row 1 has 2 separator"), "{err}");
    let input = LongformerInput::from_rows(&rows, None, None, 1, &device);
    assert_eq!(
        MultipleChoiceInput::new(input, 3).unwrap_err(),
        InputError::ChoiceCount {
            rows: 2,
            n_choices: 3
        }
    );
}

/// A masked-LM head, new on a base checkpoint or loaded with its own weights, trains its output
/// bias: every parameter of it gets a gradient (the new head's bias did not, before).
#[test]
fn masked_lm_heads_train_every_parameter() {
    let device = Device::flex().autodiff();
    let new: LongformerForMaskedLM =
        load_with_new_head(fixtures_dir().join("ragged_padding"), &device).unwrap();
    let loaded: LongformerForMaskedLM =
        load_head(fixtures_dir().join("head_mlm"), &device).unwrap();
    for (what, model) in [("new", new), ("loaded", loaded)] {
        let input = LongformerInput::from_rows(&[vec![0i64, 5, 6, 2]], None, None, 1, &device);
        let grads = model.forward(input).unwrap().sum().backward();
        let bias = model.lm_head.bias.val();
        assert!(
            bias.grad(&grads).is_some(),
            "{what} head: no gradient for lm_head.bias"
        );
        let dense = model.lm_head.dense.weight.val();
        assert!(
            dense.grad(&grads).is_some(),
            "{what} head: no gradient for lm_head.dense"
        );
    }
}

#[test]
fn new_head_on_a_base_checkpoint_keeps_the_encoder_and_initialises_the_head() {
    let dir = fixtures_dir().join("ragged_padding");
    let expected = read_safetensors(&dir.join("expected.safetensors"));
    let ids = expected["input_ids"].rows_i64();
    let mask = expected["attention_mask"].rows_i64();
    let global = expected["global_attention_mask"].rows_i64();
    let device = Device::flex();
    let input = || LongformerInput::from_rows(&ids, Some(&mask), Some(&global), 1, &device);

    let model: LongformerForSequenceClassification = load_with_new_head(&dir, &device).unwrap();
    assert!(
        model.longformer.pooler.is_none(),
        "HF's classifier has no pooler"
    );
    let hidden = model
        .longformer
        .try_forward(input())
        .unwrap()
        .last_hidden_state;
    let diff = max_abs_diff(hidden, &expected["last_hidden_state"]);
    assert!(diff <= PARITY_TOLERANCE, "encoder differs by {diff}");
    let head = &model.classifier;
    let bias = head.out_proj.bias.as_ref().unwrap().val();
    assert_eq!(
        bias.abs().max().into_scalar::<f32>(),
        0.0,
        "HF init: zero bias"
    );
    let weight = head.dense.weight.val();
    let std = weight.var(0).mean().sqrt().into_scalar::<f32>();
    assert!(
        (std - 0.02).abs() < 0.005,
        "HF init: N(0, 0.02²), std {std}"
    );
    let logits = model.forward(input()).unwrap();
    assert_eq!(logits.dims(), [3, 2], "num_labels defaults to 2");

    // Multiple choice keeps the checkpoint's pooler.
    let base = load_pretrained(&dir, &device).unwrap();
    let mc: LongformerForMultipleChoice = load_with_new_head(&dir, &device).unwrap();
    let pooled = |m: &longformer_model::LongformerModel| {
        m.try_forward(input()).unwrap().pooler_output.unwrap()
    };
    assert_eq!(
        max_abs_diff_tensors(pooled(&base), pooled(&mc.longformer)),
        0.0
    );
}

#[test]
fn new_head_on_a_checkpoint_without_pooler_adds_one_for_multiple_choice() {
    let dir = fixtures_dir().join("mlm_checkpoint");
    let device = Device::flex();
    let mc: LongformerForMultipleChoice = load_with_new_head(&dir, &device).unwrap();
    let pooler = mc.longformer.pooler.as_ref().unwrap();
    let bias = pooler.dense.bias.as_ref().unwrap().val();
    assert_eq!(bias.abs().max().into_scalar::<f32>(), 0.0);
    let rows = vec![vec![0, 5, 2, 2, 6, 2], vec![0, 5, 2, 2, 7, 2]];
    let input = LongformerInput::from_rows(&rows, None, None, 1, &device);
    let logits = mc
        .forward(MultipleChoiceInput::new(input, 2).unwrap())
        .unwrap();
    assert_eq!(logits.dims(), [1, 2]);
}
