//! [`LocalAttentionOps`] on the CubeCL backend (wgpu, vulkan): launches the kernels of
//! [`super::kernels`].

use burn::backend::cubecl::dtype_to_storage_type;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::tensor::{DType, Shape};
use burn_cubecl::CubeBackend;
use burn_cubecl::cubecl::prelude::*;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;

use super::kernels::{
    BandArgsLaunch, local_attention_dkdv_kernel, local_attention_dq_kernel,
    local_attention_forward_kernel,
};
use super::ops::LocalAttentionOps;

/// Rows (queries, or keys in the key-gradient kernel) per cube, one unit each: two warps.
const BLOCK: usize = 64;

/// Shared memory a cube may use for its staged tiles: 24 KiB, under the 32 KiB the least
/// device offers (OpenGL's minimum and the software GPU's limit; NVIDIA's is 48 KiB per cube)
/// and small enough that several cubes share one multiprocessor.
const TILE_BYTES: usize = 24 * 1024;

/// How one launch splits the work for head width `d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LaunchShape {
    /// Floats per vector read (4, 2 or 1: the largest that divides `d`).
    vector: usize,
    /// Vectors per head row, `d / vector`.
    row_vectors: usize,
    /// Rows staged at a time: two `[tile, d]` tiles and two `[tile]` vectors of f32 fit in
    /// [`TILE_BYTES`]; a power of two, at most [`BLOCK`].
    tile: usize,
}

impl LaunchShape {
    fn new(d: usize) -> Self {
        let vector = [4, 2, 1]
            .into_iter()
            .find(|&v| d.is_multiple_of(v))
            .unwrap_or(1);
        let fit = TILE_BYTES / (4 * (2 * d + 2));
        let mut tile = BLOCK;
        while tile > fit && tile > 1 {
            tile /= 2;
        }
        Self {
            vector,
            row_vectors: d / vector,
            tile,
        }
    }

    /// One cube per [`BLOCK`] rows of each of the `pairs` `(row, head)` pairs of `m` tokens.
    fn cubes(m: usize, pairs: usize) -> CubeCount {
        CubeCount::Static(m.div_ceil(BLOCK) as u32, pairs as u32, 1)
    }

    /// [`BLOCK`] units per cube.
    fn cube_dim() -> CubeDim {
        CubeDim::new_1d(BLOCK as u32)
    }
}

/// The band's scalars for `m` tokens and `heads` heads: `window` keys on each side of a query,
/// none after it when `causal`.
fn band_args(m: usize, heads: usize, window: usize, causal: bool, dropout: f32) -> BandArgsLaunch {
    let right = if causal { 0 } else { window };
    BandArgsLaunch::new(m as u32, heads as u32, window as u32, right as u32, dropout)
}

/// `[rows, heads, m, d]` of a `q`/`k`/`v` tensor.
fn dims4(t: &CubeTensor) -> [usize; 4] {
    t.meta.shape().dims::<4>()
}

fn empty_like(like: &CubeTensor, shape: Shape) -> CubeTensor {
    empty_device_contiguous_dtype(like.client.clone(), like.device.clone(), shape, like.dtype)
}

fn check_f32(t: &CubeTensor, op: &str) {
    assert_eq!(
        t.dtype,
        DType::F32,
        "{op}: the fused local attention runs in f32 (got {:?}); use the reference path",
        t.dtype
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
        global_keep: FloatTensor<Self>,
        seed: IntTensor<Self>,
        dropout: f32,
        window: usize,
        causal: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        check_f32(&q, "local_attention_forward");
        let [rows, heads, m, d] = dims4(&q);
        let g = global_k.meta.shape().dims::<4>()[2];
        let [q, k, v, global_k, global_v, key_ok, global_ok, global_keep] =
            [q, k, v, global_k, global_v, key_ok, global_ok, global_keep].map(into_contiguous);
        let int_dtype = seed.dtype;
        let out = empty_like(&q, Shape::new([rows, heads, m, d]));
        let lse = empty_like(&q, Shape::new([rows, heads, m]));
        let client = q.client.clone();
        let launch = LaunchShape::new(d);
        local_attention_forward_kernel::launch(
            &client,
            LaunchShape::cubes(m, rows * heads),
            LaunchShape::cube_dim(),
            launch.vector,
            q.into_tensor_arg(),
            k.into_tensor_arg(),
            v.into_tensor_arg(),
            global_k.into_tensor_arg(),
            global_v.into_tensor_arg(),
            key_ok.into_tensor_arg(),
            global_ok.into_tensor_arg(),
            global_keep.into_tensor_arg(),
            into_contiguous(seed).into_tensor_arg(),
            out.clone().into_tensor_arg(),
            lse.clone().into_tensor_arg(),
            band_args(m, heads, window, causal, dropout),
            g as u32,
            launch.row_vectors,
            BLOCK,
            launch.tile,
            dropout > 0.0,
            [f32::elem_type_native(), dtype_to_storage_type(int_dtype)],
        );
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
        check_f32(&q, "local_attention_band_backward");
        let [rows, heads, m, d] = dims4(&q);
        let [q, k, v, key_ok, lse, delta, grad] =
            [q, k, v, key_ok, lse, delta, grad].map(into_contiguous);
        let shape = Shape::new([rows, heads, m, d]);
        let [dq, dk, dv] = [0; 3].map(|_| empty_like(&q, shape.clone()));
        let client = q.client.clone();
        let launch = LaunchShape::new(d);
        let count = LaunchShape::cubes(m, rows * heads);
        let dtypes = [f32::elem_type_native(), dtype_to_storage_type(seed.dtype)];
        let seed = into_contiguous(seed);
        local_attention_dq_kernel::launch(
            &client,
            count.clone(),
            LaunchShape::cube_dim(),
            launch.vector,
            q.clone().into_tensor_arg(),
            k.clone().into_tensor_arg(),
            v.clone().into_tensor_arg(),
            key_ok.clone().into_tensor_arg(),
            lse.clone().into_tensor_arg(),
            delta.clone().into_tensor_arg(),
            grad.clone().into_tensor_arg(),
            seed.clone().into_tensor_arg(),
            dq.clone().into_tensor_arg(),
            band_args(m, heads, window, causal, dropout),
            launch.row_vectors,
            BLOCK,
            launch.tile,
            dropout > 0.0,
            dtypes,
        );
        local_attention_dkdv_kernel::launch(
            &client,
            count,
            LaunchShape::cube_dim(),
            launch.vector,
            q.into_tensor_arg(),
            k.into_tensor_arg(),
            v.into_tensor_arg(),
            key_ok.into_tensor_arg(),
            lse.into_tensor_arg(),
            delta.into_tensor_arg(),
            grad.into_tensor_arg(),
            seed.into_tensor_arg(),
            dk.clone().into_tensor_arg(),
            dv.clone().into_tensor_arg(),
            band_args(m, heads, window, causal, dropout),
            launch.row_vectors,
            BLOCK,
            launch.tile,
            dropout > 0.0,
            dtypes,
        );
        (dq, dk, dv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_shape_reads_the_widest_vector_and_fits_the_tile_budget() {
        let base = LaunchShape::new(64);
        assert_eq!((base.vector, base.row_vectors, base.tile), (4, 16, 32));
        assert_eq!(LaunchShape::new(6).vector, 2);
        assert_eq!(LaunchShape::new(5).vector, 1);
        for d in [1, 5, 8, 64, 96, 128, 256, 1000] {
            let shape = LaunchShape::new(d);
            let bytes = 4 * shape.tile * (2 * d + 2);
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
}
