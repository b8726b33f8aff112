//! WikiHop fine-tuning of Longformer on Burn: the answer-scoring model, the training loop
//! with step checkpoints and exact resume, evaluation, and the `longformer` command line.
//!
//! ```text
//! prepare_file ─► ExampleSet ─► seeded batches ─► WikiHopModel ─► loss ─► accumulated grads
//!                                                       ▲                        │
//!                                   AdamW, warmup + linear decay, clipping ◄─────┘
//! ```

pub mod adamw;
pub mod backend;
pub mod checkpoint;
pub mod commands;
pub mod conversion;
pub mod curve;
pub mod evaluate;
pub mod examples;
pub mod init;
pub mod loss_scale;
pub mod metrics;
pub mod model;
pub mod optimization;
pub mod output;
pub mod progress;
pub mod readback;
pub mod run_lock;
mod stop_signal;
pub mod trainer;
pub mod unlabeled;

pub use backend::Precision;
pub use examples::ExampleSet;
pub use loss_scale::LossScaling;
pub use model::{Combine, WikiHopModel, WikiHopOutput};
pub use optimization::OptimizerSettings;
pub use trainer::{Run, RunSummary, Start, TrainSettings};
