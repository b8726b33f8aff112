//! The lookup's gradients ([`EmbeddingLookupOps`]) against Burn's embedding backward, on every
//! backend, and across backends.

use burn::module::Param;
use burn::nn::{Embedding, EmbeddingConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::{lookup, lookup_padding_frozen};
use crate::test_devices::{devices, values};

const PAD: usize = 1;

/// A `[vocab, d]` table with the same deterministic values on every device.
fn table(vocab: usize, d: usize, device: &Device) -> Embedding {
    let weight = TensorData::new(values(vocab * d, 5), [vocab, d]);
    let mut embedding = EmbeddingConfig::new(vocab, d).init(device);
    embedding.weight = Param::from_tensor(Tensor::from_data(weight, device));
    embedding
}

/// The table's gradient for `sum(lookup(ids) · cotangent)`, by `lookup` (the planned sums) or
/// Burn's embedding, as host values.
fn table_grad(
    vocab: usize,
    d: usize,
    ids: &[i64],
    dims: [usize; 2],
    frozen: Option<usize>,
    planned: bool,
    device: &Device,
) -> Vec<f32> {
    let device = device.clone().autodiff();
    let embedding = table(vocab, d, &device);
    let id_tensor = Tensor::<2, Int>::from_data(TensorData::new(ids.to_vec(), dims), &device);
    let out = if planned {
        lookup(&embedding, id_tensor, Some(ids), frozen)
    } else {
        lookup_padding_frozen(&embedding, id_tensor, frozen)
    };
    let n = ids.len();
    let cotangent = values(n * d, 9);
    let cotangent =
        Tensor::<3>::from_data(TensorData::new(cotangent, [dims[0], dims[1], d]), &device);
    let grads = (out * cotangent).sum().backward();
    let grad = embedding
        .weight
        .grad(&grads)
        .expect("the table has a gradient");
    grad.into_data().iter::<f32>().collect()
}

/// Ids of two rows: a frequent id, rare ones, padding, and ids the rows share.
fn ids(n: usize, repeats_of_5: usize) -> Vec<i64> {
    (0..2 * n)
        .map(|t| match t {
            t if t < repeats_of_5 => 5,
            t if t % 11 == 0 => PAD as i64,
            t => (t * 37 % 29) as i64,
        })
        .collect()
}

/// One level of sums (at most 64 tokens per table row): the same additions in the same order as
/// Burn's `select_assign`, so the same bits, with the padding row frozen on every backend.
#[test]
fn one_level_equals_burns_embedding_backward_on_every_backend() {
    let ids = ids(40, 20);
    for device in devices() {
        for d in [12, 7] {
            let ours = table_grad(30, d, &ids, [2, 40], Some(PAD), true, &device);
            let burns = table_grad(30, d, &ids, [2, 40], Some(PAD), false, &device);
            assert_eq!(ours, burns, "{device:?}, d = {d}");
            assert!(ours[PAD * d..(PAD + 1) * d].iter().all(|&g| g == 0.0));
            assert!(ours.iter().any(|&g| g != 0.0));
        }
    }
}

/// Two levels (a row read 300 times): chunk sums, then their sum, within f32 rounding of Burn's
/// token-by-token sum; and the same bits on every backend (the GPU kernel and the CPU loop add
/// in one order).
#[test]
fn two_levels_agree_with_burn_and_across_backends() {
    let ids = ids(200, 300);
    let mut first: Option<Vec<f32>> = None;
    for device in devices() {
        let ours = table_grad(30, 9, &ids, [2, 200], Some(PAD), true, &device);
        let burns = table_grad(30, 9, &ids, [2, 200], Some(PAD), false, &device);
        let scale = burns.iter().fold(0f32, |m, g| m.max(g.abs()));
        for (i, (a, b)) in ours.iter().zip(&burns).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * scale,
                "{device:?} [{i}]: {a} vs {b}"
            );
        }
        match &first {
            None => first = Some(ours),
            Some(first) => assert_eq!(first, &ours, "{device:?} against the first backend"),
        }
    }
}

/// Token types are not frozen: every token passes its gradient, id 0 included; only padding
/// leaves the fallback with a zero gradient.
#[test]
fn unfrozen_and_all_padding_lookups() {
    for device in devices() {
        let types = vec![0i64; 24];
        let ours = table_grad(1, 5, &types, [2, 12], None, true, &device);
        let burns = table_grad(1, 5, &types, [2, 12], None, false, &device);
        assert_eq!(ours, burns, "{device:?}");
        let pads = vec![PAD as i64; 6];
        let ours = table_grad(4, 3, &pads, [1, 6], Some(PAD), true, &device);
        assert!(ours.iter().all(|&g| g == 0.0), "{device:?}");
    }
}
