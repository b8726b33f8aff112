//! Properties that need no oracle: the banded attention equals a dense masked reference (values
//! and gradients) on random shapes and layouts, and a padded batch equals its rows one by one
//! and its rows selected and cut to their longest.

use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use longformer_model::attention::{
    AttentionMasks, LocalAttentionKernel, SlidingWindowAttentionConfig,
};
use longformer_model::{
    AttentionDilation, AttentionLayout, AttentionWindow, DropoutSeed, LongformerConfig,
    LongformerInput,
};
use longformer_tests::dense_reference::dense_attention;
use longformer_tests::{devices, max_abs_diff_tensors};

/// A deterministic pseudo-random generator (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Random padding (right or left) and global tokens per row.
fn random_layout(rng: &mut Rng, batch: usize, len: usize) -> AttentionLayout {
    let mut is_real = vec![false; batch * len];
    let mut is_global = vec![false; batch * len];
    for b in 0..batch {
        let n = 1 + rng.below(len);
        let left = rng.below(2) == 1;
        let start = if left { len - n } else { 0 };
        for t in start..start + n {
            is_real[b * len + t] = true;
            is_global[b * len + t] = rng.below(5) == 0;
        }
    }
    AttentionLayout::new(batch, len, is_real, is_global)
}

/// Both local-attention paths: the band path of tensor ops and the fused op (CPU products or GPU
/// kernels), each in inference and in training.
const KERNELS: [LocalAttentionKernel; 2] =
    [LocalAttentionKernel::Reference, LocalAttentionKernel::Fused];

/// Compares the banded attention with the dense reference on a plain (inference) device:
/// outputs only.
fn check_inference_against_dense(
    label: &str,
    device: &Device,
    layout: &AttentionLayout,
    config: &SlidingWindowAttentionConfig,
) {
    let [batch, len] = [layout.batch_size, layout.seq_length];
    let attn = config.clone().with_dropout(0.0).init(device);
    let x = Tensor::<3>::random(
        [batch, len, config.d_model],
        Distribution::Normal(0.0, 1.0),
        device,
    );
    let masks = AttentionMasks::new(layout.clone(), device);
    let banded = attn.forward(x.clone(), &masks, DropoutSeed::new(0)); // no dropout outside training
    let dense = dense_attention(&attn, x, layout);
    let diff = max_abs_diff_tensors(banded, dense);
    assert!(
        diff < 1e-5,
        "{label} (inference path): outputs differ by {diff}"
    );
}

/// Compares the banded attention with the dense reference on `device` (an autodiff device):
/// outputs, and gradients of a random weighted sum w.r.t. the input and projections.
fn check_against_dense(
    label: &str,
    device: &Device,
    layout: &AttentionLayout,
    config: SlidingWindowAttentionConfig,
) {
    let [batch, len] = [layout.batch_size, layout.seq_length];
    let d = config.d_model;
    let attn = config.with_dropout(0.0).init(device);
    let x =
        Tensor::<3>::random([batch, len, d], Distribution::Normal(0.0, 1.0), device).require_grad();
    let masks = AttentionMasks::new(layout.clone(), device);
    let banded = attn.forward(x.clone(), &masks, DropoutSeed::new(0)); // no dropout outside training
    let dense = dense_attention(&attn, x.clone(), layout);
    let diff = max_abs_diff_tensors(banded.clone().detach(), dense.clone().detach());
    assert!(diff < 1e-5, "{label}: outputs differ by {diff}");

    // Gradients of the same weighted sum, w.r.t. the input and the projections.
    let weights = Tensor::<3>::random([batch, len, d], Distribution::Normal(0.0, 1.0), device);
    let g_banded = (banded * weights.clone()).sum().backward();
    let g_dense = (dense * weights).sum().backward();
    // A parameter the banded path never touched (no global token) has no gradient: the dense
    // one must then be zero.
    let grad = |p: &burn::module::Param<Tensor<2>>, g: &burn::tensor::Gradients| {
        p.grad(g)
            .unwrap_or_else(|| p.val().zeros_like().detach())
            .unsqueeze::<3>()
    };
    let pairs = [
        (
            x.grad(&g_banded).unwrap(),
            x.grad(&g_dense).unwrap(),
            "input",
        ),
        (
            grad(&attn.query.weight, &g_banded),
            grad(&attn.query.weight, &g_dense),
            "query",
        ),
        (
            grad(&attn.key.weight, &g_banded),
            grad(&attn.key.weight, &g_dense),
            "key",
        ),
        (
            grad(&attn.value_global.weight, &g_banded),
            grad(&attn.value_global.weight, &g_dense),
            "value_global",
        ),
        (
            grad(&attn.query_global.weight, &g_banded),
            grad(&attn.query_global.weight, &g_dense),
            "query_global",
        ),
    ];
    for (a, b, what) in pairs {
        let diff = max_abs_diff_tensors(a, b);
        assert!(diff < 1e-4, "{label}: d/d{what} differs by {diff}");
    }
}

#[test]
fn banded_attention_equals_dense_reference_with_gradients() {
    let mut rng = Rng(0x5eed);
    // (batch, seq_length, attention_window): windows wider and narrower than the sequence,
    // lengths that are and are not window multiples.
    let shapes = [(2, 13, 4), (3, 17, 8), (1, 5, 16), (2, 24, 6), (2, 31, 2)];
    for (name, plain) in devices() {
        let device = plain.clone().autodiff();
        for &(batch, len, window) in &shapes {
            let layout = random_layout(&mut rng, batch, len);
            for kernel in KERNELS {
                let config = SlidingWindowAttentionConfig::new(16, 4, window).with_kernel(kernel);
                let label = format!("{name} {kernel:?} {batch}x{len} w{window}");
                check_inference_against_dense(&label, &plain, &layout, &config);
                check_against_dense(&label, &device, &layout, config);
            }
        }
    }
}

#[test]
fn dilated_and_causal_windows_equal_dense_reference_with_gradients() {
    let mut rng = Rng(0xd11a7e);
    // (batch, seq_length, attention_window, dilation per head, causal): one dilation for all
    // heads, mixed dilations in any head order, dilations longer than the sequence, causal with
    // and without dilation.
    let cases: [(usize, usize, usize, [usize; 4], bool); 7] = [
        (2, 19, 4, [2, 2, 2, 2], false),
        (2, 23, 6, [1, 3, 2, 3], false),
        (1, 9, 2, [4, 1, 1, 16], false),
        (3, 17, 8, [1, 1, 1, 1], true),
        (2, 26, 4, [2, 1, 3, 2], true),
        (1, 33, 6, [5, 5, 5, 5], true),
        (2, 12, 16, [3, 2, 1, 2], false),
    ];
    for (name, plain) in devices() {
        let device = plain.clone().autodiff();
        for &(batch, len, window, dilation, causal) in &cases {
            let layout = random_layout(&mut rng, batch, len);
            for kernel in KERNELS {
                let config = SlidingWindowAttentionConfig::new(16, 4, window)
                    .with_head_dilation(dilation.to_vec())
                    .with_causal(causal)
                    .with_kernel(kernel);
                let label = format!(
                    "{name} {kernel:?} {batch}x{len} w{window} d{dilation:?} causal {causal}"
                );
                check_inference_against_dense(&label, &plain, &layout, &config);
                check_against_dense(&label, &device, &layout, config);
            }
        }
    }
}

#[test]
fn causal_model_output_ignores_later_tokens() {
    let device = Device::flex();
    let model = LongformerConfig::tiny(50)
        .with_num_hidden_layers(2)
        .with_attention_window(AttentionWindow::PerLayer(vec![4, 6]))
        .with_attention_dilation(AttentionDilation::PerHead(vec![
            vec![1, 2, 1, 3],
            vec![2, 2, 1, 1],
        ]))
        .with_autoregressive(true)
        .init(&device);
    let mut rng = Rng(7);
    let prefix: Vec<i64> = (0..17).map(|_| 3 + rng.below(47) as i64).collect();
    let encode = |suffix_seed: u64| {
        let mut rng = Rng(suffix_seed);
        let mut row = prefix.clone();
        row.extend((0..9).map(|_| 3 + rng.below(47) as i64));
        model
            .forward(LongformerInput::from_rows(&[row], None, None, 1, &device))
            .last_hidden_state
    };
    let (a, b) = (encode(1), encode(2));
    let diff = max_abs_diff_tensors(a.clone().narrow(1, 0, 17), b.clone().narrow(1, 0, 17));
    assert!(diff < 1e-6, "the prefix changed by {diff} with the suffix");
    // The check can fail: later positions do change.
    let later = max_abs_diff_tensors(a.narrow(1, 17, 9), b.narrow(1, 17, 9));
    assert!(later > 1e-3, "the suffix did not change its own outputs");

    // In HF's probability layout (column c is key i + (c - w)·d), the columns after the query
    // hold nothing and each row still sums to one.
    let row: Vec<i64> = prefix.clone();
    let out = model
        .forward_with_attentions(LongformerInput::from_rows(&[row], None, None, 1, &device))
        .unwrap();
    for (layer, w) in [(0usize, 2usize), (1, 3)] {
        let local = out.attentions[layer].local.clone();
        let [_, h, l, cols] = local.dims();
        assert_eq!(cols, 2 * w + 1);
        let after: f32 = local.clone().narrow(3, w + 1, w).abs().max().into_scalar();
        assert!(
            after == 0.0,
            "layer {layer}: later keys got probability {after}"
        );
        let sums = local.sum_dim(3).reshape([h * l]);
        let off: f32 = (sums - 1.0).abs().max().into_scalar();
        assert!(off < 1e-5, "layer {layer}: a row sums to 1 ± {off}");
    }
}

fn tiny_model(device: &Device) -> longformer_model::LongformerModel {
    LongformerConfig::tiny(50)
        .with_num_hidden_layers(3)
        .with_attention_window(AttentionWindow::PerLayer(vec![4, 10, 6]))
        .init(device)
}

/// [`tiny_model`] with dilated heads in two layers.
fn dilated_model(device: &Device) -> longformer_model::LongformerModel {
    LongformerConfig::tiny(50)
        .with_num_hidden_layers(3)
        .with_attention_window(AttentionWindow::PerLayer(vec![4, 10, 6]))
        .with_attention_dilation(AttentionDilation::PerHead(vec![
            vec![2, 1, 2, 3],
            vec![1, 1, 1, 1],
            vec![4, 4, 4, 4],
        ]))
        .init(device)
}

#[test]
fn batched_equals_one_by_one_under_padding_and_varied_global_tokens() {
    for (name, device) in devices() {
        for (kind, model) in [
            ("plain", tiny_model(&device)),
            ("dilated", dilated_model(&device)),
        ] {
            batched_equals_one_by_one(&format!("{name} {kind}"), &model, &device);
        }
    }
}

fn batched_equals_one_by_one(
    name: &str,
    model: &longformer_model::LongformerModel,
    device: &Device,
) {
    {
        let device = device.clone();
        let mut rng = Rng(42);
        let lens = [23usize, 9, 16, 1];
        let rows: Vec<Vec<i64>> = lens
            .iter()
            .map(|&n| (0..n).map(|_| 3 + rng.below(47) as i64).collect())
            .collect();
        let globals: Vec<Vec<i64>> = lens
            .iter()
            .enumerate()
            .map(|(b, &n)| {
                (0..n)
                    .map(|t| i64::from(t == 0 || (t + b) % 7 == 3))
                    .collect()
            })
            .collect();
        let batched = model
            .forward(LongformerInput::from_rows(
                &rows,
                None,
                Some(&globals),
                1,
                &device,
            ))
            .last_hidden_state;
        for (b, row) in rows.iter().enumerate() {
            let single = model
                .forward(LongformerInput::from_rows(
                    std::slice::from_ref(row),
                    None,
                    Some(std::slice::from_ref(&globals[b])),
                    1,
                    &device,
                ))
                .last_hidden_state;
            let from_batch = batched.clone().narrow(0, b, 1).narrow(1, 0, row.len());
            let diff = max_abs_diff_tensors(from_batch, single);
            assert!(
                diff < 1e-5,
                "{name}: row {b} differs from its batched self by {diff}"
            );
        }
        // Rows 2 and 1, in that order, cut to the longer one's 16 tokens: their real tokens'
        // outputs are what they are in the whole batch.
        let input = LongformerInput::from_rows(&rows, None, Some(&globals), 1, &device);
        let selected = model
            .forward(input.select_rows(&[2, 1], 16))
            .last_hidden_state;
        for (i, b) in [2, 1].into_iter().enumerate() {
            let diff = max_abs_diff_tensors(
                selected.clone().narrow(0, i, 1).narrow(1, 0, lens[b]),
                batched.clone().narrow(0, b, 1).narrow(1, 0, lens[b]),
            );
            assert!(
                diff < 1e-5,
                "{name}: row {b} selected differs from its batched self by {diff}"
            );
        }
    }
}

#[test]
fn too_long_input_is_an_error_not_a_panic() {
    let device = Device::flex();
    let model = LongformerConfig::tiny(50).init(&device);
    // Id 5: pad ids (1) take no position and do not count towards the limit, as in HF.
    let ids = Tensor::<2, Int>::ones([1, 513], &device) * 5;
    let err = model
        .try_forward(LongformerInput::new(ids))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("513 exceeds the model's maximum of 512"),
        "{err}"
    );
}

#[test]
fn token_id_outside_vocabulary_is_an_error() {
    let device = Device::flex();
    let model = LongformerConfig::tiny(50).init(&device);
    let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![0i64, 7, 50], [1, 3]), &device);
    let err = model
        .try_forward(LongformerInput::new(ids))
        .unwrap_err()
        .to_string();
    assert!(err.contains("token id 50 at [0, 2]"), "{err}");
}

#[test]
fn mask_of_wrong_shape_is_an_error() {
    let device = Device::flex();
    let model = LongformerConfig::tiny(50).init(&device);
    let input = LongformerInput::new(Tensor::<2, Int>::ones([1, 4], &device))
        .with_attention_mask(Tensor::<2, Int>::ones([1, 3], &device).bool());
    let err = model.try_forward(input).unwrap_err().to_string();
    assert!(err.contains("attention_mask has shape [1, 3]"), "{err}");
}
