//! CubeCL kernels of the fused local attention (forward, and the band's backward).
//!
//! One cube owns `block` consecutive rows (queries, or keys in the key-gradient kernel) of one
//! `(row, head)` pair, one unit per row. The cube walks the other side's rows that any of its
//! rows may see, `tile` rows at a time staged in shared memory, and each unit keeps its own
//! running state in registers: the online softmax (maximum, sum, weighted values) forward, the
//! gradient sums backward. Nothing of size `[m, 2w + 1]` is ever written.
//!
//! Rows of `q`, `k`, `v` (and their gradients) are read as vectors of `N` floats (4 for every
//! head width divisible by 4): one shared-memory read feeds `N` multiply-adds, and every dot
//! product keeps `N` independent partial sums. A tile is staged by all units together, unit `u`
//! copying vectors `u, u + block, ...` of the tile's contiguous span: neighbouring units read
//! neighbouring addresses (coalesced) and write neighbouring shared-memory words (no bank
//! conflicts).
//!
//! Masked scores are skipped, not given a large negative value, so a query that sees no key
//! ends with an empty sum (zero context, log-sum-exp 0).

use burn_cubecl::cubecl;
use cubecl::prelude::*;

/// Starting maximum of the online softmax: below every real score, finite (WGSL has no `-inf`
/// literal).
const NO_SCORE: f32 = -1.0e30;

/// The dropout factor of band score `(rh, i, j)`: `0` for a dropped probability, `1 / (1 - p)`
/// for a kept one. Keep-or-drop comes from a hash of the seed and the position (a murmur3
/// finalizer), so the backward kernels recompute the forward pass's choice without storing it.
#[cube]
fn band_keep<F: Float>(seed: u32, rh: usize, i: usize, j: usize, prob: F) -> F {
    let mut x = seed ^ (rh as u32 * 0x9E37_79B1u32) ^ (i as u32 * 0x85EB_CA77u32);
    x ^= j as u32 * 0xC2B2_AE3Du32;
    x = x ^ (x >> 16);
    x *= 0x7FEB_352Du32;
    x = x ^ (x >> 15);
    x *= 0x846C_A68Bu32;
    x = x ^ (x >> 16);
    let uniform = F::cast_from(x >> 8) * F::new(1.0 / 16_777_216.0);
    let mut keep = F::new(0.0);
    if uniform >= prob {
        keep = F::new(1.0) / (F::new(1.0) - prob);
    }
    keep
}

/// Copies `len` consecutive elements of `src`, from `offset` on, into `dst[0..len]`: unit `u` of
/// the cube copies elements `u, u + units, ...`.
#[cube]
fn stage<T: CubePrimitive>(
    src: &Tensor<T>,
    offset: usize,
    len: usize,
    dst: &mut Shared<[T]>,
    #[comptime] units: usize,
) {
    let mut idx = UNIT_POS_X as usize;
    while idx < len {
        dst[idx] = src[offset + idx];
        idx += units;
    }
}

/// The sum of a vector's lanes.
#[cube]
fn lane_sum<F: Float, N: Size>(x: Vector<F, N>) -> F {
    let mut sum = F::new(0.0);
    #[unroll]
    for l in 0..x.vector_size() {
        sum += x.extract(l);
    }
    sum
}

/// `a · b` over one row of `rv` vectors: `a` in registers, `b` at `b[offset..offset + rv]`.
#[cube]
fn row_dot<F: Float, N: Size>(
    a: &Array<Vector<F, N>>,
    b: &Shared<[Vector<F, N>]>,
    offset: usize,
    #[comptime] rv: usize,
) -> F {
    let mut partial = Vector::<F, N>::new(F::new(0.0));
    #[unroll]
    for c in 0..rv {
        partial += a[c] * b[offset + c];
    }
    lane_sum::<F, N>(partial)
}

/// `acc += scale · b[offset..offset + rv]`.
#[cube]
fn row_axpy<F: Float, N: Size>(
    acc: &mut Array<Vector<F, N>>,
    scale: F,
    b: &Shared<[Vector<F, N>]>,
    offset: usize,
    #[comptime] rv: usize,
) {
    let s = Vector::<F, N>::new(scale);
    #[unroll]
    for c in 0..rv {
        acc[c] += s * b[offset + c];
    }
}

/// Row `index` of a `[.., rv]`-vector tensor into registers (zeros when `live` is false).
#[cube]
fn load_row<F: Float, N: Size>(
    src: &Tensor<Vector<F, N>>,
    index: usize,
    live: bool,
    #[comptime] rv: usize,
) -> Array<Vector<F, N>> {
    let mut row = Array::<Vector<F, N>>::new(rv);
    if live {
        #[unroll]
        for c in 0..rv {
            row[c] = src[index * rv + c];
        }
    }
    row
}

/// Forward: context and log-sum-exp of every query.
///
/// Cube `(x, y)`: queries `x·block ..` of `(row, head) = y`. `rv`: vectors per head row.
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
    global_keep: &Tensor<F>,
    seed: &Tensor<I>,
    out: &mut Tensor<Vector<F, N>>,
    lse: &mut Tensor<F>,
    seq_len: u32,
    n_global: u32,
    n_heads: u32,
    left: u32,
    right: u32,
    prob: f32,
    #[comptime] rv: usize,
    #[comptime] block: usize,
    #[comptime] tile: usize,
    #[comptime] dropout: bool,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let m = seq_len as usize;
    let g = n_global as usize;
    let prob = F::cast_from(prob);
    let seed = u32::cast_from(seed[0]);
    let left = left as usize;
    let right = right as usize;
    let rh = CUBE_POS_Y as usize;
    let row = rh / n_heads as usize;
    let first = CUBE_POS_X as usize * block;
    let i = first + UNIT_POS_X as usize;
    let live = i < m;
    // First row of this `(row, head)` pair, in rows.
    let rows = rh * m;

    let query = load_row::<F, N>(q, rows + i, live, rv);
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
        let from = (rh * g + start) * rv;
        stage::<Vector<F, N>>(global_k, from, count * rv, &mut keys, block);
        stage::<Vector<F, N>>(global_v, from, count * rv, &mut values, block);
        stage::<F>(global_ok, row * g + start, count, &mut ok, block);
        sync_cube();
        for u in 0..count {
            if live && ok[u] > F::new(0.5) {
                let mut keep = F::new(1.0);
                if comptime!(dropout) {
                    keep = global_keep[(rows + i) * g + start + u];
                }
                online_softmax_key::<F, N>(
                    &query, &keys, &values, u, keep, &mut acc, &mut stats, rv,
                );
            }
        }
        sync_cube();
        start += tile;
    }

    // The band: keys first - left ..= first + block - 1 + right, inside the sequence.
    let mut start = 0usize;
    if first > left {
        start = first - left;
    }
    let end = min(m, first + block + right);
    while start < end {
        let count = min(tile, end - start);
        stage::<Vector<F, N>>(k, (rows + start) * rv, count * rv, &mut keys, block);
        stage::<Vector<F, N>>(v, (rows + start) * rv, count * rv, &mut values, block);
        stage::<F>(key_ok, row * m + start, count, &mut ok, block);
        sync_cube();
        for u in 0..count {
            let j = start + u;
            if live && j + left >= i && j <= i + right && ok[u] > F::new(0.5) {
                let mut keep = F::new(1.0);
                if comptime!(dropout) {
                    keep = band_keep::<F>(seed, rh, i, j, prob);
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
            out[(rows + i) * rv + c] = acc[c] * inv;
        }
        lse[rows + i] = log_sum;
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

/// Backward, query side: `dq` of the band.
///
/// Cube `(x, y)`: queries `x·block ..` of `(row, head) = y`.
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
    seq_len: u32,
    n_heads: u32,
    left: u32,
    right: u32,
    prob: f32,
    #[comptime] rv: usize,
    #[comptime] block: usize,
    #[comptime] tile: usize,
    #[comptime] dropout: bool,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let m = seq_len as usize;
    let prob = F::cast_from(prob);
    let seed = u32::cast_from(seed[0]);
    let left = left as usize;
    let right = right as usize;
    let rh = CUBE_POS_Y as usize;
    let row = rh / n_heads as usize;
    let first = CUBE_POS_X as usize * block;
    let i = first + UNIT_POS_X as usize;
    let live = i < m;
    let rows = rh * m;

    let query = load_row::<F, N>(q, rows + i, live, rv);
    let dout = load_row::<F, N>(grad, rows + i, live, rv);
    let mut lse_i = F::new(0.0);
    let mut delta_i = F::new(0.0);
    if live {
        lse_i = lse[rows + i];
        delta_i = delta[rows + i];
    }
    let mut acc = Array::<Vector<F, N>>::new(rv);

    let mut keys = Shared::<[Vector<F, N>]>::new_slice(tile * rv);
    let mut values = Shared::<[Vector<F, N>]>::new_slice(tile * rv);
    let mut ok = Shared::<[F]>::new_slice(tile);

    let mut start = 0usize;
    if first > left {
        start = first - left;
    }
    let end = min(m, first + block + right);
    while start < end {
        let count = min(tile, end - start);
        stage::<Vector<F, N>>(k, (rows + start) * rv, count * rv, &mut keys, block);
        stage::<Vector<F, N>>(v, (rows + start) * rv, count * rv, &mut values, block);
        stage::<F>(key_ok, row * m + start, count, &mut ok, block);
        sync_cube();
        for u in 0..count {
            let j = start + u;
            if live && j + left >= i && j <= i + right && ok[u] > F::new(0.5) {
                let score = row_dot::<F, N>(&query, &keys, u * rv, rv);
                let mut dp = row_dot::<F, N>(&dout, &values, u * rv, rv);
                if comptime!(dropout) {
                    dp *= band_keep::<F>(seed, rh, i, j, prob);
                }
                let ds = F::exp(score - lse_i) * (dp - delta_i);
                row_axpy::<F, N>(&mut acc, ds, &keys, u * rv, rv);
            }
        }
        sync_cube();
        start += tile;
    }

    if live {
        #[unroll]
        for c in 0..rv {
            dq[(rows + i) * rv + c] = acc[c];
        }
    }
}

/// Backward, key side: `dk` and `dv` of the band.
///
/// Cube `(x, y)`: keys `x·block ..` of `(row, head) = y`; key `j` is seen by the queries
/// `j - right ..= j + left`.
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
    seq_len: u32,
    n_heads: u32,
    left: u32,
    right: u32,
    prob: f32,
    #[comptime] rv: usize,
    #[comptime] block: usize,
    #[comptime] tile: usize,
    #[comptime] dropout: bool,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let m = seq_len as usize;
    let prob = F::cast_from(prob);
    let seed = u32::cast_from(seed[0]);
    let left = left as usize;
    let right = right as usize;
    let rh = CUBE_POS_Y as usize;
    let row = rh / n_heads as usize;
    let first = CUBE_POS_X as usize * block;
    let j = first + UNIT_POS_X as usize;
    let rows = rh * m;
    let mut live = false;
    if j < m {
        live = key_ok[row * m + j] > F::new(0.5);
    }

    let key = load_row::<F, N>(k, rows + j, j < m, rv);
    let value = load_row::<F, N>(v, rows + j, j < m, rv);
    let mut dk_acc = Array::<Vector<F, N>>::new(rv);
    let mut dv_acc = Array::<Vector<F, N>>::new(rv);

    let mut queries = Shared::<[Vector<F, N>]>::new_slice(tile * rv);
    let mut douts = Shared::<[Vector<F, N>]>::new_slice(tile * rv);
    let mut lses = Shared::<[F]>::new_slice(tile);
    let mut deltas = Shared::<[F]>::new_slice(tile);

    let mut start = 0usize;
    if first > right {
        start = first - right;
    }
    let end = min(m, first + block + left);
    while start < end {
        let count = min(tile, end - start);
        stage::<Vector<F, N>>(q, (rows + start) * rv, count * rv, &mut queries, block);
        stage::<Vector<F, N>>(grad, (rows + start) * rv, count * rv, &mut douts, block);
        stage::<F>(lse, rows + start, count, &mut lses, block);
        stage::<F>(delta, rows + start, count, &mut deltas, block);
        sync_cube();
        for u in 0..count {
            let i = start + u;
            if live && j + left >= i && j <= i + right {
                let score = row_dot::<F, N>(&key, &queries, u * rv, rv);
                let dp = row_dot::<F, N>(&value, &douts, u * rv, rv);
                let p = F::exp(score - lses[u]);
                let mut keep = F::new(1.0);
                if comptime!(dropout) {
                    keep = band_keep::<F>(seed, rh, i, j, prob);
                }
                let ds = p * (dp * keep - deltas[u]);
                row_axpy::<F, N>(&mut dv_acc, p * keep, &douts, u * rv, rv);
                row_axpy::<F, N>(&mut dk_acc, ds, &queries, u * rv, rv);
            }
        }
        sync_cube();
        start += tile;
    }

    if j < m {
        #[unroll]
        for c in 0..rv {
            dk[(rows + j) * rv + c] = dk_acc[c];
            dv[(rows + j) * rv + c] = dv_acc[c];
        }
    }
}
