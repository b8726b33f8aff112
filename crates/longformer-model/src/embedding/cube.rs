//! [`EmbeddingLookupOps`] on the CubeCL backend (wgpu, vulkan): the lookup is Burn's `select`,
//! the row sums a kernel with one unit per (segment, column).

use burn::backend::cubecl::dtype_to_storage_type;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::tensor::Shape;
use burn_cubecl::CubeBackend;
use burn_cubecl::cubecl;
use burn_cubecl::cubecl::prelude::*;
use burn_cubecl::cubecl::{CubeDim, calculate_cube_count_elemwise};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::zeros_client;

use super::ops::EmbeddingLookupOps;

/// Unit `(s, c)` (`s = pos / d`, `c = pos % d`) adds `values[order[j], c]` over `j` in
/// `starts[s]..starts[s + 1]`, in order, in f32, and writes the sum to `out[targets[s], c]`.
/// Neighbouring units read neighbouring columns of the same rows.
#[cube(launch)]
fn segment_row_sums_kernel<F: Float, I: Numeric>(
    values: &Tensor<F>,
    order: &Tensor<I>,
    starts: &Tensor<I>,
    targets: &Tensor<I>,
    out: &mut Tensor<F>,
    units: usize,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    if ABSOLUTE_POS >= units {
        terminate!();
    }
    let d = values.shape(1);
    let s = ABSOLUTE_POS / d;
    let c = ABSOLUTE_POS % d;
    let begin = usize::cast_from(starts[s]);
    let end = usize::cast_from(starts[s + 1]);
    let mut sum = f32::new(0.0);
    for j in begin..end {
        let token = usize::cast_from(order[j]);
        sum += f32::cast_from(values[token * d + c]);
    }
    out[usize::cast_from(targets[s]) * d + c] = F::cast_from(sum);
}

impl EmbeddingLookupOps for CubeBackend {
    fn segment_row_sums(
        values: FloatTensor<Self>,
        order: IntTensor<Self>,
        starts: IntTensor<Self>,
        targets: IntTensor<Self>,
        rows: usize,
    ) -> FloatTensor<Self> {
        let [_, d] = values.meta.shape().dims::<2>();
        let segments = targets.meta.shape().num_elements();
        assert_eq!(
            starts.meta.shape().num_elements(),
            segments + 1,
            "segment_row_sums: {segments} targets need {} starts",
            segments + 1
        );
        let [values, order, starts, targets] =
            [values, order, starts, targets].map(into_contiguous);
        let out = zeros_client(
            values.client.clone(),
            values.device.clone(),
            Shape::new([rows, d]),
            values.dtype,
        );
        let units = segments * d;
        if units == 0 {
            return out;
        }
        let client = values.client.clone();
        let cube_dim = CubeDim::new(&client, units);
        let dtypes = [
            dtype_to_storage_type(values.dtype),
            dtype_to_storage_type(order.dtype),
        ];
        segment_row_sums_kernel::launch(
            &client,
            calculate_cube_count_elemwise(&client, units, cube_dim),
            cube_dim,
            values.into_tensor_arg(),
            order.into_tensor_arg(),
            starts.into_tensor_arg(),
            targets.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            units,
            dtypes,
        );
        out
    }
}
