//! [`LocalAttentionOps`] on the CPU backends (flex, ndarray): the GPU kernels' computation, one
//! block of queries at a time with `gemm` products, in parallel over `(row, head)` pairs.
//!
//! A block's scores (`[block, g + span]`) live in a reused buffer and are never kept: the
//! backward pass recomputes them from `q`, `k` and the row log-sum-exp, as on the GPU. Dropout
//! uses the same hashed choices as the GPU kernels (`cpu_rows::BandDropout`).

use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Backend, TensorMetadata};
use gemm::{Parallelism, gemm};
use rayon::prelude::*;

use super::cpu_rows::{self, BandDropout, additive_bias};
use super::ops::{LocalAttentionOps, expect_slot_chunks};
use crate::cpu::for_cpu_backends;
use crate::dropout::{keep_factor, keep_threshold_and_scale, mask_row_hash};
use crate::host::{read, read_ints, write};

/// Queries per block.
const BLOCK: usize = 64;

/// Shapes and window of one call.
#[derive(Clone, Copy)]
struct Geometry {
    heads: usize,
    m: usize,
    d: usize,
    g: usize,
    left: usize,
    right: usize,
}

impl Geometry {
    /// Keys `[lo, hi)` any query of the block starting at `i0` (of `bq` rows) may see.
    fn span(&self, i0: usize, bq: usize) -> (usize, usize) {
        (
            i0.saturating_sub(self.left),
            (i0 + bq + self.right).min(self.m),
        )
    }

    /// Keys `[a, b)` of the span `[lo, hi)` inside query `i`'s window (`a == b` if none).
    fn window(&self, i: usize, (lo, hi): (usize, usize)) -> (usize, usize) {
        let a = i.saturating_sub(self.left).clamp(lo, hi);
        let b = (i + self.right + 1).clamp(a, hi);
        (a, b)
    }
}

/// `dst[rows × cols] (+)= lhs[rows × inner] · rhs[inner × cols]`, each given by its row and
/// column strides.
#[allow(clippy::too_many_arguments)]
fn product(
    dst: &mut [f32],
    (dst_rs, dst_cs): (usize, usize),
    accumulate: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
    [rows, cols, inner]: [usize; 3],
) {
    if rows == 0 || cols == 0 {
        return;
    }
    if inner == 0 {
        if !accumulate {
            for r in 0..rows {
                for c in 0..cols {
                    dst[r * dst_rs + c * dst_cs] = 0.0;
                }
            }
        }
        return;
    }
    assert!((rows - 1) * dst_rs + (cols - 1) * dst_cs < dst.len());
    assert!((rows - 1) * lhs_rs + (inner - 1) * lhs_cs < lhs.len());
    assert!((inner - 1) * rhs_rs + (cols - 1) * rhs_cs < rhs.len());
    // SAFETY: the asserts above keep every index the product reads or writes in bounds.
    unsafe {
        gemm(
            rows,
            cols,
            inner,
            dst.as_mut_ptr(),
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

/// The global slots' dropout of one call: the key, the hash threshold and factor, and the runs
/// of slots per batch row (see [`LocalAttentionOps`]).
#[derive(Clone, Copy)]
struct SlotDropout {
    key: i64,
    keep: (u32, f32),
    chunks: usize,
}

impl SlotDropout {
    /// Multiplies `row` (the probabilities of the `g` slots for query `i` of `m` of pair `rh`,
    /// `heads` per row) by their factors.
    fn apply(&self, row: &mut [f32], rh: usize, heads: usize, [i, m]: [usize; 2]) {
        let (batch_row, head) = (rh / heads, rh % heads);
        let row_hash = mask_row_hash(self.key, ((batch_row / self.chunks) * heads + head) * m + i);
        let first_col = (batch_row % self.chunks) * row.len();
        for (s, p) in row.iter_mut().enumerate() {
            *p *= keep_factor(row_hash, first_col + s, self.keep);
        }
    }
}

/// One `(row, head)` of the forward pass.
#[allow(clippy::too_many_arguments)]
fn forward_head(
    geo: Geometry,
    rh: usize,
    [q, k, v, gk, gv]: [&[f32]; 5],
    key_bias: &[f32],
    global_bias: &[f32],
    slot_dropout: Option<SlotDropout>,
    (seed, prob): (u32, f32),
    out: &mut [f32],
    lse: &mut [f32],
) {
    let Geometry { m, d, g, .. } = geo;
    let mut scores = Vec::new();
    for i0 in (0..m).step_by(BLOCK) {
        let bq = BLOCK.min(m - i0);
        let (lo, hi) = geo.span(i0, bq);
        let cols = g + hi - lo;
        scores.clear();
        scores.resize(bq * cols, 0.0);
        let qb = &q[i0 * d..(i0 + bq) * d];
        product(
            &mut scores,
            (cols, 1),
            false,
            qb,
            (d, 1),
            gk,
            (1, d),
            [bq, g, d],
        );
        product(
            &mut scores[g..],
            (cols, 1),
            false,
            qb,
            (d, 1),
            &k[lo * d..],
            (1, d),
            [bq, hi - lo, d],
        );
        for r in 0..bq {
            let i = i0 + r;
            let row = &mut scores[r * cols..(r + 1) * cols];
            let (a, b) = geo.window(i, (lo, hi));
            match cpu_rows::softmax(row, global_bias, (g + a - lo, g + b - lo), &key_bias[a..b]) {
                Some(row_lse) => lse[i] = row_lse,
                None => {
                    lse[i] = 0.0;
                    continue;
                }
            }
            if prob > 0.0 {
                if let Some(slots) = slot_dropout {
                    slots.apply(&mut row[..g], rh, geo.heads, [i, m]);
                }
                let dropout = BandDropout::new(seed, rh, i, a, prob);
                cpu_rows::drop_band(&mut row[g + a - lo..g + b - lo], dropout);
            }
        }
        let ob = &mut out[i0 * d..(i0 + bq) * d];
        product(
            ob,
            (d, 1),
            false,
            &scores,
            (cols, 1),
            gv,
            (d, 1),
            [bq, d, g],
        );
        product(
            ob,
            (d, 1),
            true,
            &scores[g..],
            (cols, 1),
            &v[lo * d..],
            (d, 1),
            [bq, d, hi - lo],
        );
    }
}

/// One `(row, head)` of the band's backward pass: `dq`, `dk`, `dv`.
#[allow(clippy::too_many_arguments)]
fn backward_head(
    geo: Geometry,
    rh: usize,
    [q, k, v, grad]: [&[f32]; 4],
    key_bias: &[f32],
    lse: &[f32],
    delta: &[f32],
    (seed, prob): (u32, f32),
    [dq, dk, dv]: [&mut [f32]; 3],
) {
    let Geometry { m, d, .. } = geo;
    dk.fill(0.0);
    dv.fill(0.0);
    let (mut probs, mut ds) = (Vec::new(), Vec::new());
    for i0 in (0..m).step_by(BLOCK) {
        let bq = BLOCK.min(m - i0);
        let (lo, hi) = geo.span(i0, bq);
        let nk = hi - lo;
        for buffer in [&mut probs, &mut ds] {
            buffer.clear();
            buffer.resize(bq * nk, 0.0);
        }
        let qb = &q[i0 * d..(i0 + bq) * d];
        let gb = &grad[i0 * d..(i0 + bq) * d];
        product(
            &mut probs,
            (nk, 1),
            false,
            qb,
            (d, 1),
            &k[lo * d..],
            (1, d),
            [bq, nk, d],
        );
        product(
            &mut ds,
            (nk, 1),
            false,
            gb,
            (d, 1),
            &v[lo * d..],
            (1, d),
            [bq, nk, d],
        );
        for r in 0..bq {
            let i = i0 + r;
            let (a, b) = geo.window(i, (lo, hi));
            let at = r * nk..(r + 1) * nk;
            let (p_row, ds_row) = (&mut probs[at.clone()], &mut ds[at]);
            let dropout = (prob > 0.0).then(|| BandDropout::new(seed, rh, i, a, prob));
            cpu_rows::backward(
                p_row,
                ds_row,
                (a - lo, b - lo),
                &key_bias[a..b],
                (lse[i], delta[i]),
                dropout,
            );
        }
        let kspan = &k[lo * d..hi * d];
        product(
            &mut dq[i0 * d..(i0 + bq) * d],
            (d, 1),
            false,
            &ds,
            (nk, 1),
            kspan,
            (d, 1),
            [bq, d, nk],
        );
        product(
            &mut dk[lo * d..hi * d],
            (d, 1),
            true,
            &ds,
            (1, nk),
            qb,
            (d, 1),
            [nk, d, bq],
        );
        product(
            &mut dv[lo * d..hi * d],
            (d, 1),
            true,
            &probs,
            (1, nk),
            gb,
            (d, 1),
            [nk, d, bq],
        );
    }
}

fn forward<B: Backend>(
    [q, k, v, global_k, global_v, key_ok, global_ok]: [FloatTensor<B>; 7],
    seed: IntTensor<B>,
    dropout: f64,
    window: usize,
    causal: bool,
    slot_chunks: usize,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let device = q.device();
    let [rows, heads, m, d] = q.shape().dims::<4>();
    let g = global_k.shape().dims::<4>()[2];
    let geo = Geometry {
        heads,
        m,
        d,
        g,
        left: window,
        right: if causal { 0 } else { window },
    };
    let keys = seed_values::<B>(seed, dropout > 0.0);
    let slot_dropout = (dropout > 0.0).then(|| {
        expect_slot_chunks("local_attention_forward", rows, slot_chunks);
        SlotDropout {
            key: keys[1],
            keep: keep_threshold_and_scale(1.0 - dropout),
            chunks: slot_chunks,
        }
    });
    let [q, k, v, gk, gv, key_ok, global_ok] =
        [q, k, v, global_k, global_v, key_ok, global_ok].map(read::<B>);
    let (key_bias, global_bias) = (additive_bias(&key_ok), additive_bias(&global_ok));
    let mut out = vec![0.0f32; rows * heads * m * d];
    let mut lse = vec![0.0f32; rows * heads * m];
    out.par_chunks_mut(m * d)
        .zip(lse.par_chunks_mut(m))
        .enumerate()
        .for_each(|(rh, (out, lse))| {
            let row = rh / geo.heads;
            let (x, gx) = (rh * m * d..(rh + 1) * m * d, rh * g * d..(rh + 1) * g * d);
            forward_head(
                geo,
                rh,
                [
                    &q[x.clone()],
                    &k[x.clone()],
                    &v[x],
                    &gk[gx.clone()],
                    &gv[gx],
                ],
                &key_bias[row * m..(row + 1) * m],
                &global_bias[row * g..(row + 1) * g],
                slot_dropout,
                (keys[0] as u32, dropout as f32),
                out,
                lse,
            );
        });
    (
        write::<B>(out, vec![rows, heads, m, d], &device),
        write::<B>(lse, vec![rows, heads, m], &device),
    )
}

#[allow(clippy::too_many_arguments)]
fn band_backward<B: Backend>(
    [q, k, v, key_ok, lse, delta, grad]: [FloatTensor<B>; 7],
    seed: IntTensor<B>,
    dropout: f32,
    window: usize,
    causal: bool,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let device = q.device();
    let [rows, heads, m, d] = q.shape().dims::<4>();
    let geo = Geometry {
        heads,
        m,
        d,
        g: 0,
        left: window,
        right: if causal { 0 } else { window },
    };
    let seed = seed_values::<B>(seed, dropout > 0.0)[0] as u32;
    let [q, k, v, key_ok, lse, delta, grad] = [q, k, v, key_ok, lse, delta, grad].map(read::<B>);
    let key_bias = additive_bias(&key_ok);
    let size = rows * heads * m * d;
    let (mut dq, mut dk, mut dv) = (vec![0.0f32; size], vec![0.0f32; size], vec![0.0f32; size]);
    dq.par_chunks_mut(m * d)
        .zip(dk.par_chunks_mut(m * d))
        .zip(dv.par_chunks_mut(m * d))
        .enumerate()
        .for_each(|(rh, ((dq, dk), dv))| {
            let row = rh / geo.heads;
            let x = rh * m * d..(rh + 1) * m * d;
            backward_head(
                geo,
                rh,
                [&q[x.clone()], &k[x.clone()], &v[x.clone()], &grad[x]],
                &key_bias[row * m..(row + 1) * m],
                &lse[rh * m..(rh + 1) * m],
                &delta[rh * m..(rh + 1) * m],
                (seed, dropout),
                [dq, dk, dv],
            );
        });
    let shape = vec![rows, heads, m, d];
    (
        write::<B>(dq, shape.clone(), &device),
        write::<B>(dk, shape.clone(), &device),
        write::<B>(dv, shape, &device),
    )
}

/// The seed tensor's two keys, the band's and the global slots' (not read without dropout).
///
/// # Panics
/// With dropout, unless the tensor holds two keys.
fn seed_values<B: Backend>(seed: IntTensor<B>, dropout: bool) -> [i64; 2] {
    if !dropout {
        return [0, 0];
    }
    match read_ints::<B>(seed)[..] {
        [band, slots, ..] => [band, slots],
        ref keys => panic!("the dropout seed holds {} keys, not 2", keys.len()),
    }
}

macro_rules! cpu_local_attention {
    ($backend:ty) => {
        impl LocalAttentionOps for $backend {
            fn local_attention_forward(
                q: FloatTensor<Self>,
                k: FloatTensor<Self>,
                v: FloatTensor<Self>,
                global_k: FloatTensor<Self>,
                global_v: FloatTensor<Self>,
                key_ok: FloatTensor<Self>,
                global_ok: FloatTensor<Self>,
                seed: IntTensor<Self>,
                dropout: f64,
                window: usize,
                causal: bool,
                slot_chunks: usize,
            ) -> (FloatTensor<Self>, FloatTensor<Self>) {
                forward::<Self>(
                    [q, k, v, global_k, global_v, key_ok, global_ok],
                    seed,
                    dropout,
                    window,
                    causal,
                    slot_chunks,
                )
            }

            fn local_attention_band_backward(
                q: FloatTensor<Self>,
                k: FloatTensor<Self>,
                v: FloatTensor<Self>,
                key_ok: FloatTensor<Self>,
                lse: FloatTensor<Self>,
                delta: FloatTensor<Self>,
                grad: FloatTensor<Self>,
                seed: IntTensor<Self>,
                dropout: f32,
                window: usize,
                causal: bool,
            ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
                band_backward::<Self>(
                    [q, k, v, key_ok, lse, delta, grad],
                    seed,
                    dropout,
                    window,
                    causal,
                )
            }
        }
    };
}

for_cpu_backends!(cpu_local_attention);
