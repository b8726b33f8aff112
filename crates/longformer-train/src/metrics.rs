//! Training metrics: what is logged every few optimizer steps and at each dev evaluation.

use serde::{Deserialize, Serialize};

/// Averages over the optimizer steps since the previous log line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainPoint {
    /// Optimizer step at the end of the interval.
    pub step: usize,
    /// Epoch (fractional: examples seen / examples per epoch).
    pub epoch: f64,
    /// Mean training loss.
    pub loss: f64,
    /// Training accuracy.
    pub accuracy: f64,
    /// Learning rate of the last step.
    pub lr: f64,
    /// Training throughput.
    pub examples_per_s: f64,
    /// Global gradient norm before clipping, mean over the interval's applied steps.
    pub grad_norm: f64,
    /// Steps of the interval skipped because their f16 gradients overflowed (see
    /// [`crate::loss_scale`]); absent when none were.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped_steps: usize,
    /// The loss scale at the end of the interval, in runs with f16 passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f32>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A dev evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DevPoint {
    /// Optimizer step.
    pub step: usize,
    /// Mean dev loss.
    pub loss: f64,
    /// Dev accuracy.
    pub accuracy: f64,
}

/// All metrics of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Training intervals.
    pub train: Vec<TrainPoint>,
    /// Dev evaluations.
    pub dev: Vec<DevPoint>,
}

/// Running sums over an interval of optimizer steps. Checkpoints keep the interval in
/// progress, so that a resumed run's next log line covers the same steps as the uninterrupted
/// run's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    loss_sum: f64,
    correct: usize,
    examples: usize,
    grad_norm_sum: f64,
    steps: usize,
    /// Steps skipped for overflowing f16 gradients (absent in older checkpoints).
    #[serde(default)]
    skipped: usize,
    /// Seconds the interval ran before the current session (see [`Interval::paused`]).
    #[serde(default)]
    seconds: f64,
}

impl Interval {
    /// Adds one micro-batch: its mean loss over `examples` examples, of which `correct` right.
    pub fn add_batch(&mut self, mean_loss: f64, correct: usize, examples: usize) {
        self.loss_sum += mean_loss * examples as f64;
        self.correct += correct;
        self.examples += examples;
    }

    /// Adds one optimizer step's gradient norm.
    pub fn add_step(&mut self, grad_norm: f32) {
        self.grad_norm_sum += f64::from(grad_norm);
        self.steps += 1;
    }

    /// Counts a step whose optimizer update was skipped (its f16 gradients overflowed): its
    /// batches count, its gradient norm does not.
    pub fn add_skipped(&mut self) {
        self.skipped += 1;
    }

    /// Optimizer steps in the interval (applied ones; see [`add_skipped`](Self::add_skipped)).
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Examples in the interval.
    pub fn examples(&self) -> usize {
        self.examples
    }

    /// The interval as a checkpoint keeps it, `seconds` into the current session's part of it.
    pub fn paused(&self, seconds: f64) -> Self {
        Self {
            seconds: self.seconds + seconds,
            ..self.clone()
        }
    }

    /// The point summarizing the interval, `seconds` into the current session's part of it,
    /// then resets it.
    pub fn finish(&mut self, step: usize, epoch: f64, lr: f64, seconds: f64) -> TrainPoint {
        let seconds = self.seconds + seconds;
        let examples = self.examples.max(1) as f64;
        let point = TrainPoint {
            step,
            epoch,
            loss: self.loss_sum / examples,
            accuracy: self.correct as f64 / examples,
            lr,
            examples_per_s: self.examples as f64 / seconds.max(1e-9),
            grad_norm: self.grad_norm_sum / self.steps.max(1) as f64,
            skipped_steps: self.skipped,
            loss_scale: None,
        };
        *self = Self::default();
        point
    }
}
