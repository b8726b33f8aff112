//! [`super::fused_global_rows`] (the op [`LocalAttentionOps::global_rows_forward`] and its backward)
//! on every backend against the dense softmax of Burn ops on the same device: one chunk and
//! several, a chunk with no key, with and without dropout; and the chunks' weighing
//! ([`LocalAttentionOps::global_rows_combine`], a kernel on GPUs) against flex's Burn ops.

use burn::backend::Dispatch;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};

use super::ops::LocalAttentionOps;
use super::{fused_global_rows_in_chunks, global_key_chunk};
use crate::attention::MASKED_SCORE;
use crate::attention::global::split_heads;
use crate::dropout::{DropoutSeed, keep_scale};
use crate::test_devices::{assert_all_close, devices, values};

/// Batch rows.
const ROWS: usize = 2;
/// Heads.
const HEADS: usize = 2;
/// Global queries per row.
const G: usize = 3;
/// Keys per row.
const N: usize = 24;
/// Head width.
const D: usize = 8;

/// `(context, dq, dkeys, dvalues)` of the global rows' attention on `device`, by the fused op
/// in chunks of `chunk` keys, or by Burn ops (`chunk` `None`). Row 0 sees keys `0..21`, row 1
/// keys `0..10` (so chunks of 6 or 4 keys from key 12 on see none).
fn global_rows_and_gradients(device: &Device, chunk: Option<usize>, dropout: f64) -> [Vec<f32>; 4] {
    let device = device.clone().autodiff();
    let tensor = |shape: [usize; 3], salt: u64| {
        let data = TensorData::new(values(shape.iter().product(), salt), shape);
        Tensor::<3>::from_data(data, &device)
    };
    let q = tensor([ROWS * HEADS, G, D], 1)
        .reshape([ROWS, HEADS, G, D])
        .mul_scalar(2.0)
        .require_grad();
    let keys = tensor([ROWS, N, HEADS * D], 2).require_grad();
    let values_ = tensor([ROWS, N, HEADS * D], 3).require_grad();
    let seen: Vec<f32> = (0..ROWS * N)
        .map(|i| {
            let (row, key) = (i / N, i % N);
            f32::from(u8::from(key < if row == 0 { 21 } else { 10 }))
        })
        .collect();
    let key_ok = Tensor::<2>::from_data(TensorData::new(seen, [ROWS, N]), &device);
    let seed = DropoutSeed::new(5);
    let context = match chunk {
        Some(chunk) => fused_global_rows_in_chunks(
            q.clone(),
            keys.clone(),
            values_.clone(),
            key_ok,
            dropout,
            seed,
            chunk,
        ),
        None => {
            let scores = q
                .clone()
                .matmul(split_heads(keys.clone(), HEADS).swap_dims(2, 3));
            let hidden = key_ok.equal_elem(0.0).reshape([ROWS, 1, 1, N]);
            let mut probs = softmax(
                scores.mask_fill(hidden.expand([ROWS, HEADS, G, N]), MASKED_SCORE),
                3,
            );
            if dropout > 0.0 {
                probs = probs * keep_scale([ROWS, HEADS, G, N], 1.0 - dropout, seed, &device);
            }
            probs.matmul(split_heads(values_.clone(), HEADS))
        }
    };
    let weights = tensor([ROWS * HEADS, G, D], 4).reshape([ROWS, HEADS, G, D]);
    let grads = (context.clone() * weights).sum().backward();
    let read = |data: TensorData| data.iter::<f32>().collect::<Vec<_>>();
    [
        read(context.into_data()),
        read(q.grad(&grads).expect("dq").into_data()),
        read(keys.grad(&grads).expect("dkeys").into_data()),
        read(values_.grad(&grads).expect("dvalues").into_data()),
    ]
}

#[test]
fn fused_global_rows_match_the_dense_softmax_on_every_backend() {
    for device in devices() {
        for dropout in [0.0, 0.3] {
            let reference = global_rows_and_gradients(&device, None, dropout);
            // 5 and 7 do not divide 24: padded to 25 and 28 keys.
            for chunk in [N, 12, 6, 4, 5, 7] {
                let ours = global_rows_and_gradients(&device, Some(chunk), dropout);
                assert_all_close(
                    &["context", "dq", "dkeys", "dvalues"],
                    &ours,
                    &reference,
                    1e-5,
                    &format!("{device:?}, {chunk} keys per chunk, dropout {dropout}"),
                );
            }
        }
    }
}

#[test]
fn global_key_chunks_divide_the_sequence_or_it_is_padded() {
    assert_eq!(global_key_chunk(4096, false), 4096);
    assert_eq!(global_key_chunk(4096, true), 256);
    assert_eq!(global_key_chunk(16_384, true), 256);
    assert_eq!(global_key_chunk(200, true), 200);
    // 1,536 = 6 · 256 keys; 1,000 = 4 · 250; 1,018 = 2 · 509 and 4,099 (prime): padded.
    assert_eq!(global_key_chunk(1536, true), 256);
    assert_eq!(global_key_chunk(1000, true), 250);
    assert_eq!(global_key_chunk(1018, true), 256);
    assert_eq!(global_key_chunk(4099, true), 256);
}

/// `(context, lse)` of [`LocalAttentionOps::global_rows_combine`] on `device` for 3 rows of 5
/// chunks, 2 heads, `g` queries of width `d`, the context laid out token-major (as the forward
/// kernel writes it): row 0 sees keys in every chunk, row 1 in chunks 1 and 3 only, row 2 in
/// none.
fn combined(device: &Device, [g, d]: [usize; 2]) -> [Vec<f32>; 2] {
    let (rows, chunks, heads) = (3, 5, 2);
    let context = Tensor::<4>::from_data(
        TensorData::new(
            values(rows * chunks * g * heads * d, 11),
            [rows * chunks, g, heads, d],
        ),
        device,
    )
    .swap_dims(1, 2);
    // Log-sum-exps up to 8 apart: shares from about 1 to about e^-8.
    let lse = Tensor::<3>::from_data(
        TensorData::new(
            values(rows * chunks * heads * g, 12),
            [rows * chunks, heads, g],
        ),
        device,
    ) * 4.0;
    let seen: Vec<f32> = (0..rows * chunks)
        .map(|i| f32::from(u8::from(i < chunks || i == chunks + 1 || i == chunks + 3)))
        .collect();
    let seen = Tensor::<2>::from_data(TensorData::new(seen, [rows, chunks]), device);
    let (context, lse) = <Dispatch as LocalAttentionOps>::global_rows_combine(
        context.into_dispatch(),
        lse.into_dispatch(),
        seen.into_dispatch(),
    );
    [
        Tensor::<4>::from_dispatch(context)
            .into_data()
            .iter::<f32>()
            .collect(),
        Tensor::<3>::from_dispatch(lse)
            .into_data()
            .iter::<f32>()
            .collect(),
    ]
}

/// Head widths read as vectors of 4, 2 and 1; query counts past one cube of units.
#[test]
fn chunks_combine_alike_on_every_backend() {
    for dims in [[3, 8], [70, 6], [2, 5]] {
        let reference = combined(&Device::flex(), dims);
        let [g, d] = dims;
        // Row 2 sees no key: a zero context and log-sum-exp.
        assert!(reference[0][2 * 2 * g * d..].iter().all(|x| *x == 0.0));
        assert!(reference[1][2 * 2 * g..].iter().all(|x| *x == 0.0));
        for device in devices() {
            assert_all_close(
                &["context", "lse"],
                &combined(&device, dims),
                &reference,
                1e-5,
                &format!("{device:?}, {g} queries of width {d}"),
            );
        }
    }
}
