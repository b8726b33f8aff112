//! Picking the compute device from `--backend`, among the backends compiled into this binary,
//! and the float dtype from `--dtype`.

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, FloatDType};
use clap::ValueEnum;
use longformer_model::cast_float_params;
use serde::{Deserialize, Serialize};

/// A Burn backend, selected at run time among the Cargo features this binary was built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// Pure-Rust CPU backend (the default).
    Flex,
    /// ndarray CPU backend.
    Ndarray,
    /// GPU through wgpu (Vulkan, Metal, DX12 or GL, whichever the machine has).
    Wgpu,
    /// GPU through Vulkan only.
    Vulkan,
}

impl Backend {
    /// The device of this backend, or an error naming the Cargo feature to enable.
    pub fn device(self) -> Result<Device> {
        match self {
            #[cfg(feature = "flex")]
            Self::Flex => Ok(Device::flex()),
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)] // deprecated in Burn 0.22, still supported here
            Self::Ndarray => Ok(Device::ndarray()),
            #[cfg(feature = "wgpu")]
            Self::Wgpu => started(Device::wgpu(Default::default())),
            #[cfg(feature = "vulkan")]
            Self::Vulkan => started(Device::vulkan(Default::default())),
            #[allow(unreachable_patterns)]
            other => bail!(
                "backend {other:?} is not compiled into this binary; rebuild with the `{}` feature \
                 (cargo xtask does this for you: `cargo xtask <command> --backend {}`)",
                other.feature(),
                other.feature()
            ),
        }
    }

    /// `count` devices of this backend for data-parallel training: discrete GPUs 0..count on
    /// wgpu/vulkan (1 is the default device). CPU backends have one device.
    pub fn devices(self, count: usize) -> Result<Vec<Device>> {
        match count {
            0 => bail!("--devices must be at least 1"),
            1 => Ok(vec![self.device()?]),
            n => match self {
                #[cfg(feature = "wgpu")]
                Self::Wgpu => (0..n)
                    .map(|i| started(Device::wgpu(burn::tensor::DeviceKind::DiscreteGpu(i))))
                    .collect::<Result<_>>()
                    .with_context(|| format!("--devices {n} needs {n} discrete GPUs")),
                #[cfg(feature = "vulkan")]
                Self::Vulkan => (0..n)
                    .map(|i| started(Device::vulkan(burn::tensor::DeviceKind::DiscreteGpu(i))))
                    .collect::<Result<_>>()
                    .with_context(|| format!("--devices {n} needs {n} discrete GPUs")),
                Self::Flex | Self::Ndarray => bail!(
                    "--devices {n}: the {} backend has one device (it already uses every core)",
                    self.feature()
                ),
                #[allow(unreachable_patterns)]
                other => other.device().map(|d| vec![d]),
            },
        }
    }

    /// The Cargo feature that compiles this backend in.
    pub fn feature(self) -> &'static str {
        match self {
            Self::Flex => "flex",
            Self::Ndarray => "ndarray",
            Self::Wgpu => "wgpu",
            Self::Vulkan => "vulkan",
        }
    }
}

/// The float dtype of a model's parameters and activations (`--dtype`). The attention core
/// computes in f32 whatever this is (see `longformer_model::precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats (the default; what the HF parity tests check to 1e-4).
    #[default]
    F32,
    /// IEEE half precision (flex; GPUs with f16).
    F16,
    /// bfloat16 (flex; GPUs with bf16).
    Bf16,
}

impl Precision {
    /// Burn's dtype.
    pub fn float_dtype(self) -> FloatDType {
        match self {
            Self::F32 => FloatDType::F32,
            Self::F16 => FloatDType::F16,
            Self::Bf16 => FloatDType::BF16,
        }
    }

    /// The flag's value (`f32`, `f16`, `bf16`).
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
        }
    }

    /// `module` in this dtype on `device`, or an error naming the dtype and the device.
    pub fn apply<M: burn::module::Module>(self, module: M, device: &Device) -> Result<M> {
        if self == Self::F32 {
            return Ok(module);
        }
        Ok(cast_float_params(module, self.float_dtype(), device)?)
    }
}

/// `device`, started: a GPU runtime that cannot find its adapter (no GPU, no driver, fewer
/// discrete GPUs than `--devices`) panics on its server thread, and the caller's thread then
/// panics on the closed channel. This starts the device under `catch_unwind` with the panic
/// report captured, and answers the runtime's own message as an error instead.
#[cfg(any(feature = "wgpu", feature = "vulkan"))]
fn started(device: Device) -> Result<Device> {
    use std::panic::{self, AssertUnwindSafe};
    use std::sync::{Arc, Mutex};

    let reports = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = Arc::clone(&reports);
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        sink.lock().unwrap_or_else(|e| e.into_inner()).push(message);
    }));
    // Any query that needs the device's client starts its runtime.
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        device.supports_dtype(burn::tensor::DType::F32)
    }));
    panic::set_hook(previous);
    if outcome.is_ok() {
        return Ok(device);
    }
    let reports = reports.lock().unwrap_or_else(|e| e.into_inner());
    // The server thread's report comes first; the caller's is about the closed channel.
    let cause = reports.first().map_or("(no report)", String::as_str);
    bail!("cannot start the GPU device {device:?}: {cause}")
}

#[cfg(all(test, feature = "wgpu"))]
mod tests {
    use super::*;

    #[test]
    fn a_missing_gpu_is_an_error_naming_it_not_a_panic() {
        let missing = Device::wgpu(burn::tensor::DeviceKind::DiscreteGpu(999));
        let err = started(missing).expect_err("no machine has a thousand discrete GPUs");
        let message = format!("{err:#}");
        assert!(message.contains("DiscreteGpu(999)"), "{message}");
    }
}
