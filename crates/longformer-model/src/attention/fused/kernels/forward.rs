//! The forward kernel: context and log-sum-exp of every query.

use burn_cubecl::cubecl;
use cubecl::prelude::*;

use super::common::{
    BandArgs, NO_SCORE, band_keep, head_rows, head_rows_out, in_window, load_row, place, row_axpy,
    row_dot, slot_keep, slot_key, stage, stage_rows, store_row,
};

/// Forward: the context `[rows, heads, m, d]` and log-sum-exp `[rows, heads, m]` of every
/// query over the global slots (`global_k`, `global_v`: `[rows, heads, g, d]`) and its band.
/// The head tensors (`q`, `k`, `v`, the global slots', `out`) may have any strides the host
/// accepts (see [`super::common::HeadRows`]); the others are contiguous.
///
/// Cube `(x, y, z)`: queries `x·block ..` of a `(row, head)` pair (see [`place`]). `rv`:
/// vectors per head row.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn local_attention_forward_kernel<F: Float, N: Size, I: Numeric>(
    q: &Tensor<Vector<F, N>>,
    k: &Tensor<Vector<F, N>>,
    v: &Tensor<Vector<F, N>>,
    global_k: &Tensor<Vector<F, N>>,
    global_v: &Tensor<Vector<F, N>>,
    key_ok: &Tensor<F>,
    global_ok: &Tensor<F>,
    seed: &Tensor<I>,
    out: &mut Tensor<Vector<F, N>>,
    lse: &mut Tensor<F>,
    band: &BandArgs,
    n_global: u32,
    #[comptime] rv: usize,
    #[comptime] block: usize,
    #[comptime] tile: usize,
    #[comptime] dropout: bool,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let at = place(band, block, false);
    let (m, i) = (at.m, at.own);
    let g = n_global as usize;
    let prob = F::cast_from(band.prob);
    let band_seed = u32::cast_from(seed[0]);
    let slot_seed = slot_key::<I>(seed, dropout);
    let live = i < m;

    let (q_rows, k_rows, v_rows) = (head_rows(q, &at), head_rows(k, &at), head_rows(v, &at));
    let (gk_rows, gv_rows) = (head_rows(global_k, &at), head_rows(global_v, &at));
    let query = load_row::<F, N>(q, &q_rows, i, live, rv);
    let mut acc = Array::<Vector<F, N>>::new(rv);
    // The running maximum and sum of the online softmax.
    let mut stats = Array::<F>::new(2usize);
    stats[0] = F::new(NO_SCORE);
    stats[1] = F::new(0.0);

    let mut keys = Shared::<[Vector<F, N>]>::new_slice(tile * rv);
    let mut values = Shared::<[Vector<F, N>]>::new_slice(tile * rv);
    let mut ok = Shared::<[F]>::new_slice(tile);

    // Global slots first (HF's column order; the order does not change the result).
    let mut start = 0usize;
    while start < g {
        let count = min(tile, g - start);
        stage_rows::<F, N>(
            global_k,
            &gk_rows,
            global_v,
            &gv_rows,
            start,
            count,
            &mut keys,
            &mut values,
            rv,
            block,
        );
        stage::<F>(global_ok, at.row * g + start, count, &mut ok, block);
        sync_cube();
        for u in 0..count {
            if live && ok[u] > F::new(0.5) {
                let mut keep = F::new(1.0);
                if comptime!(dropout) {
                    keep = slot_keep::<F>(band, &at, slot_seed, i, start + u, g);
                }
                online_softmax_key::<F, N>(
                    &query, &keys, &values, u, keep, &mut acc, &mut stats, rv,
                );
            }
        }
        sync_cube();
        start += tile;
    }

    // The band.
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
                let mut keep = F::new(1.0);
                if comptime!(dropout) {
                    keep = band_keep::<F>(band_seed, at.rh, i, j, prob);
                }
                online_softmax_key::<F, N>(
                    &query, &keys, &values, u, keep, &mut acc, &mut stats, rv,
                );
            }
        }
        sync_cube();
        start += tile;
    }

    if live {
        let mut inv = F::new(0.0);
        let mut log_sum = F::new(0.0);
        let (max, sum) = (stats[0], stats[1]);
        if sum > F::new(0.0) {
            inv = F::new(1.0) / sum;
            log_sum = max + F::ln(sum);
        }
        let inv = Vector::<F, N>::new(inv);
        #[unroll]
        for c in 0..rv {
            acc[c] *= inv;
        }
        let out_rows = head_rows_out(out, &at);
        store_row::<F, N>(out, &out_rows, i, &acc, rv);
        lse[at.rows + i] = log_sum;
    }
}

/// One key of the forward pass's online softmax: the score `query · keys[u]`; when it is a new
/// maximum, the running sum and `acc` rescaled to it; then `p = exp(score - max)` added to the
/// sum and `p · keep · values[u]` to `acc` (`keep`: the dropout mask scaled by `1 / (1 - prob)`,
/// or 1). `stats` holds the running maximum and sum.
#[cube]
#[allow(clippy::too_many_arguments)]
fn online_softmax_key<F: Float, N: Size>(
    query: &Array<Vector<F, N>>,
    keys: &Shared<[Vector<F, N>]>,
    values: &Shared<[Vector<F, N>]>,
    u: usize,
    keep: F,
    acc: &mut Array<Vector<F, N>>,
    stats: &mut Array<F>,
    #[comptime] rv: usize,
) {
    let score = row_dot::<F, N>(query, keys, u * rv, rv);
    if score > stats[0] {
        let scale = F::exp(stats[0] - score);
        stats[1] *= scale;
        let rescale = Vector::<F, N>::new(scale);
        #[unroll]
        for c in 0..rv {
            acc[c] *= rescale;
        }
        stats[0] = score;
    }
    let p = F::exp(score - stats[0]);
    stats[1] += p;
    row_axpy::<F, N>(acc, p * keep, values, u * rv, rv);
}
