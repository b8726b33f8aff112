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

/// Panics unless every tensor of `ours` has its counterpart's length in `expected` and every
/// element within `tolerance` times the larger of 1 and the counterpart's largest magnitude.
/// `names` name the tensors and `case` the case in the message.
pub(crate) fn assert_all_close(
    names: &[&str],
    ours: &[Vec<f32>],
    expected: &[Vec<f32>],
    tolerance: f32,
    case: &str,
) {
    for (what, (a, b)) in names.iter().zip(ours.iter().zip(expected)) {
        assert_eq!(a.len(), b.len(), "{case}: {what}");
        let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
        for (i, (p, q)) in a.iter().zip(b).enumerate() {
            assert!(
                (p - q).abs() <= tolerance * scale,
                "{case}: {what}[{i}] {p} vs {q}"
            );
        }
    }
}
