//! The band path (`LocalAttentionKernel::Reference`) gives the same gradients on every backend
//! with many global tokens. On the software GPU, building each block's key span with one
//! `select` of repeated rows gave wrong key and value gradients from 313 global tokens in 808
//! (window 8; found by `scripts/grad_sweep.py --heads --long --seed 3201`); the spans are now
//! shifted views of the blocks, and this case guards them.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use longformer_model::{
    AttentionWindow, LocalAttentionKernel, LongformerConfig, LongformerInput, LongformerModel,
};
use longformer_tests::devices;

/// One layer of window 8, 6 heads of 16, on flex (with autodiff, so it trains where it moves).
fn model() -> LongformerModel {
    let host = Device::flex().autodiff();
    host.seed(3);
    LongformerConfig::tiny(50)
        .with_hidden_size(96)
        .with_num_attention_heads(6)
        .with_num_hidden_layers(1)
        .with_intermediate_size(32)
        .with_max_position_embeddings(900)
        .with_attention_window(AttentionWindow::Uniform(8))
        .with_hidden_dropout_prob(0.0)
        .with_attention_probs_dropout_prob(0.0)
        .init_with_pooler(false, &host)
        .with_local_attention_kernel(LocalAttentionKernel::Reference)
}

/// The gradients of the local query, key and value weights for a weighted sum of the output:
/// 808 tokens, global attention on every other one of the first 626.
fn gradients(model: LongformerModel, device: &Device) -> Vec<(&'static str, Vec<f32>)> {
    let device = device.clone().autodiff();
    let model = model.fork(&device);
    let n = 808;
    let ids: Vec<i64> = (0..n).map(|t| 3 + ((t * 31) % 40) as i64).collect();
    let global: Vec<i64> = (0..n).map(|t| i64::from(t < 626 && t % 2 == 0)).collect();
    let input = LongformerInput::from_rows(&[ids], None, Some(&[global]), 1, &device);
    let hidden = model.forward(input).last_hidden_state;
    let dims = hidden.dims();
    let weights: Vec<f32> = (0..dims.iter().product::<usize>())
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let weights = Tensor::<3>::from_data(TensorData::new(weights, dims), &device);
    let grads = (hidden * weights).sum().backward();
    let attention = &model.encoder.layer[0].attention.self_attn;
    [
        ("query", &attention.query),
        ("key", &attention.key),
        ("value", &attention.value),
    ]
    .into_iter()
    .map(|(name, linear)| {
        let grad = linear.weight.grad(&grads).expect("a gradient");
        (name, grad.into_data().iter::<f32>().collect())
    })
    .collect()
}

#[test]
fn band_path_gradients_agree_across_backends_with_many_global_tokens() {
    let model = model();
    let reference = gradients(model.clone(), &Device::flex());
    for (backend, device) in devices().into_iter().skip(1) {
        for ((name, want), (_, got)) in reference.iter().zip(gradients(model.clone(), &device)) {
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            let diff = want
                .iter()
                .zip(&got)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                diff <= 1e-4 * scale,
                "{backend}: the {name} weight's gradient is {diff} off (largest {scale})"
            );
        }
    }
}
