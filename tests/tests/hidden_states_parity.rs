//! Parity of `hidden_states` (HF's `output_hidden_states=True`) with HuggingFace `transformers`
//! on the `hidden_states` fixture, on every backend: a ragged, right-padded batch with global
//! tokens whose length (27) is not a multiple of the window (8), so HF pads internally and slices
//! that padding off every state. Regenerate with `python scripts/gen_fixtures.py hidden_states`.

use longformer_model::{LongformerInput, OutputOptions, load_pretrained};
use longformer_tests::{
    PARITY_TOLERANCE, devices, fixtures_dir, max_abs_diff, max_abs_diff_tensors, read_safetensors,
};

const CASE: &str = "hidden_states";

#[test]
fn hidden_states_match_hf_on_every_backend() {
    let dir = fixtures_dir().join(CASE);
    let expected = read_safetensors(&dir.join("expected.safetensors"));
    let ids = expected["input_ids"].rows_i64();
    let mask = expected["attention_mask"].rows_i64();
    let global = expected["global_attention_mask"].rows_i64();
    let n_states = (0..)
        .take_while(|i| expected.contains_key(&format!("hidden_state_{i}")))
        .count();
    assert_eq!(n_states, 4, "fixture holds the embedding output + 3 layers");
    for (name, device) in devices() {
        let model = load_pretrained(&dir, &device).unwrap_or_else(|e| panic!("{CASE}: {e}"));
        assert_eq!(model.encoder.layer.len() + 1, n_states);
        let input = || LongformerInput::from_rows(&ids, Some(&mask), Some(&global), 1, &device);

        let out = model.forward_with_hidden_states(input()).unwrap();
        assert!(out.attentions.is_empty(), "attentions were not asked for");
        assert_eq!(
            out.hidden_states.len(),
            n_states,
            "{name}: number of hidden states"
        );
        let mut worst = 0.0f32;
        for (i, state) in out.hidden_states.iter().enumerate() {
            let diff = max_abs_diff(state.clone(), &expected[&format!("hidden_state_{i}")]);
            assert!(
                diff <= PARITY_TOLERANCE,
                "{CASE} on {name}: hidden state {i} differs by {diff}"
            );
            worst = worst.max(diff);
        }
        let diff = max_abs_diff(
            out.last_hidden_state.clone(),
            &expected["last_hidden_state"],
        );
        assert!(
            diff <= PARITY_TOLERANCE,
            "{CASE} on {name}: last_hidden_state differs by {diff}"
        );
        assert_eq!(
            max_abs_diff_tensors(
                out.hidden_states.last().unwrap().clone(),
                out.last_hidden_state
            ),
            0.0,
            "{name}: the last hidden state is last_hidden_state"
        );
        eprintln!("{CASE} on {name}: max hidden-state diff {worst:e}");

        // Both at once through the options; neither by default.
        let both = model
            .try_forward_with(
                input(),
                OutputOptions::default()
                    .with_attentions(true)
                    .with_hidden_states(true),
            )
            .unwrap();
        assert_eq!(both.hidden_states.len(), n_states);
        assert_eq!(both.attentions.len(), model.encoder.layer.len());
        let plain = model.try_forward(input()).unwrap();
        assert!(plain.hidden_states.is_empty() && plain.attentions.is_empty());
        let with_attentions = model.forward_with_attentions(input()).unwrap();
        assert!(with_attentions.hidden_states.is_empty());
        assert_eq!(with_attentions.attentions.len(), model.encoder.layer.len());
    }
}
