//! The WikiHop pipeline for Longformer: QAngaroo JSON → tokens in the paper's layout →
//! padded Burn batches, plus a deterministic synthetic sample set.
//!
//! ```text
//! read_wikihop ──► WikiHopExample ──► TokenizedExample ──► layout ──► WikiHopChunk ──► WikiHopBatcher ──► WikiHopBatch
//!  (wikihop.rs)                       (WikiHopTokenizer)   (layout.rs)                   (batcher.rs)
//! ```
//!
//! [`prepare_file`] runs the whole host side in parallel with an on-disk cache.
//!
//! # Axes
//! - `batch_size`: chunks in a batch.
//! - `seq_length`: tokens of the longest chunk in the batch (≤ `max_len`).
//! - `max_candidates`: most candidates of a chunk in the batch.
//!
//! # Layout
//! `<s> [question] q [/question] [ent] c1 [/ent] ... [ent] cN [/ent] </s> d1 </s> </s> d2 </s> ...`;
//! global attention on everything before the first `</s>`; the candidate scores are read
//! at the `[ent]` positions (`predicted_indices`). See [`layout`](mod@layout).
//!
//! # Example
//! The bundled sample set, prepared and batched (Burn's `flex` feature gives the CPU device):
//!
//! ```
//! use burn::data::dataloader::batcher::Batcher;
//! use burn::prelude::Device;
//! use longformer_data::{
//!     LayoutConfig, PrepareConfig, PrepareOptions, ProgressMode, WikiHopBatcher,
//!     WikiHopTokenizer, prepare_file, sample_dir,
//! };
//!
//! let tokenizer = WikiHopTokenizer::from_dir(&sample_dir().join("tokenizer"))?;
//! let options = PrepareOptions {
//!     config: PrepareConfig {
//!         layout: LayoutConfig { max_len: 512, truncate: false },
//!         ..PrepareConfig::default()
//!     },
//!     progress: ProgressMode::Hidden,
//!     ..PrepareOptions::default()
//! };
//! let prepared = prepare_file(&sample_dir().join("dev.json"), &tokenizer, &options)?;
//! assert!(prepared.summary.skipped.is_empty(), "{}", prepared.summary);
//!
//! let chunks = prepared.chunks[..4].to_vec();
//! let longest = chunks.iter().map(|c| c.input_ids.len()).max().unwrap();
//! let batch = WikiHopBatcher::new(tokenizer.pad_id()).batch(chunks, &Device::flex());
//! assert_eq!(batch.input_ids.dims(), [4, longest]);
//! assert_eq!(batch.answer_index.dims(), [4]);
//! # Ok::<(), longformer_data::DataError>(())
//! ```

#![deny(missing_docs)]

pub mod batcher;
mod bundled;
mod cache;
pub mod error;
mod json_split;
pub mod layout;
pub mod pipeline;
mod progress;
pub mod rng;
pub mod sample;
pub mod summary;
pub mod tokenizer;
pub mod wikihop;

#[cfg(test)]
mod test_support;

pub use batcher::{PaddedBatch, WikiHopBatch, WikiHopBatcher};
pub use bundled::{SAMPLE_DIR, sample_dir};
pub use error::{DataError, RecordProblem, SkippedRecord};
pub use layout::{DEFAULT_MAX_LEN, LayoutConfig, TokenizedExample, WikiHopChunk, layout};
pub use pipeline::{
    CacheStatus, PrepareConfig, PrepareOptions, PreparedSet, prepare_bytes, prepare_file,
    write_jsonl,
};
pub use progress::ProgressMode;
pub use sample::{SampleConfig, generate, train_tokenizer, write_records};
pub use summary::Summary;
pub use tokenizer::{
    SpecialIds, TextTokenizer, WIKIHOP_MARKERS, WikiHopTokenizer, has_tokenizer_files,
};
pub use wikihop::{ReadOutcome, WikiHopExample, WikiHopRecord, read_wikihop};
