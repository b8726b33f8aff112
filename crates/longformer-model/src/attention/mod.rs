//! Longformer self-attention: a sliding window around every token plus global attention.
//!
//! - [`band`]: the local window, computed block by block (`O(n·w)` memory).
//! - [`fused`]: the same as one GPU kernel (CubeCL), with its own backward.
//! - [`local`]: the band and global keys of a group of heads, softmax and values.
//! - [`global`]: the rows of global tokens, which attend to every token (`O(G·n)`).
//! - [`masks`]: the per-forward masks both share.
//! - [`pattern`]: dilation and causal windows.
//! - [`sliding_window`]: the module with its projections that puts them together.

pub mod band;
pub mod fused;
pub mod global;
pub mod local;
pub mod masks;
pub mod pattern;
pub mod sliding_window;

pub use fused::LocalAttentionKernel;
pub use masks::AttentionMasks;
pub use pattern::{AttentionDilation, WindowPattern};
pub use sliding_window::{AttentionProbs, SlidingWindowAttention, SlidingWindowAttentionConfig};

/// Score given to masked positions before the softmax. Finite, so a row whose keys are all masked
/// gives a finite softmax (its probabilities are then zeroed) and gradients never see NaN.
pub const MASKED_SCORE: f32 = f32::MIN;
