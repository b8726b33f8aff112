//! The default bodies of [`LocalAttentionOps::global_rows_forward`] and
//! [`LocalAttentionOps::global_rows_backward`] (every backend's): the global rows' attention over
//! every key as the fused local op's global slots, one chunk of keys per row of that op.

use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Backend, TensorMetadata};
use burn::tensor::{FloatDType, Shape};

use super::ops::LocalAttentionOps;

/// The sizes of one call: `rows` batch rows of `g` queries in `heads` heads of width `d`; each
/// row's keys in `chunks` chunks of `c`.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    rows: usize,
    heads: usize,
    g: usize,
    d: usize,
    chunks: usize,
    c: usize,
}

impl Sizes {
    /// From `q` (`[rows, heads, g, d]`) and `k` (`[rows · chunks, heads, c, d]`).
    ///
    /// # Panics
    /// If `k`'s rows are not a multiple of `q`'s, or their heads or widths differ.
    fn of<B: Backend>(q: &FloatTensor<B>, k: &FloatTensor<B>) -> Self {
        let [rows, heads, g, d] = q.shape().dims::<4>();
        let [key_rows, key_heads, c, key_d] = k.shape().dims::<4>();
        assert!(
            rows > 0 && key_rows.is_multiple_of(rows) && key_heads == heads && key_d == d,
            "global rows' attention: keys [{key_rows}, {key_heads}, {c}, {key_d}] do not split \
             into chunks for queries [{rows}, {heads}, {g}, {d}]"
        );
        Self {
            rows,
            heads,
            g,
            d,
            chunks: key_rows / rows,
            c,
        }
    }
}

/// `x` (`[rows, ...]`) once per chunk: `[rows · chunks, ...]`, row `r · chunks + s` a copy of
/// row `r`.
fn per_chunk<B: Backend>(x: FloatTensor<B>, chunks: usize) -> FloatTensor<B> {
    if chunks == 1 {
        return x;
    }
    let shape = x.shape();
    let mut one = shape.clone();
    one.insert(1, 1);
    let mut wide = shape.clone();
    wide.insert(1, chunks);
    let mut flat = shape;
    flat[0] *= chunks;
    B::float_reshape(B::float_expand(B::float_reshape(x, one), wide), flat)
}

/// See [`LocalAttentionOps::global_rows_forward`].
pub(super) fn forward<B: LocalAttentionOps>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    key_ok: FloatTensor<B>,
    seed: IntTensor<B>,
    dropout: f64,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let Sizes {
        rows, g, chunks, c, ..
    } = Sizes::of::<B>(&q, &k);
    let device = q.device();
    let q = per_chunk::<B>(q, chunks);
    // No band: the queries stand in for its keys and values, none of them seen.
    let no_band = B::float_zeros(Shape::new([rows * chunks, g]), &device, FloatDType::F32);
    let (context, lse) = B::local_attention_forward(
        q.clone(),
        q.clone(),
        q,
        k,
        v,
        no_band,
        key_ok.clone(),
        seed,
        dropout,
        1,
        false,
        chunks,
    );
    if chunks == 1 {
        return (context, lse);
    }
    // Whether each chunk sees a key at all.
    let seen = B::float_reshape(
        B::float_max_dim(B::float_reshape(key_ok, Shape::new([rows, chunks, c])), 2),
        Shape::new([rows, chunks]),
    );
    B::global_rows_combine(context, lse, seen)
}

/// See [`LocalAttentionOps::global_rows_backward`].
#[allow(clippy::too_many_arguments)]
pub(super) fn backward<B: LocalAttentionOps>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    key_ok: FloatTensor<B>,
    seed: IntTensor<B>,
    lse: FloatTensor<B>,
    delta: FloatTensor<B>,
    grad: FloatTensor<B>,
    dropout: f64,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let Sizes {
        rows,
        heads,
        g,
        d,
        chunks,
        ..
    } = Sizes::of::<B>(&q, &k);
    let device = q.device();
    let [q, grad, lse, delta] = [q, grad, lse, delta].map(|t| per_chunk::<B>(t, chunks));
    let no_band = B::float_zeros(
        Shape::new([rows * chunks, heads, g, d]),
        &device,
        FloatDType::F32,
    );
    let (dq, dk, dv) = B::local_attention_global_backward(
        q, grad, k, v, key_ok, seed, lse, delta, no_band, dropout, chunks,
    );
    let dq = if chunks == 1 {
        dq
    } else {
        B::float_reshape(
            B::float_sum_dim(
                B::float_reshape(dq, Shape::new([rows, chunks, heads, g, d])),
                1,
            ),
            Shape::new([rows, heads, g, d]),
        )
    };
    (dq, dk, dv)
}
