//! HuggingFace's five Longformer task heads, with HF's module names so that their checkpoints
//! load key for key (see [`crate::loader::load_head`]):
//!
//! | model | head | output |
//! |---|---|---|
//! | [`LongformerForMaskedLM`] | `lm_head`: dense, gelu, LayerNorm, decoder (tied to the word embeddings unless `tie_word_embeddings` is false) + bias | `[batch_size, seq_length, vocab_size]` |
//! | [`LongformerForSequenceClassification`] | `classifier`: dense, tanh, `out_proj` on the first token | `[batch_size, n_labels]` |
//! | [`LongformerForQuestionAnswering`] | `qa_outputs`: start and end per token | `[batch_size, seq_length]` twice |
//! | [`LongformerForTokenClassification`] | `classifier` on every token | `[batch_size, seq_length, n_labels]` |
//! | [`LongformerForMultipleChoice`] | pooler, `classifier` → one score per choice | `[batch_size, n_choices]` |
//!
//! Without a `global_attention_mask`, each head puts global attention where HF does (see
//! [`global`]). Each head's `loss` (and `regression_loss`, `multi_label_loss` for sequence
//! classification) computes what HF's `forward(..., labels=...)` does, with HF's ignored label
//! `-100` ([`IGNORE_INDEX`]; see [`loss`]). Which of the three fits a sequence classifier is its
//! config's [`ProblemType`].

pub mod config;
pub mod fill_mask;
pub mod global;
pub mod loss;
pub mod masked_lm;
pub mod multiple_choice;
pub mod problem_type;
pub mod question_answering;
pub mod sequence_classification;
pub mod token_classification;

pub use config::{LongformerHeadConfig, TaskHead};
pub use fill_mask::{MaskFill, mask_fills};
pub use loss::IGNORE_INDEX;
pub use masked_lm::{LongformerForMaskedLM, LongformerLmHead};
pub use multiple_choice::{LongformerForMultipleChoice, MultipleChoiceInput};
pub use problem_type::{ProblemType, ScoreFunction};
pub use question_answering::{LongformerForQuestionAnswering, QuestionAnsweringOutput};
pub use sequence_classification::{
    LongformerClassificationHead, LongformerForSequenceClassification,
};
pub use token_classification::LongformerForTokenClassification;
