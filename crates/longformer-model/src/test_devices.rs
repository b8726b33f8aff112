//! The devices this crate's unit tests run on.

use burn::tensor::Device;

/// Every backend of this build: flex, ndarray (the one with 64-bit integers), and the software
/// GPU unless `LONGFORMER_SKIP_WGPU=1`.
#[allow(deprecated)] // Device::ndarray: Burn 0.22 deprecates it; it is still one of our backends
pub(crate) fn devices() -> Vec<Device> {
    #[allow(unused_mut)]
    let mut devices = vec![Device::flex()];
    #[cfg(feature = "ndarray")]
    devices.push(Device::ndarray());
    #[cfg(any(feature = "wgpu", feature = "vulkan"))]
    if std::env::var("LONGFORMER_SKIP_WGPU").map_or(true, |v| v != "1") {
        devices.push(Device::wgpu(Default::default()));
    }
    devices
}
