//! Longformer (Beltagy, Peters, Cohan, 2020, "Longformer: The Long-Document Transformer",
//! <https://arxiv.org/abs/2004.05150>) on Burn, computing exactly what HuggingFace
//! `transformers`' `LongformerModel` computes, in `O(n·w)` memory.
//!
//! Backend-generic: tensors live on whatever [`burn::tensor::Device`] you pass (`flex`,
//! `ndarray`, `wgpu`, `vulkan`, each a Cargo feature). The GPU backends run through
//! Burn's kernel fusion (as Burn's own `wgpu` does by default); the fused attention kernel runs
//! as one opaque op in fusion's stream. The `autotune` feature turns on Burn's kernel autotuning
//! and times that kernel's launch shapes on the device at first use of each problem size.
//!
//! # Axes
//! - `batch_size`: rows of a batch; `seq_length`: tokens per row (padding included);
//! - `d_model` (`hidden_size`), `n_heads`, `d_head = d_model / n_heads`, `d_ff` (`intermediate_size`);
//! - `window`: the *one-sided* window `w = attention_window / 2`; a token sees `2w + 1` positions;
//! - `padded_length`: `seq_length` rounded up to a multiple of `window` (internal only);
//! - `n_blocks = padded_length / window`; `n_global`: the largest number of global tokens in a row.
//!
//! # Example
//! ```no_run
//! use burn::tensor::Device;
//! use longformer_model::{LongformerInput, load_pretrained};
//!
//! let device = Device::flex();
//! let model = load_pretrained("longformer-base-4096", &device)?;
//! // `<s> ... </s>`, global attention on the first token.
//! let ids = vec![vec![0i64, 31414, 232, 2]];
//! let global = vec![vec![1i64, 0, 0, 0]];
//! let input = LongformerInput::from_rows(&ids, None, Some(&global), 1, &device);
//! let hidden = model.try_forward(input)?.last_hidden_state; // [1, 4, 768]
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

pub mod attention;
pub mod batching;
pub mod checkpointing;
pub mod config;
#[cfg(any(feature = "flex", feature = "ndarray"))]
mod cpu;
#[cfg(any(feature = "wgpu", feature = "vulkan"))]
mod cube_common;
pub mod dropout;
pub mod embedding;
pub mod encoder;
pub mod error;
pub mod gelu;
pub mod heads;
#[cfg(any(feature = "flex", feature = "ndarray", test))]
mod host;
pub mod init;
pub mod input;
pub mod layer;
pub mod linear;
pub mod loader;
pub mod model;
pub mod norm;
pub mod pooler;
pub mod precision;
#[cfg(test)]
mod test_devices;

pub use attention::{
    AttentionDilation, AttentionProbs, LocalAttentionKernel, SlidingWindowAttention, WindowPattern,
};
pub use checkpointing::CheckpointedPass;
pub use config::{AttentionWindow, HiddenAct, LongformerConfig};
pub use dropout::DropoutSeed;
pub use error::{ConfigError, InputError, LoadError, SaveError};
pub use heads::{
    LongformerForMaskedLM, LongformerForMultipleChoice, LongformerForQuestionAnswering,
    LongformerForSequenceClassification, LongformerForTokenClassification, LongformerHeadConfig,
    MaskFill, MultipleChoiceInput, ProblemType, QuestionAnsweringOutput, TaskHead,
};
pub use input::{AttentionLayout, LongformerInput};
pub use loader::{
    load_head, load_head_weights, load_pretrained, load_weights, load_with_new_head,
    load_with_new_head_config, save_head, save_pretrained, weights_file,
};
pub use model::{LongformerModel, LongformerOutput, OutputOptions};
pub use precision::cast_float_params;
