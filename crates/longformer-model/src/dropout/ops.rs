//! [`DropoutMaskOps`]: a dropout mask's factors, generated in one pass, as a Burn backend
//! extension.

// The extension names the ndarray backend, which Burn 0.22 deprecates but still supports.
#![allow(deprecated)]
// Built with no backend at all (`--no-default-features` alone), the generated dispatch has no
// arm to pass the scalar arguments to.
#![cfg_attr(
    not(any(
        feature = "flex",
        feature = "ndarray",
        feature = "wgpu",
        feature = "vulkan"
    )),
    allow(unused_variables)
)]

use burn::backend::{
    Backend, TensorMetadata, backend_extension,
    tensor::{FloatTensor, IntTensor},
};
use burn::tensor::{DType, Shape};

/// The factors of a dropout mask: `scale` for a kept element, `0` for a dropped one, where
/// element `(r, c)` is kept when the 24 low bits of `hash31(hash31(r ^ key) ^ c)` are below
/// `threshold` ([`super::drop_mask`]'s hash, `key` = `seed[0]`).
///
/// One pass on every backend: a CubeCL kernel on GPUs, a parallel loop on the CPU backends
/// (flex, ndarray). Burn's fusion does not fuse integer bitwise ops, so the same hash as Burn
/// tensor ops (as [`super::drop_mask`] computes it) is some 25 launches over the whole mask
/// on a GPU.
///
/// [`seeded_dropout_apply`](Self::seeded_dropout_apply) multiplies a tensor by its mask's
/// factors; under autodiff its backward pass is the same op on the output gradient, the mask
/// made again from the seed, so a training pass keeps no mask for its backward pass.
#[backend_extension(
    Cube: cfg(any(feature = "wgpu", feature = "vulkan")),
    Flex: cfg(feature = "flex"),
    NdArray: cfg(feature = "ndarray"),
    Autodiff,
    Fusion: cfg(feature = "fusion"),
)]
pub trait DropoutMaskOps: Backend {
    /// The factors of a `[rows, cols]` mask, f32.
    ///
    /// # Shapes
    /// - seed: `[1]`, the key (a 31-bit non-negative integer)
    /// - output: `[rows, cols]`
    #[fusion(meta = fusion_outputs::keep_scale)]
    fn dropout_keep_scale(
        seed: IntTensor<Self>,
        rows: usize,
        cols: usize,
        threshold: usize,
        scale: f32,
    ) -> FloatTensor<Self>;

    /// `x` times the factors of its mask ([`dropout_keep_scale`](Self::dropout_keep_scale)
    /// over `x`'s shape: the last axis is the column, the others together the row; cast to
    /// `x`'s dtype), as Burn ops: under fusion the product joins the elementwise ops around it.
    ///
    /// # Shapes
    /// - x: any, any float dtype; seed: `[1]`
    /// - output: `x`'s
    #[fusion(default)]
    fn seeded_dropout_apply(
        x: FloatTensor<Self>,
        seed: IntTensor<Self>,
        threshold: usize,
        scale: f32,
    ) -> FloatTensor<Self> {
        let shape = x.shape();
        let dims = shape.as_slice();
        let cols = dims.last().copied().unwrap_or(1);
        let rows = shape.num_elements() / cols.max(1);
        let dtype = x.dtype();
        let factors = Self::float_reshape(
            Self::dropout_keep_scale(seed, rows, cols, threshold, scale),
            Shape::from(dims.to_vec()),
        );
        let factors = if dtype == DType::F32 {
            factors
        } else {
            Self::float_cast(factors, dtype.into())
        };
        Self::float_mul(x, factors)
    }
}

/// Output metadata for Burn's fusion, which registers the ops before they run.
#[cfg(feature = "fusion")]
mod fusion_outputs {
    use burn::backend::fusion::custom::TensorSpec;
    use burn::tensor::DType;

    /// [`super::DropoutMaskOps::dropout_keep_scale`]: `[rows, cols]` of f32.
    pub(super) fn keep_scale(
        _seed: &TensorSpec,
        rows: &usize,
        cols: &usize,
        _threshold: &usize,
        _scale: &f32,
    ) -> TensorSpec {
        TensorSpec::new([*rows, *cols].into(), DType::F32)
    }
}
