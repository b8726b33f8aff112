//! Shared helpers of the workspace tests: the backends under test, HF fixtures, comparisons, and
//! a dense (`n × n`) reference of Longformer attention that only tests use.

pub mod dense_reference;
pub mod gradients;
pub mod head_fixture;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};

/// Largest absolute difference accepted against HF float32 outputs.
pub const PARITY_TOLERANCE: f32 = 1e-4;

/// The backends every numeric test runs on: `flex`, `ndarray`, and `wgpu` (a software GPU in CI:
/// Mesa llvmpipe through wgpu's GL backend). Set `LONGFORMER_SKIP_WGPU=1` on a machine with no
/// GPU driver at all.
#[allow(deprecated)] // ndarray is deprecated in Burn 0.22 but still a supported backend here
pub fn devices() -> Vec<(&'static str, Device)> {
    let mut devices = vec![("flex", Device::flex()), ("ndarray", Device::ndarray())];
    if std::env::var("LONGFORMER_SKIP_WGPU").map_or(true, |v| v != "1") {
        devices.push(("wgpu", Device::wgpu(Default::default())));
    }
    devices
}

/// `tests/fixtures` (made by `scripts/gen_fixtures.py`).
///
/// Read from the run-time `CARGO_MANIFEST_DIR` that `cargo test` sets: a test binary reused from
/// a build of another checkout (a shared target directory) still reads this checkout's fixtures.
pub fn fixtures_dir() -> PathBuf {
    manifest_dir().join("fixtures")
}

/// A scratch copy of the fixture directory `case`, which a test may change; `tag` names it
/// (unique per test), the process id keeps parallel runs apart. Removed when dropped.
pub fn scratch_copy(case: &str, tag: &str) -> ScratchDir {
    let dir = std::env::temp_dir().join(format!("longformer-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let dir = ScratchDir(dir);
    for entry in std::fs::read_dir(fixtures_dir().join(case)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    dir
}

/// A test's directory under the system's temp dir, removed with what it holds when dropped (at
/// the end of the test, passed or failed), so test runs leave nothing behind.
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl std::ops::Deref for ScratchDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for ScratchDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf())
}

/// A tensor read from a fixture file, as f32 or i64 values plus its shape.
#[derive(Debug, Clone)]
pub struct HostTensor {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values as f64 (exact for f32 and small ints).
    pub values: Vec<f64>,
}

impl HostTensor {
    /// Rows of an integer tensor: its last dimension's (a 3-D tensor flattened to
    /// `[batch * choices, seq]`).
    pub fn rows_i64(&self) -> Vec<Vec<i64>> {
        let width = *self.shape.last().expect("a tensor with rows");
        self.values
            .chunks(width)
            .map(|r| r.iter().map(|v| *v as i64).collect())
            .collect()
    }

    /// The values as a float tensor of this shape on `device`.
    ///
    /// # Panics
    /// When the shape has another rank than `D`.
    pub fn float_tensor<const D: usize>(&self, device: &Device) -> Tensor<D> {
        let values: Vec<f32> = self.values.iter().map(|&v| v as f32).collect();
        Tensor::from_data(TensorData::new(values, self.dims::<D>()), device)
    }

    /// The values as an integer tensor of this shape on `device`.
    ///
    /// # Panics
    /// When the shape has another rank than `D`.
    pub fn int_tensor<const D: usize>(&self, device: &Device) -> Tensor<D, Int> {
        let values: Vec<i64> = self.values.iter().map(|&v| v as i64).collect();
        Tensor::from_data(TensorData::new(values, self.dims::<D>()), device)
    }

    fn dims<const D: usize>(&self) -> [usize; D] {
        self.shape
            .clone()
            .try_into()
            .unwrap_or_else(|shape| panic!("shape {shape:?} is not of rank {D}"))
    }
}

/// Every tensor of a safetensors file (F32 or I64).
pub fn read_safetensors(path: &Path) -> HashMap<String, HostTensor> {
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let data = view.data();
            let values = match view.dtype() {
                safetensors::Dtype::F32 => data
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                    .collect(),
                safetensors::Dtype::I64 => data
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
                    .collect(),
                other => panic!("{name}: unexpected dtype {other:?}"),
            };
            (
                name,
                HostTensor {
                    shape: view.shape().to_vec(),
                    values,
                },
            )
        })
        .collect()
}

/// Largest absolute difference between a tensor and expected values of the same shape.
pub fn max_abs_diff<const D: usize>(actual: Tensor<D>, expected: &HostTensor) -> f32 {
    assert_eq!(actual.dims().to_vec(), expected.shape, "shape mismatch");
    actual
        .into_data()
        .iter::<f32>()
        .zip(&expected.values)
        .map(|(a, e)| (a - *e as f32).abs())
        .fold(0.0, f32::max)
}

/// Largest absolute difference between two tensors of the same shape.
pub fn max_abs_diff_tensors<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    (a - b).abs().max().into_scalar::<f32>()
}

/// A `[rows, cols]` float tensor from host values.
pub fn tensor2(values: Vec<f32>, shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Two rows of 40 and 27 tokens (ids in `3..93`), the second padded; global tokens every 13th
/// token of the first row (pad id 1).
pub fn two_row_input(device: &Device) -> longformer_model::LongformerInput {
    let lengths = [40usize, 27];
    let rows: Vec<Vec<i64>> = lengths
        .iter()
        .enumerate()
        .map(|(b, &n)| (0..n).map(|t| 3 + ((t * 31 + b * 7) % 90) as i64).collect())
        .collect();
    let globals: Vec<Vec<i64>> = lengths
        .iter()
        .enumerate()
        .map(|(b, &n)| (0..n).map(|t| i64::from(b == 0 && t % 13 == 0)).collect())
        .collect();
    longformer_model::LongformerInput::from_rows(&rows, None, Some(&globals), 1, device)
}

/// The README's Rust examples, compiled by `cargo test` as doctests of this crate (`no_run`: they
/// name checkpoints that are not in the repository), so that they keep up with the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeExamples;
