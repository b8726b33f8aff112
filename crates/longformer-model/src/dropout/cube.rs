//! [`DropoutMaskOps`] on the CubeCL backend (wgpu, vulkan): one kernel, one unit per element.

use burn::backend::cubecl::dtype_to_storage_type;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::tensor::{DType, Shape};
use burn_cubecl::CubeBackend;
use burn_cubecl::cubecl;
use burn_cubecl::cubecl::prelude::*;
use burn_cubecl::cubecl::{CubeDim, calculate_cube_count_elemwise};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;

use super::ops::DropoutMaskOps;
use super::{KEEP_BITS, LOW_31, MIX};

/// [`super::hash31`] on `u32`: the wrapping product keeps the low 31 bits that the 64-bit one
/// has.
#[cube]
fn hash31(x: u32) -> u32 {
    let x = x ^ (x >> 16);
    let x = (x * comptime!(MIX as u32)) & comptime!(LOW_31 as u32);
    let x = x ^ (x >> 16);
    let x = (x * comptime!(MIX as u32)) & comptime!(LOW_31 as u32);
    x ^ (x >> 16)
}

/// Element `(row, col)` of a mask's factors with key `key`: `scale` when the hash of the key,
/// the row and the column is below `threshold`, else `0` ([`super::keep_scale`]'s elements, for
/// kernels that drop without a mask tensor).
#[cube]
pub(crate) fn keep_factor(key: u32, row: u32, col: u32, threshold: u32, scale: f32) -> f32 {
    let bits = hash31(hash31(row ^ key) ^ col) & comptime!((1u32 << KEEP_BITS) - 1);
    let mut factor = 0.0f32;
    if bits < threshold {
        factor = scale;
    }
    factor
}

/// Unit `pos` writes element `pos` of the `[rows, cols]` mask: [`keep_factor`] of the key
/// (`seed[0]`), its row and its column.
#[cube(launch)]
fn keep_scale_kernel<I: Numeric>(
    seed: &Tensor<I>,
    out: &mut Tensor<f32>,
    cols: usize,
    threshold: u32,
    scale: f32,
    #[define(I)] _dtype: ElemType,
) {
    if ABSOLUTE_POS >= out.len() {
        terminate!();
    }
    let row = (ABSOLUTE_POS / cols) as u32;
    let col = (ABSOLUTE_POS % cols) as u32;
    let key = u32::cast_from(seed[0]);
    out[ABSOLUTE_POS] = keep_factor(key, row, col, threshold, scale);
}

impl DropoutMaskOps for CubeBackend {
    fn dropout_keep_scale(
        seed: IntTensor<Self>,
        rows: usize,
        cols: usize,
        threshold: usize,
        scale: f32,
    ) -> FloatTensor<Self> {
        let seed = into_contiguous(seed);
        let out = empty_device_contiguous_dtype(
            seed.client.clone(),
            seed.device.clone(),
            Shape::new([rows, cols]),
            DType::F32,
        );
        let units = rows * cols;
        if units == 0 {
            return out;
        }
        let client = seed.client.clone();
        let cube_dim = CubeDim::new(&client, units);
        let dtype = dtype_to_storage_type(seed.dtype);
        keep_scale_kernel::launch(
            &client,
            calculate_cube_count_elemwise(&client, units, cube_dim),
            cube_dim,
            seed.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            cols,
            threshold as u32,
            scale,
            dtype,
        );
        out
    }
}
