//! The fused local-attention kernel (CubeCL, on the wgpu device: Mesa llvmpipe in CI) against
//! the band path it replaces: outputs, and gradients of every attention weight, on layouts
//! with padding, varied global tokens, windows wider than one kernel tile, dilation and causal
//! windows. The HF parity and dense-reference tests run it too (it is the default on wgpu).

use burn::module::Param;
use burn::tensor::{Device, Distribution, Tensor};
use longformer_model::attention::fused::fused_available;
use longformer_model::{
    AttentionDilation, AttentionWindow, LocalAttentionKernel, LongformerConfig, LongformerInput,
    LongformerModel,
};
use longformer_tests::max_abs_diff_tensors;

fn wgpu() -> Option<Device> {
    (std::env::var_os("LONGFORMER_SKIP_WGPU").is_none()).then(|| Device::wgpu(Default::default()))
}

#[test]
fn fused_kernel_is_available_on_cubecl_devices_only() {
    assert!(!fused_available(&Device::flex()));
    #[allow(deprecated)]
    let ndarray = Device::ndarray();
    assert!(!fused_available(&ndarray));
    if let Some(device) = wgpu() {
        assert!(fused_available(&device));
        assert!(fused_available(&device.autodiff()));
    }
}

/// The same model (same weights) with the local attention computed by `kernel`.
fn with_kernel(model: &LongformerModel, kernel: LocalAttentionKernel) -> LongformerModel {
    let mut model = model.clone();
    for layer in &mut model.encoder.layer {
        layer.attention.self_attn.kernel = kernel;
    }
    model
}

/// Rows of different lengths (right padding), global tokens at varied places; one row without
/// any global token and one with many.
fn input(lens: &[usize], device: &Device) -> LongformerInput {
    let rows: Vec<Vec<i64>> = lens
        .iter()
        .enumerate()
        .map(|(b, &n)| (0..n).map(|t| 3 + ((t * 31 + b * 7) % 90) as i64).collect())
        .collect();
    let globals: Vec<Vec<i64>> = lens
        .iter()
        .enumerate()
        .map(|(b, &n)| {
            (0..n)
                .map(|t| match b % 3 {
                    0 => i64::from(t < 3 || t % 29 == 5),
                    1 => 0,
                    _ => i64::from(t % 4 == 1),
                })
                .collect()
        })
        .collect();
    LongformerInput::from_rows(&rows, None, Some(&globals), 1, device)
}

fn config(windows: Vec<usize>, dilation: AttentionDilation, causal: bool) -> LongformerConfig {
    let layers = windows.len();
    LongformerConfig::tiny(100)
        .with_num_hidden_layers(layers)
        .with_max_position_embeddings(400)
        .with_attention_window(AttentionWindow::PerLayer(windows))
        .with_attention_dilation(dilation)
        .with_autoregressive(causal)
        .with_hidden_dropout_prob(0.0)
        .with_attention_probs_dropout_prob(0.0)
}

/// Attention weights of every layer, to compare gradients.
fn attention_weights(model: &LongformerModel) -> Vec<(String, Param<Tensor<2>>)> {
    model
        .encoder
        .layer
        .iter()
        .enumerate()
        .flat_map(|(i, layer)| {
            let a = &layer.attention.self_attn;
            [
                ("query", &a.query.weight),
                ("key", &a.key.weight),
                ("value", &a.value.weight),
                ("query_global", &a.query_global.weight),
                ("key_global", &a.key_global.weight),
                ("value_global", &a.value_global.weight),
            ]
            .map(|(name, p)| (format!("layer {i} {name}"), p.clone()))
        })
        .collect()
}

fn check(label: &str, config: LongformerConfig, lens: &[usize]) {
    let Some(device) = wgpu() else { return };
    // Inference.
    let model = config.init(&device);
    let fused = with_kernel(&model, LocalAttentionKernel::Fused);
    let reference = with_kernel(&model, LocalAttentionKernel::Reference);
    let a = fused.forward(input(lens, &device)).last_hidden_state;
    let b = reference.forward(input(lens, &device)).last_hidden_state;
    let diff = max_abs_diff_tensors(a, b);
    assert!(diff < 1e-4, "{label}: inference outputs differ by {diff}");

    // Training: outputs and the gradient of every attention weight.
    let ad = device.autodiff();
    let model = config.init(&ad);
    let fused = with_kernel(&model, LocalAttentionKernel::Fused);
    let reference = with_kernel(&model, LocalAttentionKernel::Reference);
    let [batch, len] = [lens.len(), *lens.iter().max().unwrap()];
    let weights = Tensor::<3>::random(
        [batch, len, config.hidden_size],
        Distribution::Normal(0.0, 1.0),
        &ad,
    );
    let a = fused.forward(input(lens, &ad)).last_hidden_state;
    let b = reference.forward(input(lens, &ad)).last_hidden_state;
    let diff = max_abs_diff_tensors(a.clone().detach(), b.clone().detach());
    assert!(diff < 1e-4, "{label}: training outputs differ by {diff}");
    let ga = (a * weights.clone()).sum().backward();
    let gb = (b * weights).sum().backward();
    for ((name, pa), (_, pb)) in attention_weights(&fused)
        .into_iter()
        .zip(attention_weights(&reference))
    {
        let (Some(da), Some(db)) = (pa.grad(&ga), pb.grad(&gb)) else {
            assert!(
                pa.grad(&ga).is_none() && pb.grad(&gb).is_none(),
                "{label}: {name} has a gradient on one path only"
            );
            continue;
        };
        let scale = db.clone().abs().max().into_scalar::<f32>().max(1e-6);
        let diff = max_abs_diff_tensors(da.unsqueeze::<3>(), db.unsqueeze::<3>()) / scale;
        assert!(
            diff < 1e-3,
            "{label}: d/d{name} differs by {diff} (relative)"
        );
    }
}

#[test]
fn fused_equals_band_path_with_windows_wider_than_a_tile() {
    // One-sided windows 2, 40 and 70 (a kernel tile is 64 rows); 150 tokens span three tiles.
    check(
        "plain",
        config(vec![4, 80, 140], AttentionDilation::Uniform(1), false),
        &[150, 97, 64, 1],
    );
}

#[test]
fn fused_equals_band_path_with_dilation_and_causal_windows() {
    check(
        "dilated",
        config(
            vec![8, 20],
            AttentionDilation::PerHead(vec![vec![2, 1, 2, 3], vec![1, 1, 1, 1]]),
            false,
        ),
        &[130, 71, 20],
    );
    check(
        "causal",
        config(vec![10, 80], AttentionDilation::Uniform(1), true),
        &[140, 33, 90],
    );
}

#[test]
fn forcing_the_fused_kernel_on_a_cpu_device_is_an_error() {
    let device = Device::flex();
    let model = with_kernel(
        &config(vec![4], AttentionDilation::Uniform(1), false).init(&device),
        LocalAttentionKernel::Fused,
    );
    let err = model
        .try_forward(input(&[5], &device))
        .expect_err("flex has no fused kernel");
    assert!(
        err.to_string().contains("fused local-attention kernel"),
        "{err}"
    );
}
