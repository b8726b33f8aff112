//! [`ConvertError`]: why a conversion failed, naming the file (and key) at fault.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a conversion failed; every variant names the file (and key) at fault.
#[derive(Debug)]
pub enum ConvertError {
    /// `--max-pos` or `--window` is unusable.
    Options(String),
    /// A file or directory could not be read or written.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON file is malformed or lacks a needed key.
    Json {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The source directory holds no weights.
    NoWeights(PathBuf),
    /// The source is not a RoBERTa checkpoint this recipe applies to.
    NotRoberta {
        /// The file that shows it.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A tensor the conversion needs is absent.
    MissingKey {
        /// The weight file.
        path: PathBuf,
        /// The missing key.
        key: String,
    },
    /// A tensor cannot be read or has an unusable shape or dtype.
    BadTensor {
        /// The weight file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The output directory exists and is not empty (use `force`), or is the source itself.
    OutputExists(PathBuf),
    /// The converted configuration would not load.
    Config(longformer_model::ConfigError),
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Options(message) => write!(f, "{message}"),
            Self::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Self::Json { path, message } => write!(f, "{}: {message}", path.display()),
            Self::NoWeights(dir) => write!(
                f,
                "{}: no model.safetensors or pytorch_model.bin",
                dir.display()
            ),
            Self::NotRoberta { path, reason } => {
                write!(f, "{}: not a RoBERTa checkpoint: {reason}", path.display())
            }
            Self::MissingKey { path, key } => {
                write!(f, "{}: missing tensor {key}", path.display())
            }
            Self::BadTensor { path, key, message } => {
                write!(f, "{}: tensor {key}: {message}", path.display())
            }
            Self::OutputExists(dir) => write!(
                f,
                "output directory {} exists and is not empty (pass --force to write into it)",
                dir.display()
            ),
            Self::Config(e) => write!(f, "the converted config.json would not load: {e}"),
        }
    }
}

impl std::error::Error for ConvertError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::Config(e) => Some(e),
            _ => None,
        }
    }
}

/// Maps an I/O error on `path` to [`ConvertError::Io`].
pub(super) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ConvertError + '_ {
    move |source| ConvertError::Io {
        path: path.to_path_buf(),
        source,
    }
}
