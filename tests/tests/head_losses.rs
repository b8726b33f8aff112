//! The task heads' losses against HuggingFace `transformers` (what a head's `forward` computes
//! with `labels=`), on every backend: `losses.safetensors` in each `head_*` fixture
//! (`python scripts/gen_fixtures.py head_losses`) holds labels that exercise HF's rules (-100
//! ignored; answer positions clamped, those past the sequence ignored; the three problem types
//! of sequence classification) and HF's loss. Bad labels are errors naming them.

use std::collections::HashMap;

use burn::tensor::{Device, Int, Tensor, TensorData};
use longformer_model::heads::MultipleChoiceInput;
use longformer_model::{
    InputError, LongformerForMaskedLM, LongformerForMultipleChoice, LongformerForQuestionAnswering,
    LongformerForSequenceClassification, LongformerForTokenClassification,
};
use longformer_tests::head_fixture::HeadFixture;
use longformer_tests::{HostTensor, devices, read_safetensors};

/// Largest accepted difference from HF's loss, relative to its size (at least 1).
const LOSS_TOLERANCE: f32 = 1e-4;

/// A head fixture, and the labels and losses of its `losses.safetensors`.
struct Case {
    fixture: HeadFixture,
    losses: HashMap<String, HostTensor>,
}

impl std::ops::Deref for Case {
    type Target = HeadFixture;
    fn deref(&self) -> &HeadFixture {
        &self.fixture
    }
}

impl Case {
    fn new(name: &str) -> Self {
        let fixture = HeadFixture::new(name);
        let losses = read_safetensors(&fixture.dir.join("losses.safetensors"));
        Self { fixture, losses }
    }

    /// An int tensor of `losses.safetensors`.
    fn ints<const D: usize>(&self, key: &str, device: &Device) -> Tensor<D, Int> {
        self.losses[key].int_tensor(device)
    }

    /// A float tensor of `losses.safetensors`.
    fn floats(&self, key: &str, device: &Device) -> Tensor<2> {
        self.losses[key].float_tensor(device)
    }

    /// `loss` against HF's `key`.
    fn check(&self, what: &str, loss: Tensor<1>, key: &str) {
        let ours = loss.into_scalar::<f32>();
        let hf = self.losses[key].values[0] as f32;
        let diff = (ours - hf).abs();
        eprintln!("{what}: {key} {ours} against HF's {hf} (diff {diff:.2e})");
        assert!(
            diff <= LOSS_TOLERANCE * hf.abs().max(1.0),
            "{what}: {key} {ours}, HF's {hf}"
        );
    }
}

#[test]
fn masked_lm_loss_matches_hf() {
    let case = Case::new("head_mlm");
    for (backend, device) in devices() {
        let model: LongformerForMaskedLM = case.load(&device);
        let logits = model.forward(case.input(true, &device)).unwrap();
        let loss = model.loss(logits, case.ints("labels", &device)).unwrap();
        case.check(&format!("masked LM on {backend}"), loss, "loss");
    }
}

#[test]
fn token_classification_loss_matches_hf() {
    let case = Case::new("head_token_classification");
    for (backend, device) in devices() {
        let model: LongformerForTokenClassification = case.load(&device);
        let logits = model.forward(case.input(true, &device)).unwrap();
        let loss = model.loss(logits, case.ints("labels", &device)).unwrap();
        case.check(&format!("token classification on {backend}"), loss, "loss");
    }
}

#[test]
fn sequence_classification_losses_match_hf() {
    let case = Case::new("head_sequence_classification");
    for (backend, device) in devices() {
        let model: LongformerForSequenceClassification = case.load(&device);
        let logits = model.forward(case.input(true, &device)).unwrap();
        let what = format!("sequence classification on {backend}");
        let labels = case.ints("labels", &device);
        case.check(&what, model.loss(logits.clone(), labels).unwrap(), "loss");
        let targets = case.floats("regression_targets", &device);
        let loss = model.regression_loss(logits.clone(), targets).unwrap();
        case.check(&what, loss, "regression_loss");
        let targets = case.floats("multi_label_targets", &device);
        let loss = model.multi_label_loss(logits, targets).unwrap();
        case.check(&what, loss, "multi_label_loss");
    }
}

#[test]
fn question_answering_loss_matches_hf() {
    let case = Case::new("head_question_answering");
    for (backend, device) in devices() {
        let model: LongformerForQuestionAnswering = case.load(&device);
        let out = model.forward(case.input(true, &device)).unwrap();
        let loss = model
            .loss(
                out,
                case.ints("start_positions", &device),
                case.ints("end_positions", &device),
            )
            .unwrap();
        case.check(&format!("question answering on {backend}"), loss, "loss");
    }
}

#[test]
fn multiple_choice_loss_matches_hf() {
    let case = Case::new("head_multiple_choice");
    let choices = case.expected["input_ids"].shape[1];
    for (backend, device) in devices() {
        let model: LongformerForMultipleChoice = case.load(&device);
        let input = MultipleChoiceInput::new(case.input(true, &device), choices).unwrap();
        let logits = model.forward(input).unwrap();
        let loss = model.loss(logits, case.ints("labels", &device)).unwrap();
        case.check(&format!("multiple choice on {backend}"), loss, "loss");
    }
}

/// The losses train: their gradient reaches the head's own parameters and the encoder.
#[test]
fn a_loss_back_propagates_to_the_head_and_the_encoder() {
    let case = Case::new("head_sequence_classification");
    let device = Device::flex().autodiff();
    let model: LongformerForSequenceClassification = case.load(&device);
    let logits = model.forward(case.input(true, &device)).unwrap();
    let grads = model
        .loss(logits, case.ints("labels", &device))
        .unwrap()
        .backward();
    let norm = |t: Option<Tensor<2>>| t.expect("a gradient").abs().sum().into_scalar::<f32>();
    let head = norm(model.classifier.out_proj.weight.grad(&grads));
    let encoder = norm(
        model.longformer.encoder.layer[0]
            .intermediate
            .dense
            .weight
            .grad(&grads),
    );
    assert!(head > 0.0 && encoder > 0.0, "{head} {encoder}");
}

#[test]
fn bad_labels_are_errors_naming_them() {
    let device = Device::flex();
    let case = Case::new("head_sequence_classification");
    let model: LongformerForSequenceClassification = case.load(&device);
    let logits = model.forward(case.input(true, &device)).unwrap();
    let labels = |values: Vec<i64>| {
        let n = values.len();
        Tensor::<1, Int>::from_data(TensorData::new(values, [n]), &device)
    };
    let err = model
        .loss(logits.clone(), labels(vec![0, 3, 1]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            InputError::LabelOutOfRange {
                index: 1,
                label: 3,
                classes: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("sequence classification labels[1] is 3; labels must be in 0..3"),
        "{err}"
    );
    let err = model.loss(logits.clone(), labels(vec![0, 1])).unwrap_err();
    assert!(
        err.to_string()
            .contains("labels have shape [2] but the loss needs [3]"),
        "{err}"
    );
    let targets = Tensor::<2>::zeros([3, 2], &device);
    let err = model.regression_loss(logits, targets).unwrap_err();
    assert!(matches!(err, InputError::LabelShape { .. }), "{err}");
}
