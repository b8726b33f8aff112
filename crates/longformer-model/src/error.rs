//! Error types of the model crate. Every variant carries the evidence: the file, key or value.
//! Messages are whole: a variant that wraps another error prints it and does not also report it
//! as its `source()`, so that error chains (`anyhow`'s `Caused by:`) do not print it twice.

use std::path::PathBuf;

/// A `config.json` that cannot be read or describes an impossible model.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {error}")]
    Io {
        /// The config file.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// Not JSON, or a required key is missing or of the wrong type.
    #[error("malformed config JSON: {0}")]
    Json(String),
    /// The values are inconsistent (odd window, heads not dividing hidden size, ...).
    #[error("invalid config: {0}")]
    Invalid(String),
    /// One of the above, in a named file.
    #[error("{path}: {error}")]
    InFile {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        error: Box<ConfigError>,
    },
}

impl ConfigError {
    pub(crate) fn in_file(self, path: &std::path::Path) -> Self {
        match self {
            e @ (Self::Io { .. } | Self::InFile { .. }) => e,
            e => Self::InFile {
                path: path.to_path_buf(),
                error: Box::new(e),
            },
        }
    }
}

/// Inputs the model cannot encode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// A row has more non-padding tokens than the position embedding can number. Like HF, only
    /// ids other than `pad_token_id` take a position, so explicit padding does not count.
    #[error(
        "row {row}: sequence length {length} exceeds the model's maximum of {max} tokens \
         (not counting pad_token_id; max_position_embeddings - pad_token_id - 1); split or \
         truncate the input"
    )]
    TooLong {
        /// Batch row.
        row: usize,
        /// Tokens of the row whose id is not `pad_token_id`.
        length: usize,
        /// The model's maximum.
        max: usize,
    },
    /// A mask does not have the shape of `input_ids`.
    #[error("{mask} has shape {found:?} but input_ids has shape {expected:?}")]
    MaskShape {
        /// Which mask.
        mask: &'static str,
        /// Shape of `input_ids`.
        expected: [usize; 2],
        /// Shape of the mask.
        found: [usize; 2],
    },
    /// A mask given as rows ([`LongformerInput::try_from_rows`](crate::LongformerInput::try_from_rows))
    /// with more or fewer rows than `input_ids`.
    #[error("{mask} has {found} row(s) but input_ids has {expected}")]
    MaskRowCount {
        /// Which mask.
        mask: &'static str,
        /// Rows of `input_ids`.
        expected: usize,
        /// Rows of the mask.
        found: usize,
    },
    /// A mask row ([`LongformerInput::try_from_rows`](crate::LongformerInput::try_from_rows))
    /// longer or shorter than its row of `input_ids`. Id rows may be ragged (they are padded),
    /// so each mask row must be as long as its own id row.
    #[error("{mask} row {row} has {found} value(s) but input_ids row {row} has {expected}")]
    MaskRowLength {
        /// Which mask.
        mask: &'static str,
        /// Batch row.
        row: usize,
        /// Length of the id row.
        expected: usize,
        /// Length of the mask row.
        found: usize,
    },
    /// A multiple-choice mask
    /// ([`MultipleChoiceInput::from_tensors`](crate::heads::MultipleChoiceInput::from_tensors))
    /// that does not have the shape of `input_ids`.
    #[error("{mask} has shape {found:?} but input_ids has shape {expected:?}")]
    ChoiceMaskShape {
        /// Which mask.
        mask: &'static str,
        /// Shape of `input_ids`, `[batch_size, n_choices, seq_length]`.
        expected: [usize; 3],
        /// Shape of the mask.
        found: [usize; 3],
    },
    /// An empty batch or an empty sequence.
    #[error("input_ids has shape {0:?}; batch and sequence must be non-empty")]
    Empty([usize; 2]),
    /// A token id outside the vocabulary.
    #[error("token id {id} at [{row}, {col}] is outside the vocabulary of {vocab_size}")]
    TokenOutOfRange {
        /// Batch row.
        row: usize,
        /// Position.
        col: usize,
        /// The offending id.
        id: i64,
        /// Rows of the word embedding.
        vocab_size: usize,
    },
    /// An id too large (or negative) for any vocabulary: the model's integer tensors could not
    /// hold it.
    #[error("token id {id} at [{row}, {col}] is not a token id (ids are 0 to 2147483647)")]
    TokenIdRange {
        /// Batch row.
        row: usize,
        /// Position.
        col: usize,
        /// The offending id.
        id: i64,
    },
    /// A token type id outside the token-type embedding.
    #[error(
        "token type id {id} at [{row}, {col}] is outside the type_vocab_size of {type_vocab_size}"
    )]
    TokenTypeOutOfRange {
        /// Batch row.
        row: usize,
        /// Position.
        col: usize,
        /// The offending id.
        id: i64,
        /// Rows of the token-type embedding.
        type_vocab_size: usize,
    },
    /// A mask given as integers holds a value other than 0 and 1. HF reads such values in its
    /// own way (an `attention_mask` of 2 is global, a `global_attention_mask` of 2 is local, -1
    /// is padding), so they are refused rather than guessed.
    #[error("{mask} at [{row}, {col}] is {value}; masks hold only 0 and 1")]
    MaskValue {
        /// Which mask.
        mask: &'static str,
        /// Batch row.
        row: usize,
        /// Position.
        col: usize,
        /// The offending value.
        value: i64,
    },
    /// The default global attention of question answering or multiple choice needs exactly
    /// three separator tokens per row (`<s> question </s></s> context </s>`), as in HF.
    #[error(
        "row {row} has {found} separator token(s) (id {sep_token_id}) but the default global \
         attention of {task} needs exactly 3 per row (`<s> question </s></s> context </s>`); \
         lay the row out that way or pass a global_attention_mask"
    )]
    Separators {
        /// Batch row (for multiple choice, `example * n_choices + choice`).
        row: usize,
        /// How many separator tokens the row has.
        found: usize,
        /// The separator id (`sep_token_id` of the config).
        sep_token_id: i64,
        /// The task whose default needs them.
        task: &'static str,
    },
    /// Mask filling on an input without a mask token.
    #[error("the input has no mask token (id {mask_token_id}) to fill")]
    NoMaskToken {
        /// The mask token id looked for.
        mask_token_id: i64,
    },
    /// [`LocalAttentionKernel::Fused`](crate::LocalAttentionKernel::Fused) on a device without
    /// the fused kernel.
    #[error(
        "the model is set to the fused local-attention op, which this build has for flex, \
         ndarray, wgpu and vulkan devices, but the input is on {device}; use \
         LocalAttentionKernel::Auto or Reference"
    )]
    NoFusedKernel {
        /// The input's device.
        device: String,
    },
    /// Activation checkpointing was asked of an input on a device without autodiff: the pass
    /// exists to be back-propagated.
    #[error(
        "activation checkpointing is for training passes, but the input is on {device}, which \
         has no autodiff: put the model and its input on `device.autodiff()`, or use the plain \
         forward pass for inference"
    )]
    NoAutodiff {
        /// The input's device.
        device: String,
    },
    /// The device cannot compute in the requested float dtype.
    #[error(
        "{device} cannot compute in {dtype}; of the half types it has {available}. Use F32, a \
         half type it has, or another device (flex has F16 and BF16, ndarray neither, GPUs \
         through Vulkan or WGSL at most F16)"
    )]
    UnsupportedDType {
        /// The requested dtype.
        dtype: String,
        /// The device.
        device: String,
        /// The half types the device has: `F16`, `BF16`, `F16 and BF16` or `neither`.
        available: String,
    },
    /// A class label (or answer position) outside the head's classes that is not the ignored
    /// value.
    #[error(
        "{what} labels[{index}] is {label}; labels must be in 0..{classes}, or {ignore_index} \
         (ignored)"
    )]
    LabelOutOfRange {
        /// The head and loss (`"sequence classification"`, `"masked LM"`, ...).
        what: &'static str,
        /// The label's place in the flattened labels.
        index: usize,
        /// The offending label.
        label: i64,
        /// How many classes the logits have.
        classes: usize,
        /// The label value that is ignored.
        ignore_index: i64,
    },
    /// Labels (or targets) whose shape does not fit the logits.
    #[error("{what} labels have shape {found:?} but the loss needs {expected:?}")]
    LabelShape {
        /// The head and loss.
        what: &'static str,
        /// The shape the logits call for.
        expected: Vec<usize>,
        /// The labels' shape.
        found: Vec<usize>,
    },
    /// A multiple-choice batch whose rows do not split into whole examples.
    #[error("{rows} row(s) do not split into examples of {n_choices} choice(s)")]
    ChoiceCount {
        /// Rows of the flattened batch.
        rows: usize,
        /// Choices per example.
        n_choices: usize,
    },
}

/// A checkpoint directory that cannot be loaded into a [`LongformerModel`](crate::LongformerModel).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `config.json` is missing or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Neither `model.safetensors` nor `pytorch_model.bin` (nor a sharded checkpoint's index,
    /// `model.safetensors.index.json` or `pytorch_model.bin.index.json`) is in the directory.
    #[error(
        "no model.safetensors or pytorch_model.bin (nor a sharded checkpoint's \
         model.safetensors.index.json or pytorch_model.bin.index.json) in {0}"
    )]
    NoWeights(PathBuf),
    /// The weight file could not be read or parsed.
    #[error("cannot read weights from {path}: {message}")]
    Read {
        /// The weight file.
        path: PathBuf,
        /// What the reader said.
        message: String,
    },
    /// The model needs tensors that the file does not have.
    #[error("{path} lacks {} tensor(s) the model needs: {}", keys.len(), keys.join(", "))]
    MissingKeys {
        /// The weight file.
        path: PathBuf,
        /// Checkpoint keys (HF names) that are absent.
        keys: Vec<String>,
    },
    /// The file has tensors the model does not know (and that are not known head weights).
    #[error("{path} has {} unexpected tensor(s): {}", keys.len(), keys.join(", "))]
    UnexpectedKeys {
        /// The weight file.
        path: PathBuf,
        /// The unknown keys, as written in the file.
        keys: Vec<String>,
    },
    /// A tensor has the wrong shape or dtype.
    #[error("{path}: tensor {key}: {message}")]
    BadTensor {
        /// The weight file.
        path: PathBuf,
        /// The checkpoint key.
        key: String,
        /// Expected versus found.
        message: String,
    },
}

impl LoadError {
    /// A [`LoadError::Config`] as an error of the config file at `path`; others unchanged.
    pub(crate) fn config_in_file(self, path: &std::path::Path) -> Self {
        match self {
            Self::Config(e) => Self::Config(e.in_file(path)),
            e => e,
        }
    }
}

/// A model that cannot be written as a HuggingFace checkpoint directory
/// ([`save_pretrained`](crate::save_pretrained), [`save_head`](crate::save_head)).
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// The config is invalid, or cannot describe the head (question answering with
    /// `num_labels` other than 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The config does not describe the model: a tensor that one has and the other lacks or
    /// shapes differently, or another window or head count. `transformers` (and our loader)
    /// would build a different model from the saved `config.json`, so nothing is written.
    #[error("cannot save to {dir}: the config does not describe the model: {message}")]
    ConfigMismatch {
        /// The checkpoint directory.
        dir: PathBuf,
        /// The differences, by module path, in Burn's layout (`[d_in, d_out]` linear weights).
        message: String,
    },
    /// The directory or `config.json` could not be created or written.
    #[error("cannot write {path}: {error}")]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// The weight file could not be written.
    #[error("cannot write weights to {path}: {message}")]
    Write {
        /// The weight file.
        path: PathBuf,
        /// What the writer said.
        message: String,
    },
}
