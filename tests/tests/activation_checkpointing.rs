//! Activation checkpointing ([`LongformerModel::try_forward_checkpointed`]): the recomputed
//! backward pass gives the recorded pass's gradients, for every parameter, on every backend and
//! both local-attention paths, with dropout, padding and global tokens.

use burn::module::Module;
use burn::tensor::{Device, Gradients, Tensor, TensorData};
use longformer_model::{
    AttentionWindow, CheckpointedPass, DropoutSeed, LocalAttentionKernel, LongformerConfig,
    LongformerForMaskedLM, LongformerForMultipleChoice, LongformerForQuestionAnswering,
    LongformerForSequenceClassification, LongformerForTokenClassification, LongformerHeadConfig,
    LongformerInput, LongformerModel, MultipleChoiceInput, TaskHead,
};
use longformer_tests::gradients::param_gradients;
use longformer_tests::{devices, two_row_input};

/// Three layers of two windows, dropout in every place it can be.
fn model(kernel: LocalAttentionKernel) -> LongformerModel {
    let host = Device::flex().autodiff();
    host.seed(5);
    LongformerConfig::tiny(100)
        .with_num_hidden_layers(3)
        .with_attention_window(AttentionWindow::PerLayer(vec![8, 12, 8]))
        .with_hidden_dropout_prob(0.2)
        .with_attention_probs_dropout_prob(0.3)
        .init_with_pooler(false, &host) // no loss here reads a pooler
        .with_local_attention_kernel(kernel)
}

/// Two rows, the second padded; global tokens in the first; a fixed dropout seed.
fn input(device: &Device) -> LongformerInput {
    two_row_input(device).with_dropout_seed(DropoutSeed::new(17))
}

/// A loss that weighs every output element differently.
fn loss<const D: usize>(output: Tensor<D>) -> Tensor<1> {
    let dims = output.dims();
    let values: Vec<f32> = (0..dims.iter().product::<usize>())
        .map(|i| (i as f32 * 0.37).sin())
        .collect();
    let weights = Tensor::<D>::from_data(TensorData::new(values, dims), &output.device());
    (output * weights).sum()
}

#[test]
fn checkpointed_gradients_are_the_recorded_passes() {
    for kernel in [LocalAttentionKernel::Reference, LocalAttentionKernel::Fused] {
        let host_model = model(kernel);
        for (name, device) in devices() {
            let device = device.autodiff();
            let model = host_model.clone().fork(&device);

            let hidden = model.forward(input(&device)).last_hidden_state;
            let recorded_loss = loss(hidden.clone());
            let recorded = recorded_loss.clone().backward();

            let pass = model
                .try_forward_checkpointed(input(&device))
                .expect("a valid input");
            let checkpointed_loss = loss(pass.last_hidden_state.clone());
            let checkpointed = pass.backward(&model, checkpointed_loss.clone().backward());

            let (a, b) = (
                recorded_loss.into_scalar::<f32>(),
                checkpointed_loss.into_scalar::<f32>(),
            );
            assert!(
                (a - b).abs() <= 1e-5 * a.abs().max(1.0),
                "{kernel:?} on {name}: loss {a} recorded, {b} checkpointed"
            );
            let what = format!("{kernel:?} on {name}");
            let (compared, worst) = assert_same_gradients(&what, &model, &recorded, &checkpointed);
            // Embeddings (word, position, type, norm) and 16 tensors per layer.
            assert!(compared >= 5 + 16 * 3, "{compared} parameters compared");
            println!(
                "{kernel:?} on {name}: {compared} gradients, worst relative difference {worst:e}"
            );
        }
    }
}

/// A pass whose loss ignores the output adds nothing; one that uses it reaches the embeddings.
#[test]
fn the_backward_pass_adds_only_what_the_loss_reaches() {
    let device = Device::flex().autodiff();
    let model = model(LocalAttentionKernel::Auto).fork(&device);
    let pass = model.try_forward_checkpointed(input(&device)).unwrap();
    let unrelated = Tensor::<1>::from_floats([2.0], &device).require_grad();
    let grads = pass.backward(&model, (unrelated.clone() * 3.0).sum().backward());
    assert!(unrelated.grad(&grads).is_some());
    let word = model.embeddings.word_embeddings.weight.val();
    assert!(word.grad(&grads).is_none());
}

/// A model fresh from `init`, whose parameters Burn initializes lazily at their first read: the
/// checkpointed pass reads them first, and they still train.
#[test]
fn a_fresh_model_trains_through_the_checkpointed_pass() {
    let device = Device::flex().autodiff();
    let model = LongformerConfig::tiny(100).init(&device);
    let pass = model.try_forward_checkpointed(input(&device)).unwrap();
    let loss = loss(pass.last_hidden_state.clone());
    let grads = pass.backward(&model, loss.backward());
    let query = model.encoder.layer[1]
        .attention
        .self_attn
        .query
        .weight
        .val();
    assert!(query.is_require_grad());
    assert!(query.grad(&grads).is_some());
}

/// Every task head's `forward_checkpointed` gives the recorded pass's gradients, the head's own
/// parameters' (and the pooler's, for multiple choice) among them; the masked-LM head's word
/// embeddings, tied to its decoder, get both shares.
#[test]
fn every_task_head_checkpoints_with_the_recorded_gradients() {
    let host = Device::flex().autodiff();
    let config = LongformerConfig::tiny(100)
        .with_num_hidden_layers(2)
        .with_hidden_dropout_prob(0.2)
        .with_attention_probs_dropout_prob(0.3);
    let heads = LongformerHeadConfig::new(config).with_num_labels(3);
    fn head<H: TaskHead>(heads: &LongformerHeadConfig, device: &Device, seed: u64) -> H {
        device.seed(seed);
        heads.init(device).expect("a head for the tiny config")
    }
    let device = &host;

    let classifier: LongformerForSequenceClassification = head(&heads, device, 1);
    let recorded = loss(classifier.forward(input(device)).unwrap()).backward();
    let (scores, pass) = classifier.forward_checkpointed(input(device)).unwrap();
    let checkpointed = backward(pass, &classifier.longformer, loss(scores));
    assert_same_gradients(
        "sequence classification",
        &classifier,
        &recorded,
        &checkpointed,
    );

    let tagger: LongformerForTokenClassification = head(&heads, device, 2);
    let recorded = loss(tagger.forward(input(device)).unwrap()).backward();
    let (scores, pass) = tagger.forward_checkpointed(input(device)).unwrap();
    let checkpointed = backward(pass, &tagger.longformer, loss(scores));
    assert_same_gradients("token classification", &tagger, &recorded, &checkpointed);

    let reader: LongformerForQuestionAnswering = head(&heads.clone().with_num_labels(2), device, 3);
    let span_loss = |o: longformer_model::QuestionAnsweringOutput| {
        loss(o.start_logits) + loss(o.end_logits.mul_scalar(0.5))
    };
    let recorded = span_loss(reader.forward(input(device)).unwrap()).backward();
    let (spans, pass) = reader.forward_checkpointed(input(device)).unwrap();
    let checkpointed = backward(pass, &reader.longformer, span_loss(spans));
    assert_same_gradients("question answering", &reader, &recorded, &checkpointed);

    let chooser: LongformerForMultipleChoice = head(&heads, device, 4);
    let choices = || MultipleChoiceInput::new(input(device), 2).unwrap();
    let recorded = loss(chooser.forward(choices()).unwrap()).backward();
    let (scores, pass) = chooser.forward_checkpointed(choices()).unwrap();
    let checkpointed = backward(pass, &chooser.longformer, loss(scores));
    assert_same_gradients("multiple choice", &chooser, &recorded, &checkpointed);

    let filler: LongformerForMaskedLM = head(&heads, device, 5);
    assert!(
        filler.lm_head.decoder.is_none(),
        "the decoder is tied to the word embeddings"
    );
    let recorded = loss(filler.forward(input(device)).unwrap()).backward();
    let (scores, pass) = filler.forward_checkpointed(input(device)).unwrap();
    let checkpointed = backward(pass, &filler.longformer, loss(scores));
    assert_same_gradients("masked LM", &filler, &recorded, &checkpointed);
}

fn backward(pass: CheckpointedPass, encoder: &LongformerModel, loss: Tensor<1>) -> Gradients {
    pass.backward(encoder, loss.backward())
}

/// Every parameter of `module` has a gradient in both, within 1e-5 of its largest: how many
/// were compared, and the largest difference relative to its gradient's largest value.
fn assert_same_gradients<M: Module>(
    what: &str,
    module: &M,
    recorded: &Gradients,
    checkpointed: &Gradients,
) -> (usize, f32) {
    let (recorded, checkpointed) = (
        param_gradients(module, recorded),
        param_gradients(module, checkpointed),
    );
    assert_eq!(recorded.len(), checkpointed.len());
    let mut worst = 0.0f32;
    for (r, c) in recorded.iter().zip(&checkpointed) {
        let param = &r.path;
        assert!(
            r.present && c.present,
            "{what}: {param} has a recorded gradient: {}, a checkpointed one: {}",
            r.present,
            c.present
        );
        let (r, c) = (&r.values, &c.values);
        let scale = r.iter().fold(0.0f32, |m, x| m.max(x.abs())).max(1e-3);
        let diff = r
            .iter()
            .zip(c)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        worst = worst.max(diff / scale);
        assert!(
            diff <= 1e-5 * scale,
            "{what}: {param}'s gradient {diff} from the recorded pass's (largest {scale})"
        );
    }
    (recorded.len(), worst)
}

/// Checkpointing an inference pass (no autodiff) is an error naming the remedy, not a panic in
/// the backward pass, for the encoder and a task head alike.
#[test]
fn an_input_without_autodiff_is_an_error() {
    let device = Device::flex();
    let model = LongformerConfig::tiny(100).init(&device);
    let error = model.try_forward_checkpointed(input(&device)).unwrap_err();
    assert!(matches!(
        error,
        longformer_model::InputError::NoAutodiff { .. }
    ));
    assert!(error.to_string().contains("device.autodiff()"), "{error}");
    let heads = LongformerHeadConfig::new(LongformerConfig::tiny(100)).with_num_labels(3);
    let tagger: LongformerForTokenClassification = heads.init(&device).unwrap();
    let error = tagger.forward_checkpointed(input(&device)).unwrap_err();
    assert!(matches!(
        error,
        longformer_model::InputError::NoAutodiff { .. }
    ));
}
