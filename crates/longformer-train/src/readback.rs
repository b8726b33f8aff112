//! Reading results back from the device as errors, not panics.
//!
//! On the GPU backends work is queued and runs later: a failed allocation (out of memory, or
//! one tensor past the device's largest buffer, 128 MiB on OpenGL devices) or a faulted kernel
//! surfaces only when a result is read. Burn's `into_data` then panics; [`read_back`] returns
//! the failure as an error naming what was being read, for the commands to report.

use anyhow::{Result, anyhow};
use burn::tensor::kind::Basic;
use burn::tensor::{Tensor, TensorData};

/// A result the device failed to produce: the error [`read_back`] returns.
#[derive(Debug)]
pub struct DeviceFailure {
    /// What was being read, e.g. "the loss".
    pub what: String,
    /// The device's own account.
    pub reason: String,
}

impl std::fmt::Display for DeviceFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the device failed computing {} (out of memory, or a tensor larger than the device's \
             largest buffer?): {}",
            self.what, self.reason
        )
    }
}

impl std::error::Error for DeviceFailure {}

/// `tensor`'s values on the host. `what` names the result in the error, e.g. "the loss".
pub fn read_back<const D: usize, K: Basic>(tensor: Tensor<D, K>, what: &str) -> Result<TensorData> {
    tensor.try_into_data().map_err(|e| {
        DeviceFailure {
            what: what.to_string(),
            reason: e.to_string(),
        }
        .into()
    })
}

/// Whether `error` is, or was caused by, a [`DeviceFailure`].
pub fn is_device_failure(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.is::<DeviceFailure>())
}

/// The one value of a single-element float tensor, as [`read_back`] reads it.
pub fn read_scalar<const D: usize>(tensor: Tensor<D>, what: &str) -> Result<f32> {
    let data = read_back(tensor, what)?;
    data.iter::<f32>()
        .next()
        .ok_or_else(|| anyhow!("{what} is empty"))
}

#[cfg(all(test, feature = "wgpu"))]
mod tests {
    use burn::tensor::Device;

    use super::*;

    /// 160 MB in one tensor: past the software GPU's largest buffer (128 MiB on OpenGL), so the
    /// fill fails on the device, and reading it is an error, where `into_data` panics. (A GPU
    /// that holds it computes the sum instead, which is then checked.)
    #[test]
    fn a_failed_device_result_is_an_error() {
        let device = Device::wgpu(Default::default());
        let huge = Tensor::<1>::ones([40_000_000], &device).mul_scalar(2.0);
        match read_scalar(huge.sum(), "the sum") {
            Ok(sum) => assert_eq!(sum, 8e7),
            Err(e) => {
                let err = e.to_string();
                assert!(err.contains("the device failed computing the sum"), "{err}");
                assert!(is_device_failure(&e.context("summing")));
            }
        }
        let small = Tensor::<1>::ones([4], &device).sum();
        assert_eq!(read_scalar(small, "the sum").unwrap(), 4.0);
        assert!(!is_device_failure(&anyhow!(
            "a batch does not fit the model"
        )));
    }
}
