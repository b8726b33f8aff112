//! Half precision: a model's float parameters in f16 or bf16, with the attention core in f32.
//!
//! Burn has no automatic mixed precision; a tensor's dtype is its own. [`cast_float_params`]
//! converts every float parameter of a module (the encoder, a task head, a whole model) to one
//! dtype. Projections, feed-forward layers, layer norms and embeddings then run in that dtype,
//! while [`crate::SlidingWindowAttention`] lifts queries, keys and values to f32 for scores,
//! softmax and the weighted sum, and casts the context back: masked or global scores never
//! overflow f16 (a known failure of the original implementation).
//!
//! ```no_run
//! use burn::tensor::{Device, FloatDType};
//! use longformer_model::{LongformerConfig, precision::cast_float_params};
//!
//! let device = Device::flex();
//! let model = LongformerConfig::tiny(100).init(&device);
//! let model = cast_float_params(model, FloatDType::BF16, &device).unwrap();
//! ```

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{DType, Device, FloatDType, Tensor};

use crate::error::InputError;

/// `module` with every float parameter converted to `dtype` (a no-op for parameters already
/// in it).
///
/// # Errors
/// [`InputError::UnsupportedDType`] if `device` cannot compute in `dtype` (ndarray has no f16 or
/// bf16; flex has both; wgpu and vulkan have what the GPU offers).
pub fn cast_float_params<M: Module>(
    module: M,
    dtype: FloatDType,
    device: &Device,
) -> Result<M, InputError> {
    check_float_dtype(dtype, device)?;
    Ok(module.map(&mut FloatCast(dtype)))
}

/// Whether `device` computes in `dtype`.
///
/// # Errors
/// [`InputError::UnsupportedDType`] if it does not.
pub fn check_float_dtype(dtype: FloatDType, device: &Device) -> Result<(), InputError> {
    if device.supports_dtype(DType::from(dtype)) {
        return Ok(());
    }
    let halves: Vec<&str> = [(FloatDType::F16, "F16"), (FloatDType::BF16, "BF16")]
        .into_iter()
        .filter(|&(half, _)| device.supports_dtype(DType::from(half)))
        .map(|(_, name)| name)
        .collect();
    let available = match halves.as_slice() {
        [] => "neither".to_string(),
        names => names.join(" and "),
    };
    Err(InputError::UnsupportedDType {
        dtype: format!("{dtype:?}"),
        device: format!("{device:?}"),
        available,
    })
}

/// `x` in f32 (itself when it is already): where a half-precision model computes in f32.
pub fn to_f32<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    to_dtype(x, DType::F32)
}

/// `x` in `dtype` (itself when it is already).
pub fn to_dtype<const D: usize>(x: Tensor<D>, dtype: DType) -> Tensor<D> {
    if x.dtype() == dtype {
        x
    } else {
        x.cast(FloatDType::from(dtype))
    }
}

/// Converts every float parameter to one dtype.
struct FloatCast(FloatDType);

impl ModuleMapper for FloatCast {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let target = self.0;
        let dtype = DType::from(target);
        // A new leaf: the cast of a tracked tensor would otherwise be an op output, and
        // gradients would flow to the old f32 tensor instead of the parameter.
        param.map(|t| {
            if t.dtype() == dtype {
                t
            } else {
                let tracked = t.is_require_grad();
                t.cast(target).detach().set_require_grad(tracked)
            }
        })
    }
}
