//! Parity with HuggingFace `transformers` (float32) on the committed fixtures, on every backend.
//! Regenerate the fixtures with `python scripts/gen_fixtures.py`.

use longformer_model::{LongformerInput, load_pretrained};
use longformer_tests::{PARITY_TOLERANCE, devices, fixtures_dir, max_abs_diff, read_safetensors};

/// Loads `case`, runs it on every backend and compares every output HF stored.
fn check_case(case: &str) {
    let dir = fixtures_dir().join(case);
    let expected = read_safetensors(&dir.join("expected.safetensors"));
    let ids = expected["input_ids"].rows_i64();
    let mask = expected["attention_mask"].rows_i64();
    let global = expected["global_attention_mask"].rows_i64();
    for (name, device) in devices() {
        let model = load_pretrained(&dir, &device).unwrap_or_else(|e| panic!("{case}: {e}"));
        let input = LongformerInput::from_rows(&ids, Some(&mask), Some(&global), 1, &device);
        let out = model.forward_with_attentions(input).unwrap();

        let diff = max_abs_diff(out.last_hidden_state, &expected["last_hidden_state"]);
        assert!(
            diff <= PARITY_TOLERANCE,
            "{case} on {name}: last_hidden_state differs by {diff}"
        );
        match (out.pooler_output, expected.get("pooler_output")) {
            (Some(p), Some(e)) => {
                let diff = max_abs_diff(p, e);
                assert!(
                    diff <= PARITY_TOLERANCE,
                    "{case} on {name}: pooler_output differs by {diff}"
                );
            }
            (None, None) => {}
            (p, e) => panic!(
                "{case}: pooler present in ours {} vs HF {}",
                p.is_some(),
                e.is_some()
            ),
        }
        for (layer, probs) in out.attentions.iter().enumerate() {
            let Some(local) = expected.get(&format!("local_{layer}")) else {
                continue;
            };
            let diff = max_abs_diff(probs.local.clone(), local);
            assert!(
                diff <= PARITY_TOLERANCE,
                "{case} on {name}: layer {layer} attentions differ by {diff}"
            );
            if let Some(hf_global) = expected.get(&format!("global_{layer}")) {
                check_global_probs(
                    case,
                    name,
                    layer,
                    probs.global.clone().unwrap(),
                    hf_global,
                    &global,
                );
            }
        }
    }
}

/// HF's global attentions are `[B, H, padded_length, G]` and hold filler in empty slots: compare
/// the real sequence at filled slots only.
fn check_global_probs(
    case: &str,
    backend: &str,
    layer: usize,
    ours: burn::tensor::Tensor<4>,
    hf: &longformer_tests::HostTensor,
    global_rows: &[Vec<i64>],
) {
    let [b, h, l, g] = ours.dims();
    let hf_len = hf.shape[2];
    let ours: Vec<f32> = ours.into_data().iter::<f32>().collect();
    let mut worst = 0.0f32;
    for bi in 0..b {
        let filled = global_rows[bi].iter().filter(|v| **v != 0).count();
        for hi in 0..h {
            for t in 0..l {
                for s in 0..filled {
                    let a = ours[((bi * h + hi) * l + t) * g + s];
                    let e = hf.values[((bi * h + hi) * hf_len + t) * g + s] as f32;
                    worst = worst.max((a - e).abs());
                }
            }
        }
    }
    assert!(
        worst <= PARITY_TOLERANCE,
        "{case} on {backend}: layer {layer} global attentions differ by {worst}"
    );
}

#[test]
fn ragged_batch_with_padding_and_varied_global_tokens() {
    check_case("ragged_padding");
}

#[test]
fn per_layer_windows_from_a_bin_with_longformer_prefix() {
    check_case("per_layer_windows");
}

#[test]
fn no_global_tokens_with_roberta_prefix() {
    check_case("no_global");
}

#[test]
fn many_global_tokens_including_the_last_from_a_bare_bin() {
    check_case("many_global");
}

#[test]
fn sequences_shorter_than_the_window() {
    check_case("shorter_than_window");
}

#[test]
fn left_padding() {
    check_case("left_padding");
}

/// Masks that are not plain padding: a row masked whole (its global flag ignored, as HF ignores
/// it), a row whose only unmasked tokens are global, pad ids left unmasked, holes in a row.
#[test]
fn rows_masked_whole_or_in_part() {
    check_case("masked_rows");
}

#[test]
fn mlm_checkpoint_without_pooler_ignores_head_weights() {
    check_case("mlm_checkpoint");
}
