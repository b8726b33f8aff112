//! Input validation against HF's semantics: the length limit counts what HF's position ids count,
//! and data HF would read differently (mask values other than 0/1) or that cannot be held (ids
//! beyond 32 bits, token types outside the embedding) is an [`InputError`], never a panic.

use burn::tensor::{Device, Int, Tensor, TensorData};
use longformer_model::{InputError, LongformerConfig, LongformerInput, LongformerModel};
use longformer_tests::max_abs_diff_tensors;

/// A tiny model whose position embedding has 34 rows.
fn model(pad_token_id: usize, type_vocab_size: usize) -> LongformerModel {
    LongformerConfig::tiny(97)
        .with_max_position_embeddings(34)
        .with_pad_token_id(pad_token_id)
        .with_type_vocab_size(type_vocab_size)
        .init(&Device::flex())
}

/// One row: `real` ids of 7, then `pads` explicit padding ids with mask 0.
fn row(real: usize, pads: usize, pad_token_id: i64) -> LongformerInput {
    let ids = [vec![7; real], vec![pad_token_id; pads]].concat();
    let mask = [vec![1; real], vec![0; pads]].concat();
    LongformerInput::from_rows(&[ids], Some(&[mask]), None, pad_token_id, &Device::flex())
}

/// HF (transformers 5.24, `scripts`-style tiny model with `max_position_embeddings=34`) runs
/// exactly the rows with at most `34 - pad_token_id - 1` non-pad ids, whatever explicit padding
/// follows, and fails with an `IndexError` on one more: 32/33 for pad 1, 33/34 for pad 0, 28/29
/// for pad 5, each with 0 or 6 trailing pads.
#[test]
fn the_length_limit_is_hfs_and_ignores_explicit_padding() {
    for pad in [1usize, 0, 5] {
        let model = model(pad, 1);
        let max = 34 - pad - 1;
        for pads in [0, 6] {
            let ok = model.try_forward(row(max, pads, pad as i64));
            assert!(ok.is_ok(), "pad {pad}: {max} + {pads} pads: {:?}", ok.err());
            let err = model
                .try_forward(row(max + 1, pads, pad as i64))
                .unwrap_err();
            assert_eq!(
                err,
                InputError::TooLong {
                    row: 0,
                    length: max + 1,
                    max
                },
                "pad {pad}, {pads} pads"
            );
            assert!(
                err.to_string()
                    .contains(&format!("{} exceeds the model's maximum of {max}", max + 1)),
                "{err}"
            );
        }
    }
}

#[test]
fn pad_ids_inside_a_row_take_no_position_and_do_not_count() {
    let model = model(1, 1);
    // 32 ordinary ids with two pad ids (mask 1) in the middle: 34 tokens, 32 positions.
    let ids = [vec![7i64; 16], vec![1; 2], vec![7; 16]].concat();
    let input = LongformerInput::from_rows(&[ids], None, None, 1, &Device::flex());
    assert!(model.try_forward(input).is_ok());
}

#[test]
fn explicit_padding_past_the_limit_leaves_the_real_tokens_unchanged() {
    let model = model(1, 1);
    let plain = model.forward(row(32, 0, 1)).last_hidden_state;
    let padded = model.forward(row(32, 4, 1)).last_hidden_state;
    let diff = max_abs_diff_tensors(plain, padded.slice([0..1, 0..32]));
    assert!(diff < 1e-5, "{diff}");
}

#[test]
fn the_row_that_is_too_long_is_named() {
    let model = model(1, 1);
    let rows = vec![vec![7i64; 20], vec![7; 33], vec![7; 3]];
    let input = LongformerInput::from_rows(&rows, None, None, 1, &Device::flex());
    let err = model.try_forward(input).unwrap_err().to_string();
    assert!(err.starts_with("row 1: sequence length 33"), "{err}");
}

fn with_types(types: Vec<i64>) -> LongformerInput {
    let device = Device::flex();
    let n = types.len();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![7i64; n], [1, n]), &device);
    let types = Tensor::<2, Int>::from_data(TensorData::new(types, [1, n]), &device);
    LongformerInput::new(ids).with_token_type_ids(types)
}

#[test]
fn token_types_outside_the_embedding_are_an_error_not_a_panic() {
    let model = model(1, 2);
    assert!(model.try_forward(with_types(vec![0, 1, 1, 0])).is_ok());
    for bad in [2, 7, -1, 100_000] {
        let err = model
            .try_forward(with_types(vec![0, 1, bad, 0]))
            .unwrap_err();
        assert_eq!(
            err,
            InputError::TokenTypeOutOfRange {
                row: 0,
                col: 2,
                id: bad,
                type_vocab_size: 2
            }
        );
        assert!(
            err.to_string()
                .contains(&format!("token type id {bad} at [0, 2]")),
            "{err}"
        );
    }
}

/// Two rows: `[0, 5, 6]` (all real, no global token) and `ids` with the given second-row masks.
fn from_rows(
    ids: Vec<i64>,
    mask: Option<Vec<i64>>,
    global: Option<Vec<i64>>,
) -> Result<LongformerInput, InputError> {
    let mask = mask.map(|m| vec![vec![1, 1, 1], m]);
    let global = global.map(|g| vec![vec![0, 0, 0], g]);
    LongformerInput::try_from_rows(
        &[vec![0, 5, 6], ids],
        mask.as_deref(),
        global.as_deref(),
        1,
        &Device::flex(),
    )
}

/// `{"input_ids": [[0, 5, 2147483648, 2]]}` panicked while the tensor was built, before any range
/// check could run.
#[test]
fn ids_beyond_32_bits_are_an_error_not_a_panic() {
    for id in [2_147_483_648i64, i64::MAX, -2_147_483_649, -1] {
        let err = from_rows(vec![0, id, 2], None, None).unwrap_err();
        assert_eq!(err, InputError::TokenIdRange { row: 1, col: 1, id });
        assert!(
            err.to_string()
                .contains(&format!("token id {id} at [1, 1]")),
            "{err}"
        );
    }
    // The largest 32-bit id is built, and left to the model's vocabulary check.
    let input = from_rows(vec![0, 2_147_483_647, 2], None, None).unwrap();
    let err = model(1, 1).try_forward(input).unwrap_err();
    assert!(matches!(err, InputError::TokenOutOfRange { .. }), "{err}");
}

/// HF reads an attention mask of 2 as global, a global mask of 2 as local and -1 as padding: such
/// values are refused with the mask, row and column.
#[test]
fn mask_values_other_than_0_and_1_are_an_error() {
    let cases = [
        (Some(vec![1, 2, 1]), None, "attention_mask", 2),
        (Some(vec![1, -1, 1]), None, "attention_mask", -1),
        (None, Some(vec![0, 2, 0]), "global_attention_mask", 2),
        (None, Some(vec![0, -1, 0]), "global_attention_mask", -1),
    ];
    for (mask, global, name, value) in cases {
        let err = from_rows(vec![0, 9, 2], mask, global).unwrap_err();
        assert_eq!(
            err,
            InputError::MaskValue {
                mask: name,
                row: 1,
                col: 1,
                value
            }
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("{name} at [1, 1] is {value}")),
            "{msg}"
        );
    }
    assert!(from_rows(vec![0, 9, 2], Some(vec![1, 1, 0]), Some(vec![1, 0, 0])).is_ok());
}
