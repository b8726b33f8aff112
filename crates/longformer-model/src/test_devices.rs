//! The devices this crate's unit tests run on, and the deterministic values they fill tensors
//! with.

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

/// Deterministic values in `[-1, 1)` (a xorshift stream from `salt`): the same on every device
/// and in every run.
pub(crate) fn values(n: usize, salt: u64) -> Vec<f32> {
    let mut x = salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}
