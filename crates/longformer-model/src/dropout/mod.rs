//! Dropout whose masks are a function of a seed and each element's position, not of a random
//! generator's state.
//!
//! Burn's [`Dropout::forward`] draws every mask from the device's one generator, so a mask
//! depends on how many draws ran before it. On the GPU backends, whose kernel fusion may run
//! operations that do not depend on each other in another order, that is the order the device
//! happened to run them in, which differs between a fresh process and a resumed one. Here a
//! forward pass takes one [`DropoutSeed`] (from [`LongformerInput::with_dropout_seed`], or
//! one draw from the device's generator); every dropout site derives its own seed from it
//! ([`DropoutSeed::child`]) and keeps element `i` when a hash of that seed and `i` says so. One
//! seed gives the same masks:
//! - in any order of execution and in any process;
//! - on every backend, because the hash uses only integer tensor ops whose results do not depend
//!   on the backend's integer width (32-bit on the GPUs and flex, 64-bit on ndarray).
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use longformer_model::dropout::{DropoutSeed, drop_mask};
//!
//! let device = Device::flex();
//! let seed = DropoutSeed::new(7).child(3);
//! let a = drop_mask([4, 1000], 0.9, seed, &device);
//! let b = drop_mask([4, 1000], 0.9, seed, &device);
//! assert_eq!(a.clone().into_data(), b.into_data());
//! let dropped = a.int().sum().into_scalar::<i64>();
//! assert!((300..500).contains(&dropped)); // about 10% of 4,000
//! ```
//!
//! [`LongformerInput::with_dropout_seed`]: crate::LongformerInput::with_dropout_seed

mod autodiff;
#[cfg(any(feature = "flex", feature = "ndarray"))]
mod cpu;
#[cfg(any(feature = "wgpu", feature = "vulkan"))]
pub(crate) mod cube;
pub mod ops;

use burn::backend::Dispatch;
use burn::nn::Dropout;
use burn::tensor::{Bool, Device, Distribution, Int, Tensor, TensorData};

pub use ops::DropoutMaskOps;

use crate::attention::fused::fused_available;

/// The low 31 bits: every intermediate value of the hash stays in `0..2^31`, where 32- and
/// 64-bit integers agree.
const LOW_31: i64 = 0x7FFF_FFFF;
/// The multiplier of the integer hash (Thomas Mueller's): below 2^27, so its product with a
/// 31-bit value fits 64 bits exactly and 32-bit backends keep the same low 31 bits.
const MIX: i64 = 0x045D_9F3B;
/// Bits of the hash compared with the keep probability.
const KEEP_BITS: u32 = 24;

/// The seed of one forward pass's dropout masks, or of one site's (a layer, a probability
/// tensor) after [`child`](Self::child).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DropoutSeed(u64);

impl DropoutSeed {
    /// A seed of the caller's choosing.
    pub fn new(seed: u64) -> Self {
        Self(splitmix64(seed))
    }

    /// One seed from `device`'s random generator (so [`Device::seed`] makes it repeatable):
    /// 30 bits, from two draws of 15 (Burn draws integers through f32, whose 24-bit mantissa
    /// would leave one draw of 30 bits only 2^24 distinct values). Waits for the device to
    /// produce it.
    pub fn draw(device: &Device) -> Self {
        let halves: Vec<i64> =
            Tensor::<1, Int>::random([2], Distribution::Uniform(0.0, 32_768.0), device)
                .into_data()
                .iter::<i64>()
                .collect();
        Self::new(((halves[0] as u64) << 15) | halves[1] as u64)
    }

    /// The seed of part `index` of what `self` seeds: distinct indices give unrelated seeds.
    pub fn child(self, index: u64) -> Self {
        Self(splitmix64(
            self.0 ^ splitmix64(index.wrapping_add(0x6A09_E667_F3BC_C909)),
        ))
    }

    /// The seed as a non-negative 31-bit integer: the key of [`drop_mask`]'s hash, and the
    /// seed the fused attention kernels hash band positions with.
    pub fn key(self) -> i64 {
        (self.0 >> 33) as i64
    }

    /// [`key`](Self::key) as a `[1]` tensor on `device`, for the ops that hash with it there.
    pub fn key_tensor(self, device: &Device) -> Tensor<1, Int> {
        Tensor::from_data(TensorData::new(vec![self.key()], [1]), device)
    }
}

impl From<u64> for DropoutSeed {
    fn from(seed: u64) -> Self {
        Self::new(seed)
    }
}

/// `true` where an element of a `shape` tensor is dropped: each is kept with probability
/// `keep` (in steps of 2^-24), by a hash of `seed` and the element's row and column (the last
/// axis is the column, the others together the row).
///
/// # Shapes
/// - output: `shape`, at most 2^31 - 1 rows and columns
///
/// # Panics
/// If `keep` is not in `0..=1` or `shape` has 2^31 rows or columns or more.
pub fn drop_mask<const D: usize>(
    shape: [usize; D],
    keep: f64,
    seed: DropoutSeed,
    device: &Device,
) -> Tensor<D, Bool> {
    assert!((0.0..=1.0).contains(&keep), "keep probability {keep}");
    let (rows, cols) = mask_rows_cols(&shape);
    let row = positions(rows, device).reshape([rows, 1]);
    let col = positions(cols, device).reshape([1, cols]);
    // Rows first (a small tensor), then each row's hash with the column.
    let row_hash = hash31(row.bitwise_xor_scalar(seed.key())).expand([rows, cols]);
    let bits = hash31(row_hash.bitwise_xor(col.expand([rows, cols])))
        .bitwise_and_scalar((1i64 << KEEP_BITS) - 1);
    bits.greater_equal_elem(keep_threshold(keep)).reshape(shape)
}

/// The dropout factor of every element of a `shape` tensor: `1 / keep` where [`drop_mask`]
/// keeps it, `0` where it drops it (the same elements), f32. Generated in one pass
/// ([`DropoutMaskOps`]) on the backends this crate is built with, else from [`drop_mask`].
///
/// # Shapes
/// - output: `shape`
///
/// # Panics
/// As [`drop_mask`]; also if `keep` is 0 (every element dropped: no factor).
pub fn keep_scale<const D: usize>(
    shape: [usize; D],
    keep: f64,
    seed: DropoutSeed,
    device: &Device,
) -> Tensor<D> {
    assert!(keep > 0.0 && keep <= 1.0, "keep probability {keep}");
    if !fused_available(device) {
        return Tensor::full(shape, 1.0 / keep, device)
            .mask_fill(drop_mask(shape, keep, seed, device), 0.0);
    }
    let (rows, cols) = mask_rows_cols(&shape);
    let (threshold, scale) = keep_threshold_and_scale(keep);
    let factors = <Dispatch as DropoutMaskOps>::dropout_keep_scale(
        seed.key_tensor(device).into_dispatch(),
        rows,
        cols,
        threshold as usize,
        scale,
    );
    Tensor::<2>::from_dispatch(factors).reshape(shape)
}

/// The rows and columns of a mask of `shape`: the last axis is the column, the others together
/// the row.
///
/// # Panics
/// Unless the hash can number them (31 bits each).
fn mask_rows_cols(shape: &[usize]) -> (usize, usize) {
    let (&cols, leading) = shape.split_last().expect("a mask has at least one axis");
    let rows: usize = leading.iter().product();
    assert!(
        rows as i64 <= LOW_31 && cols as i64 <= LOW_31,
        "a dropout mask of {rows} rows and {cols} columns: at most 2^31 - 1 of each"
    );
    (rows, cols)
}

/// Hash values below this are kept: `keep` in steps of 2^-24.
fn keep_threshold(keep: f64) -> i64 {
    (keep * (1u64 << KEEP_BITS) as f64).round() as i64
}

/// What [`keep_scale`] compares and writes for keep probability `keep` (in `(0, 1]`): the
/// threshold a kept element's hash is under, and the factor it gets (`1 / keep`). Ops that hash
/// masks themselves take these to drop exactly what [`keep_scale`] does.
pub(crate) fn keep_threshold_and_scale(keep: f64) -> (u32, f32) {
    (keep_threshold(keep) as u32, (1.0 / keep) as f32)
}

/// The first half of the hash of a mask's element: its row's, for seed key `key` (shared by
/// the row's columns; [`keep_factor`] finishes it).
#[cfg_attr(
    not(any(test, feature = "flex", feature = "ndarray")),
    allow(dead_code)
)]
pub(crate) fn mask_row_hash(key: i64, row: usize) -> i64 {
    hash31_scalar(row as i64 ^ key)
}

/// Element `(row, col)` of [`keep_scale`]'s factors, from the row's [`mask_row_hash`] (the CPU
/// ops' form of what `dropout/cube.rs`'s `keep_factor` computes in a kernel).
#[cfg_attr(
    not(any(test, feature = "flex", feature = "ndarray")),
    allow(dead_code)
)]
pub(crate) fn keep_factor(row_hash: i64, col: usize, (threshold, scale): (u32, f32)) -> f32 {
    let bits = hash31_scalar(row_hash ^ col as i64) & ((1 << KEEP_BITS) - 1);
    if bits < i64::from(threshold) {
        scale
    } else {
        0.0
    }
}

/// `0..n` as a `[n]` tensor, from the host. Not Burn's `arange`: on the GPU backends it is
/// fusion's `cumsum` of ones, a kernel whose every element sums all those before it (Burn
/// 0.22.1), and which on the software GPU, whose shader loops stop after 65,535 iterations,
/// repeats 65,534 from index 65,535 on. The host sends only `rows + cols` integers per mask,
/// not their product.
fn positions(n: usize, device: &Device) -> Tensor<1, Int> {
    Tensor::from_data(
        TensorData::new((0..n as i64).collect::<Vec<_>>(), [n]),
        device,
    )
}

/// [`Dropout::forward`] with the mask from [`drop_mask`] and `seed`: `x` itself unless
/// `dropout` takes part in training (see [`active_dropout`]); kept elements are scaled by
/// `1 / (1 - prob)`.
///
/// # Shapes
/// - x, output: any
pub fn seeded_dropout<const D: usize>(
    dropout: &Dropout,
    x: Tensor<D>,
    seed: DropoutSeed,
) -> Tensor<D> {
    let device = x.device();
    let prob = active_dropout(dropout, &device);
    if prob == 0.0 {
        return x;
    }
    let keep = 1.0 - prob;
    if keep > 0.0 && fused_available(&device) {
        // One multiply, which a GPU's kernel fusion joins to the ops around it; the backward
        // pass makes the mask again from the seed.
        mask_rows_cols(&x.dims());
        let (threshold, scale) = keep_threshold_and_scale(keep);
        let out = <Dispatch as DropoutMaskOps>::seeded_dropout_apply(
            x.into_dispatch(),
            seed.key_tensor(&device).into_dispatch(),
            threshold as usize,
            scale,
        );
        return Tensor::from_dispatch(out);
    }
    let dropped = drop_mask(x.dims(), keep, seed, &device);
    x.mask_fill(dropped, 0.0) * (1.0 / keep)
}

/// The probability `dropout` drops with on `device`: its own when it takes part in training
/// (its training flag set, on an autodiff device, as [`Dropout::forward`] decides), else 0.
pub fn active_dropout(dropout: &Dropout, device: &Device) -> f64 {
    if dropout.training.is_enabled() && device.is_autodiff() {
        dropout.prob
    } else {
        0.0
    }
}

/// A 31-bit integer hash, elementwise: values in `0..2^31` to values in `0..2^31`, the same on
/// 32- and 64-bit integer backends (each product is cut to its low 31 bits, which a 32-bit
/// backend's wrapping product has right).
fn hash31<const D: usize>(x: Tensor<D, Int>) -> Tensor<D, Int> {
    let x = x.clone().bitwise_xor(x.bitwise_right_shift_scalar(16));
    let x = (x * MIX).bitwise_and_scalar(LOW_31);
    let x = x.clone().bitwise_xor(x.bitwise_right_shift_scalar(16));
    let x = (x * MIX).bitwise_and_scalar(LOW_31);
    x.clone().bitwise_xor(x.bitwise_right_shift_scalar(16))
}

/// [`hash31`] of one value, on the host.
#[cfg_attr(
    not(any(test, feature = "flex", feature = "ndarray")),
    allow(dead_code)
)]
fn hash31_scalar(x: i64) -> i64 {
    let x = x ^ (x >> 16);
    let x = (x * MIX) & LOW_31;
    let x = x ^ (x >> 16);
    let x = (x * MIX) & LOW_31;
    x ^ (x >> 16)
}

/// SplitMix64's output function: a bijection of `u64` that mixes every bit into every bit.
fn splitmix64(x: u64) -> u64 {
    let x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_devices::devices;
    use burn::tensor::DType;

    fn host_mask(rows: usize, cols: usize, keep: f64, seed: DropoutSeed) -> Vec<bool> {
        let threshold = (keep * (1u64 << KEEP_BITS) as f64).round() as i64;
        (0..rows as i64)
            .flat_map(|r| {
                let row_hash = hash31_scalar(r ^ seed.key());
                (0..cols as i64)
                    .map(move |c| hash31_scalar(row_hash ^ c) & ((1 << KEEP_BITS) - 1) >= threshold)
            })
            .collect()
    }

    fn mask_of(shape: [usize; 3], keep: f64, seed: DropoutSeed, device: &Device) -> Vec<bool> {
        drop_mask(shape, keep, seed, device)
            .into_data()
            .iter::<bool>()
            .collect()
    }

    /// Every backend gives the host's mask bit for bit, whatever its integer width (products
    /// overflow 32 bits); rows and columns past 65,535 included.
    #[test]
    fn every_backend_gives_the_host_mask() {
        let seed = DropoutSeed::new(2024).child(5);
        for shape in [[3, 40_000, 7], [1, 2, 70_000]] {
            let expected = host_mask(shape[0] * shape[1], shape[2], 0.9, seed);
            for device in devices() {
                let got = mask_of(shape, 0.9, seed, &device);
                let differ = got.iter().zip(&expected).filter(|(a, b)| a != b).count();
                assert_eq!(
                    differ, 0,
                    "{device:?}, {shape:?}: {differ} elements differ from the host"
                );
            }
        }
    }

    /// [`keep_scale`] on every backend is `1 / keep` where the host's mask keeps an element and
    /// 0 where it drops it, bit for bit; the last shape has more elements than one grid
    /// dimension of 65,535 cubes of 256 units covers.
    #[test]
    fn every_backend_gives_the_host_factors() {
        let seed = DropoutSeed::new(77).child(2);
        let keep = 0.85;
        for shape in [[3, 40_000, 7], [1, 2, 70_000], [1, 4_100, 4_100]] {
            let expected: Vec<f32> = host_mask(shape[0] * shape[1], shape[2], keep, seed)
                .into_iter()
                .map(|dropped| if dropped { 0.0 } else { (1.0 / keep) as f32 })
                .collect();
            for device in devices() {
                for device in [device.clone(), device.autodiff()] {
                    let got: Vec<f32> = keep_scale(shape, keep, seed, &device)
                        .into_data()
                        .iter::<f32>()
                        .collect();
                    let differ = got.iter().zip(&expected).filter(|(a, b)| a != b).count();
                    assert_eq!(
                        (got.len(), differ),
                        (expected.len(), 0),
                        "{device:?}, {shape:?}: {differ} factors differ from the host's"
                    );
                }
            }
        }
    }

    /// In training, [`seeded_dropout`] (one multiply by the mask's factors) gives what the mask
    /// gives (`mask_fill`, then the scale), and the same gradient, whose mask the backward pass
    /// makes again from the seed: in f32 on every backend, in f16 and bf16 where the backend
    /// computes in them.
    #[test]
    fn seeded_dropout_multiplies_by_the_masks_factors() {
        let dropout = burn::nn::DropoutConfig::new(0.2).init();
        let seed = DropoutSeed::new(31).child(4);
        for device in devices() {
            let device = device.autodiff();
            for dtype in [DType::F32, DType::F16, DType::BF16] {
                if !device.supports_dtype(dtype) {
                    continue;
                }
                let tensor = |salt| {
                    let values = crate::test_devices::values(37 * 300, salt);
                    Tensor::<2>::from_data(TensorData::new(values, [37, 300]), &device).cast(dtype)
                };
                let x = tensor(5).require_grad();
                let ours = seeded_dropout(&dropout, x.clone(), seed);
                let masked = x
                    .clone()
                    .mask_fill(drop_mask([37, 300], 0.8, seed, &device), 0.0)
                    * 1.25;
                assert_eq!(ours.dtype(), dtype);
                let read = |t: Tensor<2>| t.into_data().iter::<f32>().collect::<Vec<_>>();
                assert_eq!(
                    read(ours.clone()),
                    read(masked.clone()),
                    "{device:?}, {dtype:?}"
                );
                let c = tensor(6);
                let grad = |y: Tensor<2>| {
                    let grads = (y * c.clone()).sum().backward();
                    read(x.grad(&grads).expect("x has a gradient"))
                };
                assert_eq!(grad(ours), grad(masked), "{device:?}, {dtype:?}: gradients");
            }
        }
    }

    /// The dropped share is the probability, every seed and site gives its own mask, and rows
    /// and columns are not copies of each other.
    #[test]
    fn masks_drop_their_share_independently() {
        let device = Device::flex();
        let base = DropoutSeed::new(1);
        let masks: Vec<Vec<bool>> = [base, base.child(0), base.child(1), DropoutSeed::new(2)]
            .into_iter()
            .map(|seed| mask_of([2, 300, 500], 0.75, seed, &device))
            .collect();
        for mask in &masks {
            let dropped = mask.iter().filter(|&&d| d).count() as f64 / mask.len() as f64;
            assert!((dropped - 0.25).abs() < 0.005, "dropped {dropped}");
        }
        for (i, a) in masks.iter().enumerate() {
            for b in &masks[i + 1..] {
                let same = a.iter().zip(b).filter(|(x, y)| x == y).count() as f64;
                // Independent masks agree on 0.75² + 0.25² = 62.5% of elements.
                assert!((same / a.len() as f64 - 0.625).abs() < 0.01, "{same}");
            }
        }
        let rows: Vec<&[bool]> = masks[0].chunks(500).collect();
        let distinct: std::collections::HashSet<&[bool]> = rows.iter().copied().collect();
        assert_eq!(distinct.len(), rows.len());
        assert!(mask_of([1, 1, 1000], 1.0, base, &device).iter().all(|d| !d));
    }

    /// A mask does not depend on what the device's generator did before: the same seed after
    /// other draws, or after reseeding the generator, gives the same output.
    #[test]
    fn seeded_dropout_ignores_the_generator() {
        for plain_device in devices() {
            let device = plain_device.clone().autodiff();
            let dropout = burn::nn::DropoutConfig::new(0.3).init();
            let x = Tensor::<2>::ones([64, 64], &device);
            let seed = DropoutSeed::new(9);
            device.seed(1);
            let a = seeded_dropout(&dropout, x.clone(), seed);
            device.seed(2);
            let _other = Tensor::<2>::random([100], Distribution::Default, &device);
            let b = seeded_dropout(&dropout, x.clone(), seed);
            assert_eq!(a.clone().into_data(), b.into_data(), "{device:?}");
            let values: Vec<f32> = a.into_data().iter::<f32>().collect();
            assert!(
                values
                    .iter()
                    .all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-6)
            );
            assert!(values.contains(&0.0));
            // Not training (no autodiff): the input itself.
            let plain = Tensor::<2>::ones([4, 4], &plain_device);
            let kept = seeded_dropout(&dropout, plain.clone(), seed);
            assert_eq!(kept.into_data(), plain.into_data());
        }
    }

    #[test]
    fn keys_are_31_bits_and_children_differ() {
        let seed = DropoutSeed::new(0);
        let keys: std::collections::HashSet<i64> = (0..1000).map(|i| seed.child(i).key()).collect();
        assert_eq!(keys.len(), 1000);
        assert!(keys.iter().all(|k| (0..=LOW_31).contains(k)));
        assert_ne!(DropoutSeed::new(0), DropoutSeed::new(1));
    }
}
