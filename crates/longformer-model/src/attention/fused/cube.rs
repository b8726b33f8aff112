//! [`LocalAttentionOps`] on the CubeCL backend (wgpu, vulkan): launches the kernels of
//! [`super::kernels`].

use burn::backend::cubecl::dtype_to_storage_type;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::tensor::{DType, Shape};
use burn_cubecl::CubeBackend;
use burn_cubecl::cubecl::prelude::*;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;

use super::kernels::{
    BandArgsLaunch, CombineArgsLaunch, global_rows_combine_kernel, local_attention_dkdv_kernel,
    local_attention_dq_kernel, local_attention_forward_kernel, local_attention_global_dq_kernel,
    local_attention_global_slots_kernel,
};
use super::ops::{LocalAttentionOps, expect_slot_chunks};
use crate::cube_common::{self, MAX_CUBES_PER_DIM, empty_like, linear_grid, vector_width};
use crate::dropout::keep_threshold_and_scale;

/// Rows (queries, or keys in the key-gradient kernel) per cube in the standard launch shape,
/// one unit each: two warps.
const BLOCK: usize = 64;

/// Queries per chunk of the global slots' gradient kernel: each chunk's sums are added up after
/// it (at n = 4,096: 16 chunks, so 16 cubes per `(row, head)` pair and slot block).
const GLOBAL_CHUNK: usize = 256;

/// Shared memory the standard launch shape's staged tiles may use: 24 KiB, under the 32 KiB the
/// least device offers (OpenGL's minimum and the software GPU's limit; NVIDIA's is 48 KiB per
/// cube) and small enough that several cubes share one multiprocessor.
const TILE_BYTES: usize = 24 * 1024;

/// The launch shapes autotuning measures besides [`LaunchShape::standard`], as `(block, tile)`:
/// fewer or more rows per cube (occupancy against how often each key is staged) and larger
/// tiles (fewer barriers, more shared memory).
#[cfg_attr(not(feature = "autotune"), allow(dead_code))]
pub(super) const TUNED_SHAPES: [(usize, usize); 5] =
    [(32, 32), (64, 32), (128, 32), (64, 64), (128, 64)];

/// Most shared memory a tuned shape may stage per cube: 48 KiB, what NVIDIA, AMD and Apple
/// GPUs give a cube without opting in to more (the device's own limit applies when smaller).
const MAX_TUNED_TILE_BYTES: usize = 48 * 1024;

/// How one launch splits the work for head width `d`: `block` rows per cube, key (or query)
/// rows staged `tile` at a time, head rows read as `row_vectors` vectors of `vector` floats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct LaunchShape {
    /// Rows a cube owns, one unit each.
    pub block: usize,
    /// Rows staged at a time: two `[tile, d]` tiles and two `[tile]` vectors of f32
    /// ([`LaunchShape::shared_bytes`]).
    pub tile: usize,
    /// Floats per vector read (4, 2 or 1: the largest that divides `d`).
    pub vector: usize,
    /// Vectors per head row, `d / vector`.
    pub row_vectors: usize,
}

impl LaunchShape {
    /// `block` rows per cube, `tile`-row tiles, for head width `d`.
    pub fn new(d: usize, block: usize, tile: usize) -> Self {
        let vector = vector_width(d);
        Self {
            block,
            tile,
            vector,
            row_vectors: d / vector,
        }
    }

    /// The shape used without autotuning: [`BLOCK`] rows per cube and the largest power-of-two
    /// tile, at most [`BLOCK`] rows, whose shared memory fits [`TILE_BYTES`].
    pub fn standard(d: usize) -> Self {
        let mut tile = BLOCK;
        while tile > 1 && Self::new(d, BLOCK, tile).shared_bytes() > TILE_BYTES {
            tile /= 2;
        }
        Self::new(d, BLOCK, tile)
    }

    /// `(block, tile)` of [`TUNED_SHAPES`] for head width `d` on a device with `max_shared`
    /// bytes of shared memory per cube; an error (the tuner skips the candidate) when it does
    /// not fit or is the standard shape, which is measured on its own.
    pub fn tuned(d: usize, block: usize, tile: usize, max_shared: usize) -> Result<Self, String> {
        let shape = Self::new(d, block, tile);
        let limit = Self::shared_limit(max_shared);
        if shape == Self::standard(d) {
            Err(format!("{shape} is the standard shape"))
        } else if shape.shared_bytes() > limit {
            Err(format!(
                "{shape} stages {} bytes at head width {d}, over {limit}",
                shape.shared_bytes()
            ))
        } else {
            Ok(shape)
        }
    }

    /// Shared memory a tuned shape may stage on a device offering `max_shared` bytes per cube.
    pub fn shared_limit(max_shared: usize) -> usize {
        max_shared.min(MAX_TUNED_TILE_BYTES)
    }

    /// Bytes of shared memory a cube stages: two `[tile, d]` tiles and two `[tile]` vectors of
    /// f32 (the key-side backward kernel's; the others stage one vector fewer).
    pub fn shared_bytes(&self) -> usize {
        4 * self.tile * (2 * self.vector * self.row_vectors + 2)
    }

    /// One cube per `block` rows (`x`) of each `(row, head)` pair (`y`, and `z` past
    /// [`MAX_CUBES_PER_DIM`] pairs) of `q` (`[rows, heads, m, d]`).
    fn cubes(&self, q: &CubeTensor) -> CubeCount {
        let [rows, heads, m, _] = dims4(q);
        let blocks = m.div_ceil(self.block);
        assert!(
            blocks <= MAX_CUBES_PER_DIM,
            "fused local attention: {m} tokens per row need {blocks} cubes of {} rows, over \
             the {MAX_CUBES_PER_DIM} a grid dimension holds",
            self.block
        );
        let [y, z] = pair_grid(rows * heads);
        CubeCount::Static(blocks as u32, y as u32, z as u32)
    }

    /// `block` units per cube.
    fn cube_dim(&self) -> CubeDim {
        CubeDim::new_1d(self.block as u32)
    }
}

impl std::fmt::Display for LaunchShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "block {}, tile {}", self.block, self.tile)
    }
}

/// `[y, z]` grid sizes for `pairs` `(row, head)` pairs: all in `y` while they fit, else spread
/// evenly over `z` layers, `y · z >= pairs` (the kernels end the cubes past the last pair).
fn pair_grid(pairs: usize) -> [usize; 2] {
    let z = pairs.div_ceil(MAX_CUBES_PER_DIM).max(1);
    let y = pairs.div_ceil(z).max(1);
    assert!(
        z <= MAX_CUBES_PER_DIM,
        "fused local attention: {pairs} (row, head) pairs are more than a grid holds"
    );
    [y, z]
}

/// `[rows, heads, m, d]` of a `q`/`k`/`v` tensor.
fn dims4(t: &CubeTensor) -> [usize; 4] {
    t.meta.shape().dims::<4>()
}

/// An uninitialized `[rows, heads, m, d]` tensor laid out token-major, as `[rows, m, heads, d]`
/// in memory: merging its heads back into `[rows, m, heads · d]` (what the model does next with
/// a context or a gradient) is a view, not a copy.
fn empty_token_major(like: &CubeTensor, [rows, heads, m, d]: [usize; 4]) -> CubeTensor {
    let mut t = empty_like(like, Shape::new([rows, m, heads, d]));
    t.meta.swap(1, 2);
    t
}

/// A `[rows, heads, m, d]` head tensor as the kernels read it: as it is when its head axis is
/// contiguous and its other strides are whole vectors of `vector` floats (the heads of a
/// `[rows, m, heads · d]` projection, split by a view, are), else a contiguous copy.
fn heads_in_place(t: CubeTensor, vector: usize) -> CubeTensor {
    let dims = dims4(&t);
    let strides = t.meta.strides();
    let readable = !t.meta.is_tiled()
        && (strides[3] == 1 || dims[3] == 1)
        && strides[..3].iter().all(|s| s.is_multiple_of(vector));
    if readable { t } else { into_contiguous(t) }
}

/// [`crate::cube_common::expect_f32`] for the fused attention's inputs.
fn expect_f32(op: &str, name: &str, t: &CubeTensor, dims: &[usize]) {
    cube_common::expect_f32(
        "the fused local attention (the reference path takes other dtypes)",
        op,
        name,
        t,
        dims,
    );
}

/// Panics, naming `op`, unless `seed` holds the two keys the kernels read with dropout.
fn expect_seed(op: &str, seed: &CubeTensor, dropout: f64) {
    assert!(
        dropout == 0.0 || seed.meta.shape().num_elements() >= 2,
        "{op}: the dropout seed holds {} keys, not 2",
        seed.meta.shape().num_elements()
    );
}

/// The band's settings, shared by the forward and backward launches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Band {
    /// One-sided window.
    pub window: usize,
    /// Causal window (no keys after the query).
    pub causal: bool,
    /// Attention dropout probability (0: none).
    pub dropout: f64,
    /// Runs of global slots per batch row, for the slots' dropout (1 for the local attention;
    /// see [`LocalAttentionOps`]).
    pub slot_chunks: usize,
}

impl Band {
    /// The kernels' scalars for queries `q` (`[rows, heads, m, d]`): `window` keys on each side
    /// of a query, none after it when causal.
    fn args(&self, q: &CubeTensor) -> BandArgsLaunch {
        let [rows, heads, m, _] = dims4(q);
        let right = if self.causal { 0 } else { self.window };
        let (threshold, scale) = if self.dropout > 0.0 {
            keep_threshold_and_scale(1.0 - self.dropout)
        } else {
            (0, 1.0)
        };
        BandArgsLaunch::new(
            m as u32,
            heads as u32,
            (rows * heads) as u32,
            self.window as u32,
            right as u32,
            self.dropout as f32,
            threshold,
            scale,
            self.slot_chunks as u32,
        )
    }
}

/// The kernels' element types: f32, and the seed's integer type.
fn dtypes(seed: &CubeTensor) -> [ElemType; 2] {
    [f32::elem_type_native(), dtype_to_storage_type(seed.dtype)]
}

/// The forward kernel's tensors, outputs included: the head tensors (`q`, `k`, `v`, the global
/// slots', `out`) as [`heads_in_place`] leaves them, the others contiguous.
#[derive(Debug, Clone)]
pub(super) struct ForwardLaunch {
    pub q: CubeTensor,
    pub k: CubeTensor,
    pub v: CubeTensor,
    pub global_k: CubeTensor,
    pub global_v: CubeTensor,
    pub key_ok: CubeTensor,
    pub global_ok: CubeTensor,
    /// `[2]`: the band's dropout key, the global slots'.
    pub seed: CubeTensor,
    pub band: Band,
    /// Written: the context `[rows, heads, m, d]`.
    pub out: CubeTensor,
    /// Written: the log-sum-exp `[rows, heads, m]`.
    pub lse: CubeTensor,
}

/// The two backward kernels' tensors, outputs included: the head tensors (`q`, `k`, `v`,
/// `grad`, `dq`, `dk`, `dv`) as [`heads_in_place`] leaves them, the others contiguous.
#[derive(Debug, Clone)]
pub(super) struct BackwardLaunch {
    pub q: CubeTensor,
    pub k: CubeTensor,
    pub v: CubeTensor,
    pub key_ok: CubeTensor,
    pub lse: CubeTensor,
    pub delta: CubeTensor,
    pub grad: CubeTensor,
    pub seed: CubeTensor,
    pub band: Band,
    /// Written by the query-side kernel: `dq` `[rows, heads, m, d]`.
    pub dq: CubeTensor,
    /// Written by the key-side kernel: `dk`, `dv` `[rows, heads, m, d]`.
    pub dk: CubeTensor,
    /// See `dk`.
    pub dv: CubeTensor,
}

/// Launches the forward kernel with `shape`.
pub(super) fn launch_forward(shape: LaunchShape, t: &ForwardLaunch) {
    let g = t.global_k.meta.shape().dims::<4>()[2];
    let arg = |x: &CubeTensor| x.clone().into_tensor_arg();
    local_attention_forward_kernel::launch(
        &t.q.client,
        shape.cubes(&t.q),
        shape.cube_dim(),
        shape.vector,
        arg(&t.q),
        arg(&t.k),
        arg(&t.v),
        arg(&t.global_k),
        arg(&t.global_v),
        arg(&t.key_ok),
        arg(&t.global_ok),
        arg(&t.seed),
        arg(&t.out),
        arg(&t.lse),
        t.band.args(&t.q),
        g as u32,
        shape.row_vectors,
        shape.block,
        shape.tile,
        t.band.dropout > 0.0,
        dtypes(&t.seed),
    );
}

/// Launches the query-side backward kernel (`dq`) with `shape`.
pub(super) fn launch_dq(shape: LaunchShape, t: &BackwardLaunch) {
    let arg = |x: &CubeTensor| x.clone().into_tensor_arg();
    local_attention_dq_kernel::launch(
        &t.q.client,
        shape.cubes(&t.q),
        shape.cube_dim(),
        shape.vector,
        arg(&t.q),
        arg(&t.k),
        arg(&t.v),
        arg(&t.key_ok),
        arg(&t.lse),
        arg(&t.delta),
        arg(&t.grad),
        arg(&t.seed),
        arg(&t.dq),
        t.band.args(&t.q),
        shape.row_vectors,
        shape.block,
        shape.tile,
        t.band.dropout > 0.0,
        dtypes(&t.seed),
    );
}

/// Launches the key-side backward kernel (`dk`, `dv`) with `shape`.
pub(super) fn launch_dkdv(shape: LaunchShape, t: &BackwardLaunch) {
    launch_key_side(shape, t, true, true);
}

/// [`launch_dkdv`] as two launches, `dk` then `dv`: each unit keeps fewer head rows in
/// registers (three, then two, against four) at the cost of a second pass over the scores
/// (320 multiply-adds per query-key pair against 256 at head width 64). Which is faster depends
/// on the device's registers per unit; the tuner measures both.
pub(super) fn launch_dk_then_dv(shape: LaunchShape, t: &BackwardLaunch) {
    launch_key_side(shape, t, true, false);
    launch_key_side(shape, t, false, true);
}

/// The key-side backward kernel with `shape`, computing `dk` and/or `dv`.
fn launch_key_side(shape: LaunchShape, t: &BackwardLaunch, with_dk: bool, with_dv: bool) {
    let arg = |x: &CubeTensor| x.clone().into_tensor_arg();
    local_attention_dkdv_kernel::launch(
        &t.q.client,
        shape.cubes(&t.q),
        shape.cube_dim(),
        shape.vector,
        arg(&t.q),
        arg(&t.k),
        arg(&t.v),
        arg(&t.key_ok),
        arg(&t.lse),
        arg(&t.delta),
        arg(&t.grad),
        arg(&t.seed),
        arg(&t.dk),
        arg(&t.dv),
        t.band.args(&t.q),
        shape.row_vectors,
        shape.block,
        shape.tile,
        t.band.dropout > 0.0,
        with_dk,
        with_dv,
        dtypes(&t.seed),
    );
}

impl LocalAttentionOps for CubeBackend {
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
        let op = "local_attention_forward";
        let [rows, heads, m, d] = dims4(&q);
        let g = global_k.meta.shape().dims::<4>()[2];
        for (name, t, dims) in [
            ("q", &q, &[rows, heads, m, d][..]),
            ("k", &k, &[rows, heads, m, d]),
            ("v", &v, &[rows, heads, m, d]),
            ("global_k", &global_k, &[rows, heads, g, d]),
            ("global_v", &global_v, &[rows, heads, g, d]),
            ("key_ok", &key_ok, &[rows, m]),
            ("global_ok", &global_ok, &[rows, g]),
        ] {
            expect_f32(op, name, t, dims);
        }
        expect_seed(op, &seed, dropout);
        expect_slot_chunks(op, rows, slot_chunks);
        let vector = LaunchShape::standard(d).vector;
        let [q, k, v, global_k, global_v] =
            [q, k, v, global_k, global_v].map(|t| heads_in_place(t, vector));
        let [key_ok, global_ok, seed] = [key_ok, global_ok, seed].map(into_contiguous);
        let out = empty_token_major(&q, [rows, heads, m, d]);
        let lse = empty_like(&q, Shape::new([rows, heads, m]));
        let launch = ForwardLaunch {
            q,
            k,
            v,
            global_k,
            global_v,
            key_ok,
            global_ok,
            seed,
            band: Band {
                window,
                causal,
                dropout,
                slot_chunks,
            },
            out: out.clone(),
            lse: lse.clone(),
        };
        #[cfg(feature = "autotune")]
        super::tune::tuned_forward(launch);
        #[cfg(not(feature = "autotune"))]
        launch_forward(LaunchShape::standard(d), &launch);
        (out, lse)
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
        let op = "local_attention_band_backward";
        let [rows, heads, m, d] = dims4(&q);
        for (name, t, dims) in [
            ("q", &q, &[rows, heads, m, d][..]),
            ("k", &k, &[rows, heads, m, d]),
            ("v", &v, &[rows, heads, m, d]),
            ("grad", &grad, &[rows, heads, m, d]),
            ("key_ok", &key_ok, &[rows, m]),
            ("lse", &lse, &[rows, heads, m]),
            ("delta", &delta, &[rows, heads, m]),
        ] {
            expect_f32(op, name, t, dims);
        }
        expect_seed(op, &seed, f64::from(dropout));
        let vector = LaunchShape::standard(d).vector;
        let [q, k, v, grad] = [q, k, v, grad].map(|t| heads_in_place(t, vector));
        let [key_ok, lse, delta, seed] = [key_ok, lse, delta, seed].map(into_contiguous);
        let [dq, dk, dv] = [0; 3].map(|_| empty_token_major(&q, [rows, heads, m, d]));
        let launch = BackwardLaunch {
            q,
            k,
            v,
            key_ok,
            lse,
            delta,
            grad,
            seed,
            band: Band {
                window,
                causal,
                dropout: f64::from(dropout),
                slot_chunks: 1,
            },
            dq: dq.clone(),
            dk: dk.clone(),
            dv: dv.clone(),
        };
        #[cfg(feature = "autotune")]
        {
            super::tune::tuned_dq(launch.clone());
            super::tune::tuned_dkdv(launch);
        }
        #[cfg(not(feature = "autotune"))]
        {
            launch_dq(LaunchShape::standard(d), &launch);
            launch_dkdv(LaunchShape::standard(d), &launch);
        }
        (dq, dk, dv)
    }

    fn local_attention_global_backward(
        q: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        global_k: FloatTensor<Self>,
        global_v: FloatTensor<Self>,
        global_ok: FloatTensor<Self>,
        seed: IntTensor<Self>,
        lse: FloatTensor<Self>,
        delta: FloatTensor<Self>,
        dq_band: FloatTensor<Self>,
        dropout: f64,
        slot_chunks: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let op = "local_attention_global_backward";
        let [rows, heads, m, d] = dims4(&q);
        let g = global_k.meta.shape().dims::<4>()[2];
        for (name, t, dims) in [
            ("q", &q, &[rows, heads, m, d][..]),
            ("grad", &grad, &[rows, heads, m, d]),
            ("dq_band", &dq_band, &[rows, heads, m, d]),
            ("global_k", &global_k, &[rows, heads, g, d]),
            ("global_v", &global_v, &[rows, heads, g, d]),
            ("global_ok", &global_ok, &[rows, g]),
            ("lse", &lse, &[rows, heads, m]),
            ("delta", &delta, &[rows, heads, m]),
        ] {
            expect_f32(op, name, t, dims);
        }
        expect_seed(op, &seed, dropout);
        expect_slot_chunks(op, rows, slot_chunks);
        let shape = LaunchShape::standard(d);
        let [q, grad, dq_band, global_k, global_v] =
            [q, grad, dq_band, global_k, global_v].map(|t| heads_in_place(t, shape.vector));
        let [global_ok, seed, lse, delta] = [global_ok, seed, lse, delta].map(into_contiguous);
        if rows * heads * m == 0 || g == 0 {
            let zeros =
                || Self::float_zeros([rows, heads, g, d].into(), &q.device, DType::F32.into());
            return (dq_band, zeros(), zeros());
        }
        let dq = empty_token_major(&q, [rows, heads, m, d]);
        let chunks = m.div_ceil(GLOBAL_CHUNK);
        // Each chunk's `dkg` and `dvg` sums, side by side, so that one reduction adds them up.
        let parts = empty_like(&q, Shape::new([chunks, 2, rows, heads, g, d]));
        // The band's launch arguments, for the pair indexing the kernels share with it.
        let band = Band {
            window: 0,
            causal: false,
            dropout,
            slot_chunks,
        };
        let arg = |x: &CubeTensor| x.clone().into_tensor_arg();
        let with_dropout = dropout > 0.0;
        local_attention_global_dq_kernel::launch(
            &q.client,
            shape.cubes(&q),
            shape.cube_dim(),
            shape.vector,
            arg(&q),
            arg(&grad),
            arg(&global_k),
            arg(&global_v),
            arg(&global_ok),
            arg(&seed),
            arg(&lse),
            arg(&delta),
            arg(&dq_band),
            arg(&dq),
            band.args(&q),
            g as u32,
            shape.row_vectors,
            shape.block,
            shape.tile,
            with_dropout,
            dtypes(&seed),
        );
        let slot_blocks = g.div_ceil(shape.block);
        let [y, z] = pair_grid(rows * heads);
        assert!(
            chunks * slot_blocks <= MAX_CUBES_PER_DIM,
            "{op}: {m} tokens in chunks of {GLOBAL_CHUNK} and {g} global slots need more cubes \
             than a grid dimension holds"
        );
        local_attention_global_slots_kernel::launch(
            &q.client,
            CubeCount::Static((chunks * slot_blocks) as u32, y as u32, z as u32),
            shape.cube_dim(),
            shape.vector,
            arg(&q),
            arg(&grad),
            arg(&global_k),
            arg(&global_v),
            arg(&global_ok),
            arg(&seed),
            arg(&lse),
            arg(&delta),
            arg(&parts),
            band.args(&q),
            g as u32,
            GLOBAL_CHUNK as u32,
            shape.row_vectors,
            shape.block,
            shape.tile,
            with_dropout,
            dtypes(&seed),
        );
        // The chunks' sums added up, `[2, rows, heads, g, d]`: `dkg`, then `dvg`.
        let sums = Self::float_reshape(
            Self::float_sum_dim(parts, 0),
            Shape::new([2, rows, heads, g, d]),
        );
        let slot = |i: usize| {
            Self::float_reshape(
                Self::float_slice(sums.clone(), &[(i..i + 1).into()]),
                Shape::new([rows, heads, g, d]),
            )
        };
        (dq, slot(0), slot(1))
    }

    fn global_rows_combine(
        context: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        seen: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let op = "global_rows_combine";
        let [rows, chunks] = seen.meta.shape().dims::<2>();
        let [_, heads, g, d] = dims4(&context);
        for (name, t, dims) in [
            ("context", &context, &[rows * chunks, heads, g, d][..]),
            ("lse", &lse, &[rows * chunks, heads, g]),
            ("seen", &seen, &[rows, chunks]),
        ] {
            expect_f32(op, name, t, dims);
        }
        let vector = vector_width(d);
        let context = heads_in_place(context, vector);
        let [lse, seen] = [lse, seen].map(into_contiguous);
        let out = empty_token_major(&context, [rows, heads, g, d]);
        let out_lse = empty_like(&context, Shape::new([rows, heads, g]));
        let units = rows * heads * g;
        if units == 0 {
            return (out, out_lse);
        }
        // One unit per global query of each (row, head): two warps per cube.
        let cube_dim = CubeDim::new_1d(BLOCK as u32);
        let arg = |x: &CubeTensor| x.clone().into_tensor_arg();
        global_rows_combine_kernel::launch(
            &context.client,
            linear_grid(units.div_ceil(BLOCK)),
            cube_dim,
            vector,
            arg(&context),
            arg(&lse),
            arg(&seen),
            arg(&out),
            arg(&out_lse),
            CombineArgsLaunch::new(units as u32, heads as u32, g as u32, chunks as u32),
            d / vector,
            f32::elem_type_native(),
        );
        (out, out_lse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_shape_reads_the_widest_vector_and_fits_the_tile_budget() {
        let base = LaunchShape::standard(64);
        assert_eq!(
            (base.block, base.tile, base.vector, base.row_vectors),
            (64, 32, 4, 16)
        );
        assert_eq!(LaunchShape::standard(6).vector, 2);
        assert_eq!(LaunchShape::standard(5).vector, 1);
        for d in [1, 5, 8, 64, 96, 128, 256, 1000] {
            let shape = LaunchShape::standard(d);
            let bytes = 4 * shape.tile * (2 * d + 2);
            assert_eq!(shape.shared_bytes(), bytes);
            assert!(
                bytes <= TILE_BYTES || shape.tile == 1,
                "d = {d}: {bytes} bytes"
            );
            assert!(
                shape.tile <= BLOCK && shape.tile.is_power_of_two(),
                "d = {d}"
            );
            assert_eq!(shape.vector * shape.row_vectors, d);
        }
    }

    #[test]
    fn pairs_past_one_grid_dimension_spread_over_two() {
        assert_eq!(pair_grid(1), [1, 1]);
        assert_eq!(pair_grid(65_535), [65_535, 1]);
        assert_eq!(pair_grid(65_536), [32_768, 2]);
        for pairs in [65_544, 200_001, 1 << 24] {
            let [y, z] = pair_grid(pairs);
            assert!(
                y <= MAX_CUBES_PER_DIM && y * z >= pairs,
                "{pairs}: {y} x {z}"
            );
            assert!(
                y * (z - 1) < pairs,
                "{pairs}: a whole layer of cubes past the last pair"
            );
        }
    }

    #[test]
    fn tuned_shapes_fit_the_device_and_skip_the_standard_one() {
        // Head width 64 on a 32 KiB device: 64-row tiles need 33,280 bytes.
        assert!(LaunchShape::tuned(64, 64, 64, 32 * 1024).is_err());
        assert!(LaunchShape::tuned(64, 64, 64, 48 * 1024).is_ok());
        // ... and a device offering more is held to 48 KiB.
        assert!(LaunchShape::tuned(128, 64, 64, 228 * 1024).is_err());
        assert!(
            LaunchShape::tuned(64, 64, 32, 48 * 1024).is_err(),
            "the standard shape"
        );
        assert_eq!(
            LaunchShape::tuned(64, 128, 32, 48 * 1024),
            Ok(LaunchShape::new(64, 128, 32))
        );
    }
}
