//! [`LayerNormOps`] on the CubeCL backend (wgpu, vulkan): launches the kernels of
//! [`super::kernels`].

use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::tensor::Shape;
use burn_cubecl::CubeBackend;
use burn_cubecl::cubecl::prelude::*;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;

use super::kernels::{layer_norm_backward_kernel, layer_norm_forward_kernel};
use super::ops::LayerNormOps;
use crate::cube_common::{empty_like, expect_f32, linear_grid, vector_width};

/// Most units a cube gives one row.
const MAX_UNITS: usize = 256;

/// Fewest units a cube has: one warp on NVIDIA.
const MIN_UNITS: usize = 32;

/// About this many cubes share the backward pass's rows: each sums `dgamma` and `dbeta` over
/// its rows in registers, and the `[2, blocks, d]` block sums are added up afterwards.
const BACKWARD_BLOCKS: usize = 512;

/// How the kernels read rows of `d` floats: vectors of `vector` floats, `rv` per row, split
/// over `units` units (a power of two, about two vectors each).
#[derive(Debug, Clone, Copy)]
struct RowShape {
    vector: usize,
    rv: usize,
    units: usize,
}

impl RowShape {
    fn new(d: usize) -> Self {
        let vector = vector_width(d);
        let rv = d / vector;
        let units = rv
            .div_ceil(2)
            .next_power_of_two()
            .clamp(MIN_UNITS, MAX_UNITS);
        Self { vector, rv, units }
    }

    fn cube_dim(&self) -> CubeDim {
        CubeDim::new_1d(self.units as u32)
    }
}

/// `t` contiguous, after checking that it is an f32 tensor of shape `dims`.
fn checked(op: &str, name: &str, t: CubeTensor, dims: &[usize]) -> CubeTensor {
    expect_f32("LayerNorm's kernel", op, name, &t, dims);
    into_contiguous(t)
}

fn f32_elem() -> ElemType {
    f32::elem_type_native()
}

impl LayerNormOps for CubeBackend {
    fn layer_norm_forward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        const OP: &str = "layer_norm_forward";
        let [rows, d] = x.meta.shape().dims::<2>();
        let x = checked(OP, "x", x, &[rows, d]);
        let gamma = checked(OP, "gamma", gamma, &[d]);
        let beta = checked(OP, "beta", beta, &[d]);
        let y = empty_like(&x, Shape::new([rows, d]));
        let mean = empty_like(&x, Shape::new([rows]));
        let rstd = empty_like(&x, Shape::new([rows]));
        if rows == 0 || d == 0 {
            return (y, mean, rstd);
        }
        let shape = RowShape::new(d);
        let arg = |t: &CubeTensor| t.clone().into_tensor_arg();
        layer_norm_forward_kernel::launch(
            &x.client,
            linear_grid(rows),
            shape.cube_dim(),
            shape.vector,
            arg(&x),
            arg(&gamma),
            arg(&beta),
            arg(&y),
            arg(&mean),
            arg(&rstd),
            rows,
            epsilon,
            d,
            shape.rv,
            shape.units,
            f32_elem(),
        );
        (y, mean, rstd)
    }

    fn layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        rstd: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        const OP: &str = "layer_norm_backward";
        let [rows, d] = x.meta.shape().dims::<2>();
        let x = checked(OP, "x", x, &[rows, d]);
        let gamma = checked(OP, "gamma", gamma, &[d]);
        let mean = checked(OP, "mean", mean, &[rows]);
        let rstd = checked(OP, "rstd", rstd, &[rows]);
        let grad = checked(OP, "grad", grad, &[rows, d]);
        let dx = empty_like(&x, Shape::new([rows, d]));
        if rows == 0 || d == 0 {
            let zeros = |t: &CubeTensor| Self::float_zeros([d].into(), &t.device, t.dtype.into());
            return (dx, zeros(&x), zeros(&x));
        }
        let block_rows = rows.div_ceil(BACKWARD_BLOCKS);
        let blocks = rows.div_ceil(block_rows);
        let partial = empty_like(&x, Shape::new([2, blocks, d]));
        let shape = RowShape::new(d);
        let arg = |t: &CubeTensor| t.clone().into_tensor_arg();
        layer_norm_backward_kernel::launch(
            &x.client,
            linear_grid(blocks),
            shape.cube_dim(),
            shape.vector,
            arg(&x),
            arg(&gamma),
            arg(&mean),
            arg(&rstd),
            arg(&grad),
            arg(&dx),
            arg(&partial),
            rows,
            block_rows,
            blocks,
            d,
            shape.rv,
            shape.units,
            f32_elem(),
        );
        // `[2, 1, d]`: the blocks' sums added up, in one reduction.
        let sums = Self::float_reshape(Self::float_sum_dim(partial, 1), Shape::new([2, d]));
        let row = |i: usize| {
            Self::float_reshape(
                Self::float_slice(sums.clone(), &[(i..i + 1).into(), (0..d).into()]),
                Shape::new([d]),
            )
        };
        (dx, row(0), row(1))
    }
}
