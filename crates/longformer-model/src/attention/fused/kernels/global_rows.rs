//! The global rows' chunks weighed together (`LocalAttentionOps::global_rows_combine`): each
//! chunk of a row's keys gave every global query a context normalized over that chunk and its
//! log-sum-exp; the row's context is their sum weighed by `exp(lse_chunk - lse_row)`.

use burn_cubecl::cubecl;
use cubecl::prelude::*;

use super::common::NO_SCORE;
use crate::cube_common::linear_cube;

/// The sizes of one combine launch.
#[derive(CubeLaunch, CubeType)]
pub struct CombineArgs {
    /// `(row, head, query)` triples: one unit each (the grid may have a few more units).
    pub units: u32,
    /// Heads per row.
    pub heads: u32,
    /// Global queries per `(row, head)`.
    pub queries: u32,
    /// Chunks per row.
    pub chunks: u32,
}

/// Unit `(row, head, i)`: over the row's chunks `s` that see a key (`seen[row, s] > 0.5`), the
/// largest log-sum-exp `top`, then `sum = Σ exp(lse_s - top)` and `acc = Σ exp(lse_s - top) ·
/// context_s`; writes `acc / sum` and `top + ln(sum)` (a zero context and 0 when no chunk sees
/// a key). `context` (`[rows · chunks, heads, g, d]`) and `out` (`[rows, heads, g, d]`) may
/// have any strides whose last is 1 and whose others are whole vectors; `lse`, `seen` and
/// `out_lse` are contiguous.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn global_rows_combine_kernel<F: Float, N: Size>(
    context: &Tensor<Vector<F, N>>,
    lse: &Tensor<F>,
    seen: &Tensor<F>,
    out: &mut Tensor<Vector<F, N>>,
    out_lse: &mut Tensor<F>,
    sizes: &CombineArgs,
    #[comptime] rv: usize,
    #[define(F)] _dtype: ElemType,
) {
    let unit = linear_cube() * CUBE_DIM as usize + UNIT_POS as usize;
    if unit >= sizes.units as usize {
        terminate!();
    }
    let (heads, g, chunks) = (
        sizes.heads as usize,
        sizes.queries as usize,
        sizes.chunks as usize,
    );
    let i = unit % g;
    let head = (unit / g) % heads;
    let row = unit / (g * heads);
    let width = context.vector_size();

    let mut top = F::new(NO_SCORE);
    for s in 0..chunks {
        let chunk_row = row * chunks + s;
        if seen[chunk_row] > F::new(0.5) {
            top = F::max(top, lse[(chunk_row * heads + head) * g + i]);
        }
    }
    let mut acc = Array::<Vector<F, N>>::new(rv);
    #[unroll]
    for c in 0..rv {
        acc[c] = Vector::<F, N>::new(F::new(0.0));
    }
    let mut sum = F::new(0.0);
    for s in 0..chunks {
        let chunk_row = row * chunks + s;
        if seen[chunk_row] > F::new(0.5) {
            let w = F::exp(lse[(chunk_row * heads + head) * g + i] - top);
            sum += w;
            let start = (chunk_row * context.stride(0) + head * context.stride(1)) / width
                + i * (context.stride(2) / width);
            let weight = Vector::<F, N>::new(w);
            #[unroll]
            for c in 0..rv {
                acc[c] += weight * context[start + c];
            }
        }
    }

    let mut inv = F::new(0.0);
    let mut log_sum = F::new(0.0);
    if sum > F::new(0.0) {
        inv = F::new(1.0) / sum;
        log_sum = top + F::ln(sum);
    }
    let inv = Vector::<F, N>::new(inv);
    let start = (row * out.stride(0) + head * out.stride(1)) / width + i * (out.stride(2) / width);
    #[unroll]
    for c in 0..rv {
        out[start + c] = acc[c] * inv;
    }
    out_lse[unit] = log_sum;
}
