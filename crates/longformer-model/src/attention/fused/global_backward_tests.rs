//! [`LocalAttentionOps::local_attention_global_backward`] on every backend against flex's (the
//! trait's default body, Burn ops with `keep_scale`'s mask): the CubeCL kernels' query side,
//! their slot side in chunks of queries and blocks of slots, with and without dropout (hashed in
//! the kernels), slots in one run per row or several, empty slots included.

use burn::backend::Dispatch;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::ops::LocalAttentionOps;
use crate::test_devices::{assert_all_close, devices, values};

/// `(dq, dkg, dvg)` on `device` for `rows` rows of `heads` heads, `m` queries, `g` slots of
/// width `d` (`slot_chunks` runs of slots per batch row); slot 3 of row 0 empty.
fn global_backward(
    device: &Device,
    [rows, heads, m, g, d]: [usize; 5],
    dropout: f64,
    slot_chunks: usize,
) -> [Vec<f32>; 3] {
    let t = |shape: &[usize], salt: u64, scale: f32| {
        let n = shape.iter().product();
        let data: Vec<f32> = values(n, salt).into_iter().map(|v| v * scale).collect();
        TensorData::new(data, shape.to_vec())
    };
    let four = |data: TensorData| Tensor::<4>::from_data(data, device).into_dispatch();
    let three = |data: TensorData, offset: f32| {
        Tensor::<3>::from_data(data, device)
            .add_scalar(offset)
            .into_dispatch()
    };
    let ok: Vec<f32> = (0..rows * g)
        .map(|i| if i == 3 { 0.0 } else { 1.0 })
        .collect();
    let (dq, dk, dv) = <Dispatch as LocalAttentionOps>::local_attention_global_backward(
        four(t(&[rows, heads, m, d], 1, 1.0)),
        four(t(&[rows, heads, m, d], 2, 1.0)),
        four(t(&[rows, heads, g, d], 3, 1.0)),
        four(t(&[rows, heads, g, d], 4, 1.0)),
        Tensor::<2>::from_data(TensorData::new(ok, [rows, g]), device).into_dispatch(),
        Tensor::<1, Int>::from_data(TensorData::new(vec![7i64, 1_234_567], [2]), device)
            .into_dispatch(),
        // Log-sum-exps near the scores: probabilities across (0, 1], some clamped at 1.
        three(t(&[rows, heads, m], 5, 1.0), 1.0),
        three(t(&[rows, heads, m], 6, 0.5), 0.0),
        four(t(&[rows, heads, m, d], 7, 1.0)),
        dropout,
        slot_chunks,
    );
    let read = |x| {
        Tensor::<4>::from_dispatch(x)
            .into_data()
            .iter::<f32>()
            .collect::<Vec<_>>()
    };
    [read(dq), read(dk), read(dv)]
}

/// Shapes past one chunk of queries (256) and one block of slots (64), head widths read as
/// vectors of 4 and of 2; each backend within 1e-5 of flex's largest value.
#[test]
fn global_backward_matches_flex_on_every_backend() {
    for (dims, dropout, slot_chunks) in [
        ([1, 2, 40, 5, 8], 0.0, 1),
        ([2, 2, 300, 70, 6], 0.2, 1),
        ([1, 3, 520, 3, 16], 0.0, 1),
        ([2, 1, 257, 66, 4], 0.1, 1),
        ([6, 2, 30, 7, 8], 0.3, 3),
    ] {
        let reference = global_backward(&Device::flex(), dims, dropout, slot_chunks);
        for device in devices() {
            let ours = global_backward(&device, dims, dropout, slot_chunks);
            assert_all_close(
                &["dq", "dkg", "dvg"],
                &ours,
                &reference,
                1e-5,
                &format!("{device:?} {dims:?} dropout {dropout}, {slot_chunks} runs of slots"),
            );
        }
    }
}
