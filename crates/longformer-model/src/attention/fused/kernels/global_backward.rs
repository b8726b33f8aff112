//! The global slots' share of the backward pass: every query sees every filled slot, with
//! probability `p = exp(min(q·kg - lse, 0))` (0 on empty slots) and dropout factor `keep`
//! (hashed from `seed[1]` as the forward pass did, only with dropout). With
//! `dp = (grad · vg) · keep`
//! and `ds = p · (dp - delta)`:
//! - `dq += Σ_slots ds · kg` (query side, one unit per query);
//! - `dkg = Σ_queries ds · q`, `dvg = Σ_queries p · keep · grad` (slot side, one unit per slot,
//!   the queries split into chunks whose sums the host adds up in one reduction).
//!
//! The head tensors may have any strides the host accepts (see [`super::common::HeadRows`]);
//! `global_ok`, `seed`, `lse`, `delta` and the slot side's outputs are contiguous.

use burn_cubecl::cubecl;
use cubecl::prelude::*;

use super::common::{
    BandArgs, Place, head_rows, head_rows_out, load_row, place, row_axpy, row_dot, slot_keep,
    slot_key, stage, stage_rows, store_row,
};

/// `exp(min(score - lse, 0))`: the clamp keeps an empty or masked slot's score from
/// overflowing before it is dropped (as the forward pass never sums it).
#[cube]
fn slot_prob<F: Float>(score: F, lse: F) -> F {
    let mut s = score - lse;
    if s > F::new(0.0) {
        s = F::new(0.0);
    }
    F::exp(s)
}

/// Query side: `dq` `[rows, heads, m, d]` = `dq_band` plus the global slots' share.
///
/// Cube `(x, y, z)`: queries `x·block ..` of a `(row, head)` pair (see [`place`]); the slots
/// are staged `tile` at a time.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn local_attention_global_dq_kernel<F: Float, N: Size, I: Numeric>(
    q: &Tensor<Vector<F, N>>,
    grad: &Tensor<Vector<F, N>>,
    global_k: &Tensor<Vector<F, N>>,
    global_v: &Tensor<Vector<F, N>>,
    global_ok: &Tensor<F>,
    seed: &Tensor<I>,
    lse: &Tensor<F>,
    delta: &Tensor<F>,
    dq_band: &Tensor<Vector<F, N>>,
    dq: &mut Tensor<Vector<F, N>>,
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
    let live = i < m;
    let slot_seed = slot_key::<I>(seed, dropout);

    let query = load_row::<F, N>(q, &head_rows(q, &at), i, live, rv);
    let dout = load_row::<F, N>(grad, &head_rows(grad, &at), i, live, rv);
    let mut acc = load_row::<F, N>(dq_band, &head_rows(dq_band, &at), i, live, rv);
    let mut lse_i = F::new(0.0);
    let mut delta_i = F::new(0.0);
    if live {
        lse_i = lse[at.rows + i];
        delta_i = delta[at.rows + i];
    }
    let (gk_rows, gv_rows) = (head_rows(global_k, &at), head_rows(global_v, &at));

    let mut keys = Shared::<[Vector<F, N>]>::new_slice(tile * rv);
    let mut values = Shared::<[Vector<F, N>]>::new_slice(tile * rv);
    let mut ok = Shared::<[F]>::new_slice(tile);

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
                let p = slot_prob::<F>(row_dot::<F, N>(&query, &keys, u * rv, rv), lse_i);
                let mut dp = row_dot::<F, N>(&dout, &values, u * rv, rv);
                if comptime!(dropout) {
                    dp *= slot_keep::<F>(band, &at, slot_seed, i, start + u, g);
                }
                row_axpy::<F, N>(&mut acc, p * (dp - delta_i), &keys, u * rv, rv);
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

/// Slot side: each chunk's share of `dkg` and `dvg` in `parts`, `[chunks, 2, rows, heads, g, d]`
/// (contiguous, read as vectors; `dkg` at `[chunk, 0]`, `dvg` at `[chunk, 1]`), for the host to
/// sum over the chunks.
///
/// Cube `(x, y, z)`: `x = chunk · slot_blocks + b` takes slots `b·block ..` (one unit each) and
/// queries `chunk · chunk_len ..` (at most `chunk_len`, staged `tile` at a time) of the
/// `(row, head)` pair `z · CUBE_COUNT_Y + y`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn local_attention_global_slots_kernel<F: Float, N: Size, I: Numeric>(
    q: &Tensor<Vector<F, N>>,
    grad: &Tensor<Vector<F, N>>,
    global_k: &Tensor<Vector<F, N>>,
    global_v: &Tensor<Vector<F, N>>,
    global_ok: &Tensor<F>,
    seed: &Tensor<I>,
    lse: &Tensor<F>,
    delta: &Tensor<F>,
    parts: &mut Tensor<Vector<F, N>>,
    band: &BandArgs,
    n_global: u32,
    chunk_len: u32,
    #[comptime] rv: usize,
    #[comptime] block: usize,
    #[comptime] tile: usize,
    #[comptime] dropout: bool,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let pairs = band.pairs as usize;
    let rh = (CUBE_POS_Z * CUBE_COUNT_Y + CUBE_POS_Y) as usize;
    if rh >= pairs {
        terminate!();
    }
    let m = band.seq_len as usize;
    let g = n_global as usize;
    let slot_blocks = g.div_ceil(block);
    let chunk = CUBE_POS_X as usize / slot_blocks;
    let j = (CUBE_POS_X as usize % slot_blocks) * block + UNIT_POS_X as usize;
    let live = j < g;
    let first = chunk * chunk_len as usize;
    let at = Place {
        m,
        left: 0,
        right: 0,
        rh,
        row: rh / band.n_heads as usize,
        head: rh % band.n_heads as usize,
        rows: rh * m,
        own: j,
        span_start: first,
        span_end: min(m, first + chunk_len as usize),
    };

    let slot_k = load_row::<F, N>(global_k, &head_rows(global_k, &at), j, live, rv);
    let slot_v = load_row::<F, N>(global_v, &head_rows(global_v, &at), j, live, rv);
    let mut filled = false;
    if live {
        filled = global_ok[at.row * g + j] > F::new(0.5);
    }
    let mut acc_k = Array::<Vector<F, N>>::new(rv);
    let mut acc_v = Array::<Vector<F, N>>::new(rv);
    #[unroll]
    for c in 0..rv {
        acc_k[c] = Vector::<F, N>::new(F::new(0.0));
        acc_v[c] = Vector::<F, N>::new(F::new(0.0));
    }
    let q_rows = head_rows(q, &at);
    let grad_rows = head_rows(grad, &at);
    let slot_seed = slot_key::<I>(seed, dropout);

    let mut queries = Shared::<[Vector<F, N>]>::new_slice(tile * rv);
    let mut grads = Shared::<[Vector<F, N>]>::new_slice(tile * rv);
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
            &mut grads,
            rv,
            block,
        );
        stage::<F>(lse, at.rows + start, count, &mut lses, block);
        stage::<F>(delta, at.rows + start, count, &mut deltas, block);
        sync_cube();
        for u in 0..count {
            if filled {
                let p = slot_prob::<F>(row_dot::<F, N>(&slot_k, &queries, u * rv, rv), lses[u]);
                let mut keep = F::new(1.0);
                if comptime!(dropout) {
                    keep = slot_keep::<F>(band, &at, slot_seed, start + u, j, g);
                }
                let dp = row_dot::<F, N>(&slot_v, &grads, u * rv, rv) * keep;
                row_axpy::<F, N>(&mut acc_k, p * (dp - deltas[u]), &queries, u * rv, rv);
                row_axpy::<F, N>(&mut acc_v, p * keep, &grads, u * rv, rv);
            }
        }
        sync_cube();
        start += tile;
    }

    if live {
        let dk_at = ((2 * chunk * pairs + rh) * g + j) * rv;
        let dv_at = (((2 * chunk + 1) * pairs + rh) * g + j) * rv;
        #[unroll]
        for c in 0..rv {
            parts[dk_at + c] = acc_k[c];
            parts[dv_at + c] = acc_v[c];
        }
    }
}
