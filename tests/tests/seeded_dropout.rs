//! Training dropout from a seed ([`LongformerInput::with_dropout_seed`]): one seed gives the same
//! masks on every backend and whatever the device's generator did before, through the whole
//! model (embeddings, both attention paths' probabilities, the residual blocks, a task head).

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use longformer_model::{
    AttentionWindow, LocalAttentionKernel, LongformerConfig, LongformerForSequenceClassification,
    LongformerHeadConfig, LongformerInput, LongformerModel,
};
use longformer_tests::{devices, max_abs_diff_tensors, two_row_input};

/// Taken by every test here: they seed the devices' generators.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn config() -> LongformerConfig {
    LongformerConfig::tiny(100)
        .with_attention_window(AttentionWindow::PerLayer(vec![8, 12]))
        .with_hidden_dropout_prob(0.2)
        .with_attention_probs_dropout_prob(0.3)
}

/// The same weights on every device: built on flex (with autodiff, so they stay trainable where
/// they move), then moved.
fn model(kernel: LocalAttentionKernel) -> LongformerModel {
    let host = Device::flex().autodiff();
    host.seed(5);
    config().init(&host).with_local_attention_kernel(kernel)
}

/// The hidden states of a training pass with `seed`, and the gradient of a weighted sum of them
/// with respect to the first layer's query weight.
fn training_pass(model: &LongformerModel, device: &Device, seed: u64) -> (Tensor<3>, Tensor<2>) {
    let model = model.clone().fork(device);
    let hidden = model
        .forward(two_row_input(device).with_dropout_seed(seed))
        .last_hidden_state;
    let dims = hidden.dims();
    let values: Vec<f32> = (0..dims.iter().product::<usize>())
        .map(|i| (i as f32 * 0.37).sin())
        .collect();
    let weights = Tensor::<3>::from_data(TensorData::new(values, dims), device);
    let grads = (hidden.clone() * weights).sum().backward();
    let grad = model.encoder.layer[0]
        .attention
        .self_attn
        .query
        .weight
        .grad(&grads)
        .expect("a gradient");
    (hidden.inner(), grad)
}

fn host<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    Tensor::from_data(t.into_data(), &Device::flex())
}

/// Every backend drops the same elements with one seed: outputs and gradients agree as if there
/// were no dropout, on the band path and on the fused op alike; another seed, or none, gives
/// other masks.
#[test]
fn one_seed_drops_the_same_elements_on_every_backend() {
    let _serial = serial();
    for kernel in [LocalAttentionKernel::Reference, LocalAttentionKernel::Fused] {
        let model = model(kernel);
        let mut reference: Option<(Tensor<3>, Tensor<2>)> = None;
        for (name, device) in devices() {
            let device = device.autodiff();
            let (hidden, grad) = training_pass(&model, &device, 11);
            let (hidden, grad) = (host(hidden), host(grad));
            let Some((ref_hidden, ref_grad)) = &reference else {
                // Dropout ran: not the output without it, nor another seed's.
                let plain = model
                    .valid()
                    .forward(two_row_input(&Device::flex()))
                    .last_hidden_state;
                let moved = max_abs_diff_tensors(hidden.clone(), plain);
                assert!(
                    moved > 0.1,
                    "{kernel:?}: dropout changed the output by {moved}"
                );
                let other = host(training_pass(&model, &device, 12).0);
                let apart = max_abs_diff_tensors(hidden.clone(), other);
                assert!(apart > 0.1, "{kernel:?}: seeds 11 and 12 {apart} apart");
                reference = Some((hidden, grad));
                continue;
            };
            let diff = max_abs_diff_tensors(hidden, ref_hidden.clone());
            assert!(
                diff < 1e-4,
                "{kernel:?} on {name}: output {diff} from flex's"
            );
            let scale = ref_grad.clone().abs().max().into_scalar::<f32>();
            let diff = max_abs_diff_tensors(grad, ref_grad.clone());
            assert!(
                diff < 1e-3 * scale,
                "{kernel:?} on {name}: gradient {diff} from flex's (largest {scale})"
            );
        }
    }
}

/// A seeded pass does not read the device's generator: reseeding it, or drawing from it, in
/// between changes nothing. Without a seed, a training pass draws one from the generator, so
/// `Device::seed` repeats it.
#[test]
fn seeded_passes_ignore_the_generator_and_unseeded_ones_follow_it() {
    let _serial = serial();
    let model = model(LocalAttentionKernel::Auto);
    for (name, device) in devices() {
        let ad = device.autodiff();
        let model = model.clone().fork(&ad);
        let pass = |input: LongformerInput| model.forward(input).last_hidden_state.inner();
        ad.seed(1);
        let first = pass(two_row_input(&ad).with_dropout_seed(3));
        ad.seed(2);
        let _draw = Tensor::<1>::random([1000], Distribution::Default, &ad).into_data();
        let second = pass(two_row_input(&ad).with_dropout_seed(3));
        let diff = max_abs_diff_tensors(first, second);
        assert!(diff < 1e-5, "{name}: one seed, outputs {diff} apart");

        ad.seed(4);
        let drawn = pass(two_row_input(&ad));
        ad.seed(4);
        let again = pass(two_row_input(&ad));
        ad.seed(5);
        let other = pass(two_row_input(&ad));
        let same = max_abs_diff_tensors(drawn.clone(), again);
        let apart = max_abs_diff_tensors(drawn, other);
        assert!(
            same < 1e-5,
            "{name}: one generator seed, outputs {same} apart"
        );
        assert!(
            apart > 0.1,
            "{name}: two generator seeds, outputs only {apart} apart"
        );
    }
}

/// Outside training the seed is not read: inference gives the output without dropout.
#[test]
fn inference_ignores_the_seed() {
    let _serial = serial();
    let device = Device::flex();
    let model = model(LocalAttentionKernel::Auto).valid();
    let plain = model.forward(two_row_input(&device)).last_hidden_state;
    let seeded = model
        .forward(two_row_input(&device).with_dropout_seed(9))
        .last_hidden_state;
    assert_eq!(plain.into_data(), seeded.into_data());
}

/// A task head's own dropout takes its mask from the input's seed too.
#[test]
fn a_task_head_drops_the_same_elements_on_every_backend() {
    let _serial = serial();
    let host_device = Device::flex();
    host_device.seed(8);
    let classifier: LongformerForSequenceClassification = LongformerHeadConfig::new(config())
        .with_num_labels(3)
        .init(&host_device)
        .expect("a head for the tiny config");
    let mut reference: Option<Tensor<2>> = None;
    for (name, device) in devices() {
        let ad = device.autodiff();
        let scores = classifier
            .clone()
            .fork(&ad)
            .forward(two_row_input(&ad).with_dropout_seed(21))
            .expect("valid input")
            .inner();
        let scores = host(scores);
        match &reference {
            None => reference = Some(scores),
            Some(expected) => {
                let diff = max_abs_diff_tensors(scores, expected.clone());
                assert!(diff < 1e-4, "{name}: scores {diff} from flex's");
            }
        }
    }
}
