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
    local_attention_dkdv_kernel, local_attention_dq_kernel, local_attention_forward_kernel,
};
use super::ops::LocalAttentionOps;

/// Most rows (queries or keys) per cube, one unit each.
const MAX_BLOCK: usize = 64;

/// Shared memory a kernel may use: 32 KiB, the least a device must offer (OpenGL's minimum,
/// the software GPU's limit; Vulkan devices have at least 16 KiB, NVIDIA's 48 KiB).
const SHARED_BYTES: usize = 32 * 1024;

/// Rows per cube for head width `d`: two staged `[block, d]` tiles and two `[block]` vectors
/// of f32 must fit in [`SHARED_BYTES`]; a power of two, at most [`MAX_BLOCK`].
fn block_rows(d: usize) -> usize {
    let fit = SHARED_BYTES / (4 * (2 * d + 2));
    let mut block = MAX_BLOCK;
    while block > fit && block > 1 {
        block /= 2;
    }
    block
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
        let block = block_rows(d);
        local_attention_forward_kernel::launch(
            &client,
            CubeCount::Static(m.div_ceil(block) as u32, (rows * heads) as u32, 1),
            CubeDim::new_1d(block as u32),
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
            m as u32,
            g as u32,
            heads as u32,
            window as u32,
            if causal { 0 } else { window as u32 },
            dropout,
            d,
            block,
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
        let block = block_rows(d);
        let count = CubeCount::Static(m.div_ceil(block) as u32, (rows * heads) as u32, 1);
        let right = if causal { 0 } else { window as u32 };
        let dtypes = [f32::elem_type_native(), dtype_to_storage_type(seed.dtype)];
        let seed = into_contiguous(seed);
        local_attention_dq_kernel::launch(
            &client,
            count.clone(),
            CubeDim::new_1d(block as u32),
            q.clone().into_tensor_arg(),
            k.clone().into_tensor_arg(),
            v.clone().into_tensor_arg(),
            key_ok.clone().into_tensor_arg(),
            lse.clone().into_tensor_arg(),
            delta.clone().into_tensor_arg(),
            grad.clone().into_tensor_arg(),
            seed.clone().into_tensor_arg(),
            dq.clone().into_tensor_arg(),
            m as u32,
            heads as u32,
            window as u32,
            right,
            dropout,
            d,
            block,
            dropout > 0.0,
            dtypes,
        );
        local_attention_dkdv_kernel::launch(
            &client,
            count,
            CubeDim::new_1d(block as u32),
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
            m as u32,
            heads as u32,
            window as u32,
            right,
            dropout,
            d,
            block,
            dropout > 0.0,
            dtypes,
        );
        (dq, dk, dv)
    }
}
