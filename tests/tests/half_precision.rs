//! Half precision: a model cast to bf16 or f16 matches HF transformers run in that dtype (within
//! the dtype's own error), keeps its attention core in f32 (no overflow where a pure-f16 score
//! product overflows), trains with finite gradients, and devices without the dtype say so.
//!
//! Fixture: `python scripts/gen_fixtures.py half_precision`.

use burn::module::Param;
use burn::tensor::{DType, Device, FloatDType, Tensor};
use longformer_model::precision::check_float_dtype;
use longformer_model::{
    DropoutSeed, InputError, LongformerInput, LongformerModel, cast_float_params, load_pretrained,
};
use longformer_tests::{devices, fixtures_dir, max_abs_diff, read_safetensors};

/// The devices under test that compute in `dtype` (flex; wgpu where the GPU has it).
fn devices_with(dtype: FloatDType) -> Vec<(&'static str, Device)> {
    devices()
        .into_iter()
        .filter(|(_, device)| check_float_dtype(dtype, device).is_ok())
        .collect()
}

/// The fixture's model and input on `device`, the model cast to `dtype`.
fn fixture(dtype: FloatDType, device: &Device) -> (LongformerModel, LongformerInput) {
    let dir = fixtures_dir().join("half_precision");
    let expected = read_safetensors(&dir.join("expected.safetensors"));
    let model = load_pretrained(&dir, device).unwrap();
    let model = cast_float_params(model, dtype, device).unwrap();
    let input = LongformerInput::from_rows(
        &expected["input_ids"].rows_i64(),
        Some(&expected["attention_mask"].rows_i64()),
        Some(&expected["global_attention_mask"].rows_i64()),
        1,
        device,
    );
    (model, input)
}

/// Ours in `dtype` against HF in `dtype` and against HF in f32. HF's own distance between the
/// two is the scale of the dtype's rounding: ours must be within `factor` of it from HF's run.
fn check_against_hf(dtype: FloatDType, key: &str) {
    let dir = fixtures_dir().join("half_precision");
    let f32_out = read_safetensors(&dir.join("expected.safetensors"));
    let half_out = read_safetensors(&dir.join("expected_half.safetensors"));
    let hf_half = &half_out[key];
    let hf_f32 = &f32_out["last_hidden_state"];
    let hf_own_error = hf_half
        .values
        .iter()
        .zip(&hf_f32.values)
        .map(|(a, b)| (a - b).abs() as f32)
        .fold(0.0, f32::max);
    let found = devices_with(dtype);
    assert!(
        found.iter().any(|(name, _)| *name == "flex"),
        "flex computes in {dtype:?}"
    );
    for (name, device) in found {
        let (model, input) = fixture(dtype, &device);
        let out = model.forward(input).last_hidden_state;
        assert_eq!(out.dtype(), DType::from(dtype), "{name}: output dtype");
        let vs_hf_half = max_abs_diff(out.clone(), hf_half);
        let vs_hf_f32 = max_abs_diff(out, hf_f32);
        println!(
            "{name} {dtype:?}: |ours - HF {key}| {vs_hf_half:.5}, |ours - HF f32| {vs_hf_f32:.5}, \
             |HF {key} - HF f32| {hf_own_error:.5}"
        );
        assert!(
            vs_hf_half <= 1.5 * hf_own_error && vs_hf_f32 <= 1.5 * hf_own_error,
            "{name} {dtype:?}: {vs_hf_half} from HF's {key} run and {vs_hf_f32} from its f32 run, \
             while HF's own {key} error is {hf_own_error}"
        );
    }
}

#[test]
fn bf16_matches_hf_in_bf16() {
    check_against_hf(FloatDType::BF16, "last_hidden_state_bf16");
}

#[test]
fn f16_matches_hf_in_f16() {
    check_against_hf(FloatDType::F16, "last_hidden_state_f16");
}

/// Global query/key weights scaled until layer 0's global scores exceed f16's range (65,504):
/// computed in f16 they overflow to infinity, ours (f32 core) stay finite.
#[test]
fn f16_global_scores_beyond_f16_range_stay_finite() {
    let device = Device::flex();
    let (mut model, input) = fixture(FloatDType::F32, &device);
    let scale = |p: Param<Tensor<2>>| p.map(|w| w * 400.0);
    for layer in &mut model.encoder.layer {
        let attn = &mut layer.attention.self_attn;
        attn.query_global.weight = scale(attn.query_global.weight.clone());
        attn.key_global.weight = scale(attn.key_global.weight.clone());
    }
    let model = cast_float_params(model, FloatDType::F16, &device).unwrap();

    // What a pure-f16 score product gives for layer 0.
    let hidden = model.embeddings.forward(
        input.input_ids.clone(),
        input.token_type_ids.clone(),
        DropoutSeed::new(0), // inference: unread
    );
    let attn = &model.encoder.layer[0].attention.self_attn;
    let heads = |x: Tensor<3>| {
        let [b, l, d] = x.dims();
        x.reshape([b, l, 4, d / 4]).swap_dims(1, 2)
    };
    let q = heads(attn.query_global.forward(hidden.clone())) / 8f32.sqrt();
    let k = heads(attn.key_global.forward(hidden));
    let naive = q.matmul(k.swap_dims(2, 3));
    assert_eq!(naive.dtype(), DType::F16);
    let overflowed = naive
        .into_data()
        .iter::<f32>()
        .filter(|s| !s.is_finite())
        .count();
    assert!(
        overflowed > 0,
        "the scaled weights must push some f16 scores past 65,504"
    );

    let out = model.forward(input).last_hidden_state;
    let values: Vec<f32> = out.into_data().iter::<f32>().collect();
    assert!(
        values.iter().all(|v| v.is_finite()),
        "f16 output has {} non-finite values",
        values.iter().filter(|v| !v.is_finite()).count()
    );
}

/// A training step in bf16: forward and backward on an autodiff device give finite gradients
/// of the parameters' dtype.
#[test]
fn bf16_backward_gives_finite_gradients() {
    let device = Device::flex().autodiff();
    let (model, input) = fixture(FloatDType::BF16, &device);
    let loss = model
        .forward(input)
        .last_hidden_state
        .powf_scalar(2.0)
        .mean();
    let grads = loss.backward();
    let weight = &model.encoder.layer[0].attention.self_attn.query.weight;
    let grad = weight
        .val()
        .grad(&grads)
        .expect("query weight has a gradient");
    assert_eq!(grad.dtype(), DType::BF16);
    let global = &model.encoder.layer[1].attention.self_attn.key_global.weight;
    let global_grad = global
        .val()
        .grad(&grads)
        .expect("key_global has a gradient");
    for g in [grad, global_grad] {
        let values: Vec<f32> = g.into_data().iter::<f32>().collect();
        assert!(values.iter().all(|v| v.is_finite()));
        assert!(values.iter().any(|v| *v != 0.0));
    }
}

#[test]
#[allow(deprecated)] // ndarray is deprecated in Burn 0.22 but still a supported backend here
fn a_device_without_the_dtype_is_an_error() {
    let device = Device::ndarray();
    let model = longformer_model::LongformerConfig::tiny(50).init(&device);
    let err = cast_float_params(model, FloatDType::BF16, &device).unwrap_err();
    assert!(matches!(err, InputError::UnsupportedDType { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("cannot compute in BF16; of the half types it has neither"),
        "{err}"
    );
    // The software GPU has no half type either (a GPU through Vulkan may have F16 alone).
    if !std::env::var("LONGFORMER_SKIP_WGPU").is_ok_and(|v| v == "1") {
        let err = check_float_dtype(FloatDType::F16, &Device::wgpu(Default::default()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("of the half types it has neither"), "{err}");
    }
}
