//! Checkpoint tensors as raw bytes: reading `.safetensors` and PyTorch `.bin` files, mapping
//! Burn's dtypes to safetensors', and writing `model.safetensors`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::store::{ModuleStore, PytorchStore};
use burn::tensor::DType;
use safetensors::Dtype;

use super::error::{ConvertError, io_error};

/// A tensor of a checkpoint as raw little-endian bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawTensor {
    /// Element type.
    pub dtype: Dtype,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` elements, row-major, little-endian.
    pub data: Vec<u8>,
}

/// Reads every tensor of a `.safetensors` or PyTorch file as raw bytes.
pub fn read_tensors(path: &Path) -> Result<BTreeMap<String, RawTensor>, ConvertError> {
    let bad = |key: &str, message: String| ConvertError::BadTensor {
        path: path.to_path_buf(),
        key: key.to_string(),
        message,
    };
    if path.extension().is_some_and(|e| e == "safetensors") {
        let bytes = std::fs::read(path).map_err(io_error(path))?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| ConvertError::Json {
            path: path.to_path_buf(),
            message: format!("not a safetensors file: {e}"),
        })?;
        Ok(st
            .iter()
            .map(|(name, view)| {
                let tensor = RawTensor {
                    dtype: view.dtype(),
                    shape: view.shape().to_vec(),
                    data: view.data().to_vec(),
                };
                (name.to_string(), tensor)
            })
            .collect())
    } else {
        // The raw PyTorch tensors (PyTorch layout: no transposition happens before `apply`).
        let mut store = PytorchStore::from_file(path).map_indices_contiguous(false);
        let tensors = store.get_all_tensors().map_err(|e| ConvertError::Json {
            path: path.to_path_buf(),
            message: format!("not a readable PyTorch checkpoint: {e}"),
        })?;
        tensors
            .iter()
            .map(|(name, t)| {
                let dtype = safetensors_dtype(t.dtype)
                    .ok_or_else(|| bad(name, format!("unsupported dtype {:?}", t.dtype)))?;
                let data = t.to_bytes().map_err(|e| bad(name, e.to_string()))?;
                let tensor = RawTensor {
                    dtype,
                    shape: t.shape.to_vec(),
                    data: data.to_vec(),
                };
                Ok((name.clone(), tensor))
            })
            .collect()
    }
}

/// The safetensors dtype of a Burn one; `None` for quantized tensors.
fn safetensors_dtype(dtype: DType) -> Option<Dtype> {
    Some(match dtype {
        DType::F64 => Dtype::F64,
        DType::F32 | DType::Flex32 => Dtype::F32,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        DType::I64 => Dtype::I64,
        DType::I32 => Dtype::I32,
        DType::I16 => Dtype::I16,
        DType::I8 => Dtype::I8,
        DType::U64 => Dtype::U64,
        DType::U32 => Dtype::U32,
        DType::U16 => Dtype::U16,
        DType::U8 => Dtype::U8,
        DType::Bool(_) => Dtype::BOOL,
        DType::QFloat(_) => return None,
    })
}

/// Writes `tensors` to the safetensors file `path`, with the `"format": "pt"` metadata.
pub(super) fn write_safetensors(
    tensors: &BTreeMap<String, RawTensor>,
    path: &Path,
) -> Result<(), ConvertError> {
    let views = tensors
        .iter()
        .map(|(key, t)| {
            safetensors::tensor::TensorView::new(t.dtype, t.shape.clone(), &t.data)
                .map(|view| (key.as_str(), view))
                .map_err(|e| ConvertError::BadTensor {
                    path: path.to_path_buf(),
                    key: key.clone(),
                    message: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // transformers reads the "format" entry to know the tensors are PyTorch's.
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let file = safetensors::serialize(views, Some(metadata)).map_err(|e| ConvertError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?;
    crate::output::write_file(path, &file).map_err(|source| ConvertError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The dtypes of `tensors` with their counts, such as `F32 ×197, I64 ×1`.
pub(super) fn dtype_summary(tensors: &BTreeMap<String, RawTensor>) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for t in tensors.values() {
        *counts.entry(format!("{:?}", t.dtype)).or_default() += 1;
    }
    counts
        .iter()
        .map(|(d, n)| format!("{d} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
