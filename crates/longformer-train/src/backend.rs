//! Picking the compute device from `--backend`, among the backends compiled into this binary.

use anyhow::{Result, bail};
use burn::tensor::Device;
use clap::ValueEnum;

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
            Self::Wgpu => Ok(Device::wgpu(Default::default())),
            #[cfg(feature = "vulkan")]
            Self::Vulkan => Ok(Device::vulkan(Default::default())),
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
                Self::Wgpu => Ok((0..n)
                    .map(|i| Device::wgpu(burn::tensor::DeviceKind::DiscreteGpu(i)))
                    .collect()),
                #[cfg(feature = "vulkan")]
                Self::Vulkan => Ok((0..n)
                    .map(|i| Device::vulkan(burn::tensor::DeviceKind::DiscreteGpu(i)))
                    .collect()),
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
