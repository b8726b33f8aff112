//! The band's backward kernels: `dq` from the query side, `dk` and `dv` from the key side. Both
//! recompute the probabilities from `q`, `k` and the forward pass's log-sum-exp; `delta` is
//! `rowsum(grad · context)`. The global slots' share of the gradients is
//! [`super::global_backward`]'s. The head tensors may have any strides the host accepts (see
//! [`super::common::HeadRows`]); `key_ok`, `lse` and `delta` are contiguous.

use burn_cubecl::cubecl;
use cubecl::prelude::*;

use super::common::{
    BandArgs, band_keep, head_rows, head_rows_out, in_window, load_row, place, row_axpy, row_dot,
    stage, stage_rows, store_row,
};

/// Backward, query side: `dq` `[rows, heads, m, d]` of the band.
///
/// Cube `(x, y, z)`: queries `x·block ..` of a `(row, head)` pair (see [`place`]).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn local_attention_dq_kernel<F: Float, N: Size, I: Numeric>(
    q: &Tensor<Vector<F, N>>,
    k: &Tensor<Vector<F, N>>,
    v: &Tensor<Vector<F, N>>,
    key_ok: &Tensor<F>,
    lse: &Tensor<F>,
    delta: &Tensor<F>,
    grad: &Tensor<Vector<F, N>>,
    seed: &Tensor<I>,
    dq: &mut Tensor<Vector<F, N>>,
    band: &BandArgs,
    #[comptime] rv: usize,
    #[comptime] block: usize,
    #[comptime] tile: usize,
    #[comptime] dropout: bool,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let at = place(band, block, false);
    let (m, i) = (at.m, at.own);
    let prob = F::cast_from(band.prob);
    let seed = u32::cast_from(seed[0]);
    let live = i < m;

    let (q_rows, k_rows, v_rows) = (head_rows(q, &at), head_rows(k, &at), head_rows(v, &at));
    let query = load_row::<F, N>(q, &q_rows, i, live, rv);
    let dout = load_row::<F, N>(grad, &head_rows(grad, &at), i, live, rv);
    let mut lse_i = F::new(0.0);
    let mut delta_i = F::new(0.0);
    if live {
        lse_i = lse[at.rows + i];
        delta_i = delta[at.rows + i];
    }
    let mut acc = Array::<Vector<F, N>>::new(rv);

    let mut keys = Shared::<[Vector<F, N>]>::new_slice(tile * rv);
    let mut values = Shared::<[Vector<F, N>]>::new_slice(tile * rv);
    let mut ok = Shared::<[F]>::new_slice(tile);

    let mut start = at.span_start;
    let end = at.span_end;
    while start < end {
        let count = min(tile, end - start);
        stage_rows::<F, N>(
            k,
            &k_rows,
            v,
            &v_rows,
            start,
            count,
            &mut keys,
            &mut values,
            rv,
            block,
        );
        stage::<F>(key_ok, at.row * m + start, count, &mut ok, block);
        sync_cube();
        for u in 0..count {
            let j = start + u;
            if live && in_window(&at, i, j) && ok[u] > F::new(0.5) {
                let score = row_dot::<F, N>(&query, &keys, u * rv, rv);
                let mut dp = row_dot::<F, N>(&dout, &values, u * rv, rv);
                if comptime!(dropout) {
                    dp *= band_keep::<F>(seed, at.rh, i, j, prob);
                }
                let ds = F::exp(score - lse_i) * (dp - delta_i);
                row_axpy::<F, N>(&mut acc, ds, &keys, u * rv, rv);
            }
        }
        sync_cube();
        start += tile;
    }

    if live {
        let dq_rows = head_rows_out(dq, &at);
        store_row::<F, N>(dq, &dq_rows, i, &acc, rv);
    }
}

/// Backward, key side: `dk` and `dv` `[rows, heads, m, d]` of the band, or one of them
/// (`with_dk`, `with_dv`: a unit that computes both keeps four head rows in registers, its key,
/// value and both sums; `dv` alone needs two, `dk` alone three, for a second pass over the
/// scores).
///
/// Cube `(x, y, z)`: keys `x·block ..` of a `(row, head)` pair (see [`place`]); key `j` is
/// seen by the queries `j - right ..= j + left`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn local_attention_dkdv_kernel<F: Float, N: Size, I: Numeric>(
    q: &Tensor<Vector<F, N>>,
    k: &Tensor<Vector<F, N>>,
    v: &Tensor<Vector<F, N>>,
    key_ok: &Tensor<F>,
    lse: &Tensor<F>,
    delta: &Tensor<F>,
    grad: &Tensor<Vector<F, N>>,
    seed: &Tensor<I>,
    dk: &mut Tensor<Vector<F, N>>,
    dv: &mut Tensor<Vector<F, N>>,
    band: &BandArgs,
    #[comptime] rv: usize,
    #[comptime] block: usize,
    #[comptime] tile: usize,
    #[comptime] dropout: bool,
    #[comptime] with_dk: bool,
    #[comptime] with_dv: bool,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let at = place(band, block, true);
    let (m, j) = (at.m, at.own);
    let prob = F::cast_from(band.prob);
    let seed = u32::cast_from(seed[0]);
    let mut live = false;
    if j < m {
        live = key_ok[at.row * m + j] > F::new(0.5);
    }

    let key = load_row::<F, N>(k, &head_rows(k, &at), j, j < m, rv);
    let value = load_row::<F, N>(v, &head_rows(v, &at), j, j < m, rv);
    let (q_rows, grad_rows) = (head_rows(q, &at), head_rows(grad, &at));
    let mut dk_acc = Array::<Vector<F, N>>::new(rv);
    let mut dv_acc = Array::<Vector<F, N>>::new(rv);

    let mut queries = Shared::<[Vector<F, N>]>::new_slice(tile * rv);
    let mut douts = Shared::<[Vector<F, N>]>::new_slice(tile * rv);
    let mut lses = Shared::<[F]>::new_slice(tile);
    let mut deltas = Shared::<[F]>::new_slice(tile);

    let mut start = at.span_start;
    let end = at.span_end;
    while start < end {
        let count = min(tile, end - start);
        stage_rows::<F, N>(
            q,
            &q_rows,
            grad,
            &grad_rows,
            start,
            count,
            &mut queries,
            &mut douts,
            rv,
            block,
        );
        stage::<F>(lse, at.rows + start, count, &mut lses, block);
        if comptime!(with_dk) {
            stage::<F>(delta, at.rows + start, count, &mut deltas, block);
        }
        sync_cube();
        for u in 0..count {
            let i = start + u;
            if live && in_window(&at, i, j) {
                let score = row_dot::<F, N>(&key, &queries, u * rv, rv);
                let p = F::exp(score - lses[u]);
                let mut keep = F::new(1.0);
                if comptime!(dropout) {
                    keep = band_keep::<F>(seed, at.rh, i, j, prob);
                }
                if comptime!(with_dv) {
                    row_axpy::<F, N>(&mut dv_acc, p * keep, &douts, u * rv, rv);
                }
                if comptime!(with_dk) {
                    let dp = row_dot::<F, N>(&value, &douts, u * rv, rv);
                    let ds = p * (dp * keep - deltas[u]);
                    row_axpy::<F, N>(&mut dk_acc, ds, &queries, u * rv, rv);
                }
            }
        }
        sync_cube();
        start += tile;
    }

    if j < m {
        if comptime!(with_dk) {
            let dk_rows = head_rows_out(dk, &at);
            store_row::<F, N>(dk, &dk_rows, j, &dk_acc, rv);
        }
        if comptime!(with_dv) {
            let dv_rows = head_rows_out(dv, &at);
            store_row::<F, N>(dv, &dv_rows, j, &dv_acc, rv);
        }
    }
}
