//! What this crate's CubeCL kernels share (GPU backends: wgpu, vulkan): how wide a vector a
//! row is read in, the sum of a vector's lanes, and grids of more cubes than one grid
//! dimension holds.

use burn::tensor::DType;
use burn::tensor::Shape;
use burn_cubecl::cubecl;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::CubeCount;
use cubecl::prelude::*;

/// Cubes a grid dimension holds on every device (WebGPU's and Vulkan's guaranteed minimum).
pub(crate) const MAX_CUBES_PER_DIM: usize = 65_535;

/// Floats per vector read for rows of `d` floats: 4, 2 or 1, the largest that divides `d`.
pub(crate) fn vector_width(d: usize) -> usize {
    [4, 2, 1]
        .into_iter()
        .find(|&v| d.is_multiple_of(v))
        .unwrap_or(1)
}

/// Panics, naming `op` and the input, unless `t` is an f32 tensor of shape `dims`: the kernels
/// index their inputs by these shapes and read them as f32, unchecked. `kernels` names them in
/// the message ("the fused local attention").
pub(crate) fn expect_f32(kernels: &str, op: &str, name: &str, t: &CubeTensor, dims: &[usize]) {
    assert_eq!(
        t.dtype,
        DType::F32,
        "{op}: {kernels} runs in f32, but `{name}` is {:?}",
        t.dtype
    );
    assert_eq!(
        t.meta.shape().as_slice(),
        dims,
        "{op}: `{name}` has shape {:?}, expected {dims:?}",
        t.meta.shape().as_slice()
    );
}

/// An uninitialized contiguous tensor of `shape` with `like`'s device and dtype.
pub(crate) fn empty_like(like: &CubeTensor, shape: Shape) -> CubeTensor {
    empty_device_contiguous_dtype(like.client.clone(), like.device.clone(), shape, like.dtype)
}

/// A grid of at least `cubes` cubes: all along `x` while they fit, else `x · y >= cubes` with
/// `x` at most [`MAX_CUBES_PER_DIM`]; a kernel finds its cube's index with [`linear_cube`] and
/// ends the cubes past the last.
///
/// # Panics
/// If `cubes` is more than a grid holds.
pub(crate) fn linear_grid(cubes: usize) -> CubeCount {
    let y = cubes.div_ceil(MAX_CUBES_PER_DIM).max(1);
    let x = cubes.div_ceil(y).max(1);
    assert!(
        y <= MAX_CUBES_PER_DIM,
        "{cubes} cubes are more than a grid holds"
    );
    CubeCount::Static(x as u32, y as u32, 1)
}

/// This cube's index in a [`linear_grid`].
#[cube]
pub(crate) fn linear_cube() -> usize {
    (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) as usize
}

/// The sum of a vector's lanes.
#[cube]
pub(crate) fn lane_sum<F: Float, N: Size>(x: Vector<F, N>) -> F {
    let mut sum = F::new(0.0);
    #[unroll]
    for l in 0..x.vector_size() {
        sum += x.extract(l);
    }
    sum
}
