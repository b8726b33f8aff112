//! What the three kernels share: the band's launch arguments, where a unit works, tile staging,
//! arithmetic on head rows of vectors, and the dropout hash.

use burn_cubecl::cubecl;
use cubecl::prelude::*;

use crate::cube_common::lane_sum;
use crate::dropout::cube::keep_factor;

/// Starting maximum of a running softmax (the forward pass's scores, the global rows' chunk
/// log-sum-exps): below every real one, finite (WGSL has no `-inf` literal).
pub const NO_SCORE: f32 = -1.0e30;

/// The band's scalars, the same for every cube of a launch.
#[derive(CubeLaunch, CubeType)]
pub struct BandArgs {
    /// Tokens per row, `m`.
    pub seq_len: u32,
    /// Heads per row: `(row, head)` pair `rh` belongs to row `rh / n_heads`.
    pub n_heads: u32,
    /// `(row, head)` pairs, `rows · n_heads`: the grid may have a few cubes more (see
    /// [`place`]).
    pub pairs: u32,
    /// Keys a query sees before itself.
    pub left: u32,
    /// Keys a query sees after itself (0 for causal windows).
    pub right: u32,
    /// Attention dropout probability of the band's probabilities (0: none).
    pub prob: f32,
    /// The global slots' dropout: a kept probability's hash is under this...
    pub slot_threshold: u32,
    /// ... and its factor is this (see [`slot_keep`]).
    pub slot_scale: f32,
    /// Runs of global slots per batch row: pair `rh`'s row `rh / n_heads` is run
    /// `row % slot_chunks` of batch row `row / slot_chunks` (1 for the local attention).
    pub slot_chunks: u32,
}

/// Where a unit works: cube `(x, y, z)` owns rows `x·block ..` of `(row, head)` pair
/// `z · CUBE_COUNT_Y + y`.
#[derive(CubeType)]
pub struct Place {
    /// Tokens per row.
    pub m: usize,
    /// Keys a query sees before itself.
    pub left: usize,
    /// Keys a query sees after itself.
    pub right: usize,
    /// The `(row, head)` pair.
    pub rh: usize,
    /// Its batch row (the masks are per batch row).
    pub row: usize,
    /// Its head.
    pub head: usize,
    /// The pair's first row in the flattened `[rows · heads · m]` rows of the contiguous
    /// per-query tensors (log-sum-exp, `delta`, the global slots' dropout mask).
    pub rows: usize,
    /// The row this unit owns, `CUBE_POS_X · block + UNIT_POS_X` (may be past `m` in the last
    /// cube).
    pub own: usize,
    /// The other side's rows `span_start..span_end` that any of the cube's rows pairs with,
    /// inside the sequence (the cube owns rows `first..first + block`): keys
    /// `first - left ..= first + block - 1 + right` for a cube of queries, queries
    /// `first - right ..= first + block - 1 + left` for a cube of keys.
    pub span_start: usize,
    /// See `span_start`.
    pub span_end: usize,
}

/// This unit's [`Place`], for cubes of `block` units owning queries (`keys_owned` false) or
/// keys.
///
/// A grid dimension holds at most 65,535 cubes, so more `(row, head)` pairs than that are
/// spread over `y` and `z`, and the last `z` layer may have cubes past the last pair: those end
/// here, before any barrier, every unit of the cube alike.
#[cube]
pub fn place(band: &BandArgs, #[comptime] block: usize, #[comptime] keys_owned: bool) -> Place {
    let m = band.seq_len as usize;
    let rh = (CUBE_POS_Z * CUBE_COUNT_Y + CUBE_POS_Y) as usize;
    if rh >= band.pairs as usize {
        terminate!();
    }
    let first = CUBE_POS_X as usize * block;
    let (left, right) = (band.left as usize, band.right as usize);
    let mut before = left;
    let mut after = right;
    if comptime!(keys_owned) {
        before = right;
        after = left;
    }
    let mut span_start = 0usize;
    if first > before {
        span_start = first - before;
    }
    Place {
        m,
        left,
        right,
        rh,
        row: rh / band.n_heads as usize,
        head: rh % band.n_heads as usize,
        rows: rh * m,
        own: first + UNIT_POS_X as usize,
        span_start,
        span_end: min(m, first + block + after),
    }
}

/// Whether query `i` sees key `j` through its window: `i - left <= j <= i + right`.
#[cube]
pub fn in_window(at: &Place, i: usize, j: usize) -> bool {
    j + at.left >= i && j <= i + at.right
}

/// The dropout factor of band score `(rh, i, j)`: `0` for a dropped probability, `1 / (1 - p)`
/// for a kept one. Keep-or-drop comes from a hash of the seed and the position (a murmur3
/// finalizer), so the backward kernels recompute the forward pass's choice without storing it.
#[cube]
pub fn band_keep<F: Float>(seed: u32, rh: usize, i: usize, j: usize, prob: F) -> F {
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

/// The global slots' dropout key, `seed[1]` (read only with dropout; 0 without).
#[cube]
pub fn slot_key<I: Numeric>(seed: &Tensor<I>, #[comptime] dropout: bool) -> u32 {
    let mut key = 0u32;
    if comptime!(dropout) {
        key = u32::cast_from(seed[1]);
    }
    key
}

/// The dropout factor of global slot `slot` (of `g` per row) for query `i` of `at`'s pair:
/// element `(((row / chunks) · heads + head) · m + i, (row % chunks) · g + slot)` of
/// [`crate::dropout::keep_scale`]'s mask for the key `key` (see
/// [`super::super::LocalAttentionOps`]).
#[cube]
pub fn slot_keep<F: Float>(
    band: &BandArgs,
    at: &Place,
    key: u32,
    i: usize,
    slot: usize,
    g: usize,
) -> F {
    let chunks = band.slot_chunks as usize;
    let row = ((at.row / chunks) * band.n_heads as usize + at.head) * at.m + i;
    let col = (at.row % chunks) * g + slot;
    F::cast_from(keep_factor(
        key,
        row as u32,
        col as u32,
        band.slot_threshold,
        band.slot_scale,
    ))
}

/// Copies `len` consecutive elements of `src`, from `offset` on, into `dst[0..len]`: unit `u` of
/// the cube copies elements `u, u + units, ...`.
#[cube]
pub fn stage<T: CubePrimitive>(
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

/// Where the head rows of one `(row, head)` pair lie in a `[rows, heads, m, d]` tensor read as
/// vectors: row `i` starts at vector `start + i · step`. Any strides serve whose last one is 1
/// and whose others are multiples of the vector width (the host checks): the heads of a
/// `[rows, m, heads, d]` projection are read in place, without a copy.
#[derive(CubeType)]
pub struct HeadRows {
    /// The pair's row 0, in vectors.
    pub start: usize,
    /// From one row to the next, in vectors.
    pub step: usize,
}

/// The [`HeadRows`] of `at`'s `(row, head)` pair in `t`.
#[cube]
pub fn head_rows<F: Float, N: Size>(t: &Tensor<Vector<F, N>>, at: &Place) -> HeadRows {
    rows_of_pair(at, t.stride(0), t.stride(1), t.stride(2), t.vector_size())
}

/// [`head_rows`] of an output tensor.
#[cube]
pub fn head_rows_out<F: Float, N: Size>(t: &mut Tensor<Vector<F, N>>, at: &Place) -> HeadRows {
    rows_of_pair(at, t.stride(0), t.stride(1), t.stride(2), t.vector_size())
}

/// [`HeadRows`] from a tensor's first three strides (in floats) and its vector width.
#[cube]
fn rows_of_pair(
    at: &Place,
    row_stride: usize,
    head_stride: usize,
    step: usize,
    width: usize,
) -> HeadRows {
    HeadRows {
        start: (at.row * row_stride + at.head * head_stride) / width,
        step: step / width,
    }
}

/// Stages head rows `first..first + count` of two `[rows, heads, m, d]` tensors of `rv`-vector
/// rows (`a` at `ra` into `sa`, `b` at `rb` into `sb`), packed: row `r` at `sa[r · rv..]`. Unit
/// `u` copies vectors `u, u + units, ...`, so neighbouring units read neighbouring addresses
/// within a row.
#[cube]
#[allow(clippy::too_many_arguments)]
pub fn stage_rows<F: Float, N: Size>(
    a: &Tensor<Vector<F, N>>,
    ra: &HeadRows,
    b: &Tensor<Vector<F, N>>,
    rb: &HeadRows,
    first: usize,
    count: usize,
    sa: &mut Shared<[Vector<F, N>]>,
    sb: &mut Shared<[Vector<F, N>]>,
    #[comptime] rv: usize,
    #[comptime] units: usize,
) {
    let len = count * rv;
    let mut idx = UNIT_POS_X as usize;
    while idx < len {
        let r = first + idx / rv;
        let c = idx % rv;
        sa[idx] = a[ra.start + r * ra.step + c];
        sb[idx] = b[rb.start + r * rb.step + c];
        idx += units;
    }
}

/// Head row `i` of a tensor at `rows` into registers (zeros when `live` is false).
#[cube]
pub fn load_row<F: Float, N: Size>(
    src: &Tensor<Vector<F, N>>,
    rows: &HeadRows,
    i: usize,
    live: bool,
    #[comptime] rv: usize,
) -> Array<Vector<F, N>> {
    let mut row = Array::<Vector<F, N>>::new(rv);
    if live {
        let start = rows.start + i * rows.step;
        #[unroll]
        for c in 0..rv {
            row[c] = src[start + c];
        }
    }
    row
}

/// Writes `row` as head row `i` of a tensor at `rows`.
#[cube]
pub fn store_row<F: Float, N: Size>(
    dst: &mut Tensor<Vector<F, N>>,
    rows: &HeadRows,
    i: usize,
    row: &Array<Vector<F, N>>,
    #[comptime] rv: usize,
) {
    let start = rows.start + i * rows.step;
    #[unroll]
    for c in 0..rv {
        dst[start + c] = row[c];
    }
}

/// `a · b` over one row of `rv` vectors: `a` in registers, `b` at `b[offset..offset + rv]`.
#[cube]
pub fn row_dot<F: Float, N: Size>(
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
pub fn row_axpy<F: Float, N: Size>(
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
