//! CubeCL kernels of the fused local attention (forward, and the band's backward).
//!
//! One cube owns `BLOCK` consecutive rows (queries, or keys in the key-gradient kernel) of one
//! `(row, head)` pair, one unit per row. The cube walks the other side's rows that any of its
//! rows may see in tiles of `BLOCK`, staged in shared memory, and each unit keeps its own
//! running state in registers: the online softmax (maximum, sum, weighted values) forward, the
//! gradient sums backward. Nothing of size `[m, 2w + 1]` is ever written.
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

/// Forward: context and log-sum-exp of every query.
///
/// Cube `(x, y)`: queries `x·BLOCK ..` of `(row, head) = y`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn local_attention_forward_kernel<F: Float, I: Numeric>(
    q: &Tensor<F>,
    k: &Tensor<F>,
    v: &Tensor<F>,
    global_k: &Tensor<F>,
    global_v: &Tensor<F>,
    key_ok: &Tensor<F>,
    global_ok: &Tensor<F>,
    global_keep: &Tensor<F>,
    seed: &Tensor<I>,
    out: &mut Tensor<F>,
    lse: &mut Tensor<F>,
    seq_len: u32,
    n_global: u32,
    n_heads: u32,
    left: u32,
    right: u32,
    prob: f32,
    #[comptime] head_dim: usize,
    #[comptime] block: usize,
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
    let unit = UNIT_POS_X as usize;
    let first = CUBE_POS_X as usize * block;
    let i = first + unit;
    let live = i < m;
    let base = rh * m * head_dim;

    let mut query = Array::<F>::new(head_dim);
    if live {
        #[unroll]
        for c in 0..head_dim {
            query[c] = q[base + i * head_dim + c];
        }
    }
    let mut acc = Array::<F>::new(head_dim);
    // The running maximum and sum of the online softmax.
    let mut stats = Array::<F>::new(2usize);
    stats[0] = F::new(NO_SCORE);
    stats[1] = F::new(0.0);

    let mut keys = Shared::<[F]>::new_slice(block * head_dim);
    let mut values = Shared::<[F]>::new_slice(block * head_dim);
    let mut ok = Shared::<[F]>::new_slice(block);

    // Global slots first (HF's column order; the order does not change the result).
    let gbase = rh * g * head_dim;
    let mut start = 0usize;
    while start < g {
        let j = start + unit;
        if j < g {
            #[unroll]
            for c in 0..head_dim {
                keys[unit * head_dim + c] = global_k[gbase + j * head_dim + c];
                values[unit * head_dim + c] = global_v[gbase + j * head_dim + c];
            }
            ok[unit] = global_ok[row * g + j];
        }
        sync_cube();
        let count = min(block, g - start);
        for u in 0..count {
            if live && ok[u] > F::new(0.5) {
                let mut keep = F::new(1.0);
                if comptime!(dropout) {
                    keep = global_keep[(rh * m + i) * g + start + u];
                }
                online_softmax_key::<F>(
                    &query, &keys, &values, u, keep, &mut acc, &mut stats, head_dim,
                );
            }
        }
        sync_cube();
        start += block;
    }

    // The band: keys first - left ..= first + block - 1 + right, inside the sequence.
    let mut start = 0usize;
    if first > left {
        start = first - left;
    }
    let end = min(m, first + block + right);
    while start < end {
        let j = start + unit;
        if j < end {
            #[unroll]
            for c in 0..head_dim {
                keys[unit * head_dim + c] = k[base + j * head_dim + c];
                values[unit * head_dim + c] = v[base + j * head_dim + c];
            }
            ok[unit] = key_ok[row * m + j];
        }
        sync_cube();
        let count = min(block, end - start);
        for u in 0..count {
            let j = start + u;
            if live && j + left >= i && j <= i + right && ok[u] > F::new(0.5) {
                let mut keep = F::new(1.0);
                if comptime!(dropout) {
                    keep = band_keep::<F>(seed, rh, i, j, prob);
                }
                online_softmax_key::<F>(
                    &query, &keys, &values, u, keep, &mut acc, &mut stats, head_dim,
                );
            }
        }
        sync_cube();
        start += block;
    }

    if live {
        let mut inv = F::new(0.0);
        let mut log_sum = F::new(0.0);
        let (max, sum) = (stats[0], stats[1]);
        if sum > F::new(0.0) {
            inv = F::new(1.0) / sum;
            log_sum = max + F::ln(sum);
        }
        #[unroll]
        for c in 0..head_dim {
            out[base + i * head_dim + c] = acc[c] * inv;
        }
        lse[rh * m + i] = log_sum;
    }
}

/// One key of the forward pass's online softmax: the score `query · keys[u]`; when it is a new
/// maximum, the running sum and `acc` rescaled to it; then `p = exp(score - max)` added to the
/// sum and `p · keep · values[u]` to `acc` (`keep`: the dropout mask scaled by `1 / (1 - prob)`,
/// or 1). `stats` holds the running maximum and sum.
#[cube]
#[allow(clippy::too_many_arguments)]
fn online_softmax_key<F: Float>(
    query: &Array<F>,
    keys: &Shared<[F]>,
    values: &Shared<[F]>,
    u: usize,
    keep: F,
    acc: &mut Array<F>,
    stats: &mut Array<F>,
    #[comptime] head_dim: usize,
) {
    let mut score = F::new(0.0);
    #[unroll]
    for c in 0..head_dim {
        score += query[c] * keys[u * head_dim + c];
    }
    if score > stats[0] {
        let scale = F::exp(stats[0] - score);
        stats[1] *= scale;
        #[unroll]
        for c in 0..head_dim {
            acc[c] *= scale;
        }
        stats[0] = score;
    }
    let p = F::exp(score - stats[0]);
    stats[1] += p;
    let kept = p * keep;
    #[unroll]
    for c in 0..head_dim {
        acc[c] += kept * values[u * head_dim + c];
    }
}

/// Backward, query side: `dq` of the band.
///
/// Cube `(x, y)`: queries `x·BLOCK ..` of `(row, head) = y`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn local_attention_dq_kernel<F: Float, I: Numeric>(
    q: &Tensor<F>,
    k: &Tensor<F>,
    v: &Tensor<F>,
    key_ok: &Tensor<F>,
    lse: &Tensor<F>,
    delta: &Tensor<F>,
    grad: &Tensor<F>,
    seed: &Tensor<I>,
    dq: &mut Tensor<F>,
    seq_len: u32,
    n_heads: u32,
    left: u32,
    right: u32,
    prob: f32,
    #[comptime] head_dim: usize,
    #[comptime] block: usize,
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
    let unit = UNIT_POS_X as usize;
    let first = CUBE_POS_X as usize * block;
    let i = first + unit;
    let live = i < m;
    let base = rh * m * head_dim;

    let mut query = Array::<F>::new(head_dim);
    let mut dout = Array::<F>::new(head_dim);
    let mut lse_i = F::new(0.0);
    let mut delta_i = F::new(0.0);
    if live {
        #[unroll]
        for c in 0..head_dim {
            query[c] = q[base + i * head_dim + c];
            dout[c] = grad[base + i * head_dim + c];
        }
        lse_i = lse[rh * m + i];
        delta_i = delta[rh * m + i];
    }
    let mut acc = Array::<F>::new(head_dim);

    let mut keys = Shared::<[F]>::new_slice(block * head_dim);
    let mut values = Shared::<[F]>::new_slice(block * head_dim);
    let mut ok = Shared::<[F]>::new_slice(block);

    let mut start = 0usize;
    if first > left {
        start = first - left;
    }
    let end = min(m, first + block + right);
    while start < end {
        let j = start + unit;
        if j < end {
            #[unroll]
            for c in 0..head_dim {
                keys[unit * head_dim + c] = k[base + j * head_dim + c];
                values[unit * head_dim + c] = v[base + j * head_dim + c];
            }
            ok[unit] = key_ok[row * m + j];
        }
        sync_cube();
        let count = min(block, end - start);
        for u in 0..count {
            let j = start + u;
            if live && j + left >= i && j <= i + right && ok[u] > F::new(0.5) {
                let mut score = F::new(0.0);
                let mut dp = F::new(0.0);
                #[unroll]
                for c in 0..head_dim {
                    score += query[c] * keys[u * head_dim + c];
                    dp += dout[c] * values[u * head_dim + c];
                }
                if comptime!(dropout) {
                    dp *= band_keep::<F>(seed, rh, i, j, prob);
                }
                let ds = F::exp(score - lse_i) * (dp - delta_i);
                #[unroll]
                for c in 0..head_dim {
                    acc[c] += ds * keys[u * head_dim + c];
                }
            }
        }
        sync_cube();
        start += block;
    }

    if live {
        #[unroll]
        for c in 0..head_dim {
            dq[base + i * head_dim + c] = acc[c];
        }
    }
}

/// Backward, key side: `dk` and `dv` of the band.
///
/// Cube `(x, y)`: keys `x·BLOCK ..` of `(row, head) = y`; key `j` is seen by the queries
/// `j - right ..= j + left`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn local_attention_dkdv_kernel<F: Float, I: Numeric>(
    q: &Tensor<F>,
    k: &Tensor<F>,
    v: &Tensor<F>,
    key_ok: &Tensor<F>,
    lse: &Tensor<F>,
    delta: &Tensor<F>,
    grad: &Tensor<F>,
    seed: &Tensor<I>,
    dk: &mut Tensor<F>,
    dv: &mut Tensor<F>,
    seq_len: u32,
    n_heads: u32,
    left: u32,
    right: u32,
    prob: f32,
    #[comptime] head_dim: usize,
    #[comptime] block: usize,
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
    let unit = UNIT_POS_X as usize;
    let first = CUBE_POS_X as usize * block;
    let j = first + unit;
    let mut live = false;
    let base = rh * m * head_dim;

    let mut key = Array::<F>::new(head_dim);
    let mut value = Array::<F>::new(head_dim);
    if j < m {
        live = key_ok[row * m + j] > F::new(0.5);
        #[unroll]
        for c in 0..head_dim {
            key[c] = k[base + j * head_dim + c];
            value[c] = v[base + j * head_dim + c];
        }
    }
    let mut dk_acc = Array::<F>::new(head_dim);
    let mut dv_acc = Array::<F>::new(head_dim);

    let mut queries = Shared::<[F]>::new_slice(block * head_dim);
    let mut douts = Shared::<[F]>::new_slice(block * head_dim);
    let mut lses = Shared::<[F]>::new_slice(block);
    let mut deltas = Shared::<[F]>::new_slice(block);

    let mut start = 0usize;
    if first > right {
        start = first - right;
    }
    let end = min(m, first + block + left);
    while start < end {
        let i = start + unit;
        if i < end {
            #[unroll]
            for c in 0..head_dim {
                queries[unit * head_dim + c] = q[base + i * head_dim + c];
                douts[unit * head_dim + c] = grad[base + i * head_dim + c];
            }
            lses[unit] = lse[rh * m + i];
            deltas[unit] = delta[rh * m + i];
        }
        sync_cube();
        let count = min(block, end - start);
        for u in 0..count {
            let i = start + u;
            if live && j + left >= i && j <= i + right {
                let mut score = F::new(0.0);
                let mut dp = F::new(0.0);
                #[unroll]
                for c in 0..head_dim {
                    score += queries[u * head_dim + c] * key[c];
                    dp += douts[u * head_dim + c] * value[c];
                }
                let p = F::exp(score - lses[u]);
                let mut keep = F::new(1.0);
                if comptime!(dropout) {
                    keep = band_keep::<F>(seed, rh, i, j, prob);
                }
                let ds = p * (dp * keep - deltas[u]);
                let kept = p * keep;
                #[unroll]
                for c in 0..head_dim {
                    dv_acc[c] += kept * douts[u * head_dim + c];
                    dk_acc[c] += ds * queries[u * head_dim + c];
                }
            }
        }
        sync_cube();
        start += block;
    }

    if j < m {
        #[unroll]
        for c in 0..head_dim {
            dk[base + j * head_dim + c] = dk_acc[c];
            dv[base + j * head_dim + c] = dv_acc[c];
        }
    }
}
