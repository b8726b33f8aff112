//! The training loop: seeded example order, gradient accumulation with an averaged loss,
//! global-norm clipping, AdamW with warmup + linear decay, dev evaluation, step checkpoints
//! and exact resume.
//!
//! Burn's `Learner` checkpoints once per epoch and cannot restart in the middle of one at the
//! same batch, so this loop is written out; it uses Burn's optimizer, gradient accumulator and
//! burnpack records.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, FloatDType, Tensor};
use longformer_model::DropoutSeed;
use longformer_model::batching::BatchLimit;
use longformer_model::precision::check_float_dtype;
use serde::{Deserialize, Serialize};

use crate::backend::Precision;
use crate::checkpoint::{self, BestDev, TrainState};
use crate::curve::training_curve_svg;
use crate::evaluate::{Evaluation, evaluate, predictions};
use crate::examples::{DataFingerprint, ExampleSet};
use crate::loss_scale::{LossScaler, LossScaling, ScaledStep};
use crate::metrics::DevPoint;
use crate::model::{Combine, WikiHopModel};
use crate::optimization::{OptimizerSettings, clip_global_norm};
use crate::progress::TrainProgress;

/// How to train (saved under `settings` in the run directory's `run.json`, which `--resume`
/// reads back; each checkpoint's `state.json` keeps a copy to detect later edits).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    /// AdamW, schedule and clipping.
    pub optimizer: OptimizerSettings,
    /// Examples per forward/backward pass.
    pub batch_size: usize,
    /// Passes whose gradients are averaged into one optimizer step.
    pub grad_accum: usize,
    /// Passes over the training set.
    pub epochs: usize,
    /// Stop after this many optimizer steps. The learning rate's linear decay ends at 0 there;
    /// with fewer steps than the warmup, it stops while still rising.
    pub max_steps: Option<usize>,
    /// Seed of the example order and of dropout (batch `b` of optimizer step `s` takes
    /// `DropoutSeed::new(seed).child(s).child(b)`).
    pub seed: u64,
    /// How chunk logits make example logits.
    pub combine: Combine,
    /// Optimizer steps between log lines.
    pub log_every: usize,
    /// Optimizer steps between dev evaluations (also at the end).
    pub eval_every: usize,
    /// Optimizer steps between checkpoints (also at the end).
    pub checkpoint_every: usize,
    /// Checkpoints kept (newest).
    pub keep_checkpoints: usize,
    /// Examples per batch when evaluating.
    pub eval_batch_size: usize,
    /// Padded tokens per batch when evaluating, if limited (runs saved before this setting
    /// existed read as unlimited).
    #[serde(default)]
    pub eval_max_tokens: Option<usize>,
    /// Dtype of the forward and backward passes. The weights, the optimizer and the gradients
    /// the optimizer sees stay f32 (master weights): each pass runs on a cast copy, and its
    /// gradients are cast back to f32. Runs saved before this setting existed read as f32.
    #[serde(default)]
    pub precision: Precision,
    /// Dynamic loss scaling of f16 passes: required with them, refused with the other dtypes
    /// (see [`crate::loss_scale`]). Runs saved before this setting existed read as none.
    #[serde(default)]
    pub loss_scaling: Option<LossScaling>,
}

impl Default for TrainSettings {
    /// The paper's WikiHop fine-tuning: one example per pass, 32 accumulated, 15 epochs.
    fn default() -> Self {
        Self {
            optimizer: OptimizerSettings::default(),
            batch_size: 1,
            grad_accum: 32,
            epochs: 15,
            max_steps: None,
            seed: 42,
            combine: Combine::Mean,
            log_every: 10,
            eval_every: 200,
            checkpoint_every: 200,
            keep_checkpoints: 2,
            eval_batch_size: 8,
            eval_max_tokens: None,
            precision: Precision::F32,
            loss_scaling: None,
        }
    }
}

impl TrainSettings {
    /// Rejects settings that cannot run, naming the `longformer train` flag that sets them.
    pub fn validate(&self) -> Result<()> {
        for (flag, value) in [
            ("--batch-size", self.batch_size),
            ("--grad-accum", self.grad_accum),
            ("--epochs", self.epochs),
            ("--max-steps", self.max_steps.unwrap_or(1)),
            ("--log-every", self.log_every),
            ("--eval-every", self.eval_every),
            ("--checkpoint-every", self.checkpoint_every),
            ("--keep-checkpoints", self.keep_checkpoints),
            ("--eval-batch-size", self.eval_batch_size),
            ("--eval-max-tokens", self.eval_max_tokens.unwrap_or(1)),
        ] {
            if value == 0 {
                bail!("{flag} must be at least 1");
            }
        }
        self.optimizer.validate()?;
        match (self.precision, &self.loss_scaling) {
            (Precision::F16, Some(scaling)) => scaling.validate()?,
            (Precision::F16, None) => bail!(
                "training with f16 passes needs loss scaling (gradients below f16's range would \
                 vanish): set loss_scaling, as `longformer train --dtype f16` does"
            ),
            (other, Some(_)) => bail!(
                "--loss-scale and --loss-scale-growth-interval apply to --dtype f16 only, not {}",
                other.name()
            ),
            (_, None) => {}
        }
        Ok(())
    }

    /// [`validate`](Self::validate), and that every device can compute in the settings' dtype.
    pub fn check_devices(&self, devices: &[Device]) -> Result<()> {
        self.validate()?;
        for device in devices {
            check_float_dtype(self.precision.float_dtype(), &device.clone().autodiff())?;
        }
        Ok(())
    }

    /// The settings that differ from `earlier`'s among those that change the trained weights
    /// (everything but the logging, evaluation and checkpoint cadence), as `name: old → new`.
    pub fn changes_from(&self, earlier: &TrainSettings) -> Vec<String> {
        const CADENCE: [&str; 6] = [
            "log_every",
            "eval_every",
            "checkpoint_every",
            "keep_checkpoints",
            "eval_batch_size",
            "eval_max_tokens",
        ];
        let (now, then) = (flat_json(self), flat_json(earlier));
        now.iter()
            .filter(|(name, _)| !CADENCE.contains(&name.as_str()))
            .filter(|(name, value)| then.get(*name) != Some(*value))
            .map(|(name, value)| match then.get(name) {
                Some(old) => format!("{name}: {old} → {value}"),
                None => format!("{name}: (unset) → {value}"),
            })
            .collect()
    }

    /// Micro-batches in one epoch of `examples` examples.
    pub fn batches_per_epoch(&self, examples: usize) -> usize {
        examples.div_ceil(self.batch_size)
    }

    /// Optimizer steps in one epoch (the last one may accumulate fewer batches).
    pub fn steps_per_epoch(&self, examples: usize) -> usize {
        self.batches_per_epoch(examples).div_ceil(self.grad_accum)
    }

    /// Optimizer steps of the whole run.
    pub fn total_steps(&self, examples: usize) -> usize {
        let full = self.steps_per_epoch(examples) * self.epochs;
        self.max_steps.map_or(full, |m| m.min(full))
    }
}

/// The leaves of `value`'s JSON object, with dotted names (`optimizer.lr`).
fn flat_json(value: &impl Serialize) -> BTreeMap<String, serde_json::Value> {
    fn walk(prefix: &str, value: serde_json::Value, out: &mut BTreeMap<String, serde_json::Value>) {
        match value {
            serde_json::Value::Object(fields) => {
                for (name, field) in fields {
                    let name = if prefix.is_empty() {
                        name
                    } else {
                        format!("{prefix}.{name}")
                    };
                    walk(&name, field, out);
                }
            }
            leaf => {
                out.insert(prefix.to_string(), leaf);
            }
        }
    }
    let mut out = BTreeMap::new();
    let value = serde_json::to_value(value).expect("settings serialize to JSON");
    walk("", value, &mut out);
    out
}

/// One device's summed gradients and `(mean loss, correct, examples)` of each of its batches.
type DeviceGradients = (GradientsParams, Vec<(f64, usize, usize)>);

/// What a finished run reports (written as `summary.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Dev accuracy of the final model.
    pub dev_accuracy: f64,
    /// Best dev accuracy seen, and its step.
    pub best_dev_accuracy: f64,
    /// Step of the best dev accuracy.
    pub best_step: usize,
    /// Mean of 1 / candidates over dev: a uniform guess's accuracy.
    pub chance_accuracy: f64,
    /// Dev loss of the final model.
    pub dev_loss: f64,
    /// Optimizer steps taken.
    pub optimizer_steps: usize,
    /// Training examples processed.
    pub examples_seen: usize,
    /// Training wall time (all sessions of a resumed run), in seconds.
    pub wall_seconds: f64,
    /// Backend name.
    pub backend: String,
    /// Dtype of the forward and backward passes (`f32`, `f16`, `bf16`).
    #[serde(default)]
    pub precision: Precision,
    /// Optimizer steps skipped because their f16 gradients overflowed (counted in
    /// `optimizer_steps`: the schedule and the data moved on, the weights did not).
    #[serde(default)]
    pub skipped_steps: usize,
    /// The loss scale at the end, in runs with f16 passes.
    #[serde(default)]
    pub loss_scale: Option<f32>,
    /// Whether the (last session of the) run used activation checkpointing.
    #[serde(default)]
    pub gradient_checkpointing: bool,
    /// Training examples / dev examples.
    pub train_examples: usize,
    /// Dev examples.
    pub dev_examples: usize,
}

/// A training run: the data, where it writes, and how it logs.
pub struct Run<'a> {
    /// The run directory (checkpoints, metrics, curve, summary).
    pub dir: &'a Path,
    /// Training examples.
    pub train: &'a ExampleSet,
    /// Dev examples.
    pub dev: &'a ExampleSet,
    /// The settings.
    pub settings: &'a TrainSettings,
    /// Backend name for the summary.
    pub backend: &'a str,
    /// Print log lines on stderr.
    pub verbose: bool,
    /// When set (by a signal handler), training stops after the current optimizer step with
    /// a checkpoint, and [`Run::train`] returns [`Interrupted`].
    pub stop: Option<&'a AtomicBool>,
    /// Activation checkpointing: each pass keeps only its layers' inputs and the backward pass
    /// recomputes the layers one at a time (see [`WikiHopModel::try_forward_checkpointed`]):
    /// less memory, the same gradients. Not a setting of the run: a resumed run may change it.
    pub gradient_checkpointing: bool,
}

/// The error [`Run::train`] returns when [`Run::stop`] was set: training stopped at `step`,
/// after writing the checkpoint `checkpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interrupted {
    /// The last optimizer step taken.
    pub step: usize,
    /// Its checkpoint directory.
    pub checkpoint: PathBuf,
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "interrupted after optimizer step {}; its checkpoint is {}",
            self.step,
            self.checkpoint.display()
        )
    }
}

impl std::error::Error for Interrupted {}

/// Where a run starts from.
pub enum Start {
    /// A fresh model (on the autodiff device).
    Fresh(WikiHopModel),
    /// The newest checkpoint of the run directory; the model (on the autodiff device) has the
    /// run's architecture and receives the checkpoint's weights.
    Resume(WikiHopModel),
}

/// The final model and summary.
pub struct Trained {
    /// The trained model (autodiff device).
    pub model: WikiHopModel,
    /// The summary.
    pub summary: RunSummary,
    /// Last dev evaluation.
    pub dev: Evaluation,
}

impl Run<'_> {
    /// Trains on `devices` (plain devices; the loop trains on their `autodiff()`). With several
    /// devices, the batches of each optimizer step are dealt round-robin to them, each device
    /// computes its gradients on its own copy of the model in its own thread, and the gradients
    /// are summed on the first device, which holds the model and the optimizer.
    pub fn train(&self, start: Start, devices: &[Device]) -> Result<Trained> {
        let Some(device) = devices.first() else {
            bail!("no device to train on");
        };
        let settings = self.settings;
        settings.check_devices(devices)?;
        let devices: Vec<Device> = devices.iter().map(|d| d.clone().autodiff()).collect();
        if self.train.is_empty() {
            bail!("the training set has no example");
        }
        if self.dev.is_empty() {
            bail!("the dev set has no example");
        }
        let data = self.train.fingerprint();
        fs::create_dir_all(self.dir)
            .with_context(|| format!("creating run directory {}", self.dir.display()))?;
        let mut resumed = None;
        let (mut model, mut optimizer, mut state) = match start {
            Start::Fresh(model) => (model, settings.optimizer.optimizer(), TrainState::default()),
            Start::Resume(model) => {
                let loaded = checkpoint::load_latest(
                    self.dir,
                    model,
                    settings.optimizer.optimizer(),
                    &devices[0],
                )?;
                self.check_resumable(&loaded.state, &data, &loaded.dir)?;
                resumed = Some(format!(
                    "resuming from {} (step {}, epoch {}, batch {})",
                    loaded.dir.display(),
                    loaded.state.optimizer_step,
                    loaded.state.epoch,
                    loaded.state.batches_done
                ));
                (loaded.model, loaded.optimizer, loaded.state)
            }
        };
        state.data = Some(data);
        state.settings = Some(settings.clone());
        if let Some(scaling) = &settings.loss_scaling {
            state
                .loss_scaler
                .get_or_insert_with(|| LossScaler::new(scaling));
        }
        let total_steps = settings.total_steps(self.train.len());
        let batches_per_epoch = settings.batches_per_epoch(self.train.len());
        let mut metrics_log = self.metrics_log(state.optimizer_step)?;
        let mut progress = TrainProgress::new(self.verbose, total_steps, state.optimizer_step);
        if let Some(line) = &resumed {
            progress.line(line);
        }
        progress.line(&format!(
            "training: {} examples ({} batches of {}, {} per step), {} dev examples, {} optimizer steps, run dir {}",
            self.train.len(),
            batches_per_epoch,
            settings.batch_size,
            settings.grad_accum,
            self.dev.len(),
            total_steps,
            self.dir.display()
        ));

        let mut interval = std::mem::take(&mut state.interval);
        let mut interval_start = Instant::now();
        let mut session_start = Instant::now();
        let mut accumulator = GradientsAccumulator::<WikiHopModel>::new();
        let mut last_eval: Option<(usize, Evaluation)> = None;
        let mut order = self.train.epoch_order(settings.seed, state.epoch);
        let mut order_epoch = state.epoch;
        while state.optimizer_step < total_steps {
            if order_epoch != state.epoch {
                order = self.train.epoch_order(settings.seed, state.epoch);
                order_epoch = state.epoch;
            }
            let first = state.batches_done;
            let last = (first + settings.grad_accum).min(batches_per_epoch);
            let batches: Vec<&[usize]> = (first..last)
                .map(|b| {
                    let start = b * settings.batch_size;
                    &order[start..(start + settings.batch_size).min(order.len())]
                })
                .collect();
            let seed = DropoutSeed::new(settings.seed).child(state.optimizer_step as u64);
            let loss_scale = state.loss_scaler.map_or(1.0, |s| s.scale);
            let shares = self.gradients(&model, &batches, &devices, seed, loss_scale)?;
            let mut last_loss = 0.0;
            let mut overflowed_loss = None;
            for (grads, stats) in shares {
                accumulator.accumulate(&model, grads.to_device(&devices[0], &model));
                for (loss, correct, examples) in stats {
                    last_loss = loss;
                    if !loss.is_finite() {
                        overflowed_loss = Some(loss);
                    }
                    interval.add_batch(loss, correct, examples);
                    state.examples_seen += examples;
                }
            }
            let (grads, norm) = clip_global_norm(
                &model,
                accumulator.grads(),
                settings.optimizer.max_grad_norm,
            )?;
            let outcome = match (&mut state.loss_scaler, &settings.loss_scaling) {
                (Some(scaler), Some(scaling)) => {
                    if let Some(loss) = overflowed_loss {
                        bail!(
                            "the loss is {loss} at step {}: the forward pass left f16's range \
                             (largest value 65,504), which no loss scale changes; train in f32",
                            state.optimizer_step
                        );
                    }
                    scaler.update(norm, scaling)?
                }
                _ if !norm.is_finite() => bail!(
                    "the gradient norm is {norm} at step {}: training diverged (lower --lr?)",
                    state.optimizer_step
                ),
                _ => ScaledStep::Apply,
            };
            let lr = settings.optimizer.lr_at(state.optimizer_step, total_steps);
            if outcome == ScaledStep::Apply {
                model = optimizer.step(lr, model, grads);
                interval.add_step(norm);
            } else {
                interval.add_skipped();
                state.skipped_steps += 1;
                progress.line(&format!(
                    "step {}: the f16 gradients overflowed at loss scale {loss_scale}; the step \
                     is skipped and the scale halved",
                    state.optimizer_step + 1
                ));
            }
            state.optimizer_step += 1;
            state.batches_done = last;
            if last == batches_per_epoch {
                state.epoch += 1;
                state.batches_done = 0;
            }
            let step = state.optimizer_step;
            let finished = step == total_steps;
            progress.step(step, last_loss);
            if step % settings.log_every == 0 || finished {
                let epoch = state.examples_seen as f64 / self.train.len() as f64;
                let mut point =
                    interval.finish(step, epoch, lr, interval_start.elapsed().as_secs_f64());
                point.loss_scale = state.loss_scaler.map(|s| s.scale);
                interval_start = Instant::now();
                let mut scaling = String::new();
                if let Some(scale) = point.loss_scale {
                    scaling = format!("  scale {scale}");
                }
                if point.skipped_steps > 0 {
                    scaling += &format!("  skipped {}", point.skipped_steps);
                }
                progress.line(&format!(
                    "step {step:>6}/{total_steps}  epoch {epoch:6.2}  loss {:.4}  acc {:.3}  lr {:.2e}  {:.1} ex/s  |grad| {:.3}{scaling}",
                    point.loss, point.accuracy, point.lr, point.examples_per_s, point.grad_norm
                ));
                log_line(&mut metrics_log, &serde_json::json!({"train": &point}))?;
                state.history.train.push(point);
            }
            if step % settings.eval_every == 0 || finished {
                let evaluation = self.evaluate_dev(&model, device)?;
                let point = DevPoint {
                    step,
                    loss: evaluation.loss,
                    accuracy: evaluation.accuracy,
                };
                let improved = state.best.is_none_or(|b| point.accuracy > b.accuracy);
                progress.line(&format!(
                    "dev at step {step}: loss {:.4}  accuracy {:.4}{}",
                    point.loss,
                    point.accuracy,
                    if improved { "  (best)" } else { "" }
                ));
                log_line(&mut metrics_log, &serde_json::json!({"dev": &point}))?;
                if improved {
                    state.best = Some(BestDev {
                        step,
                        accuracy: point.accuracy,
                    });
                    self.save_final(&model, "best")?;
                }
                state.history.dev.push(point);
                last_eval = Some((step, evaluation));
            }
            let stop = !finished && self.stop.is_some_and(|s| s.load(Ordering::SeqCst));
            if step % settings.checkpoint_every == 0 || finished || stop {
                state.wall_seconds += session_start.elapsed().as_secs_f64();
                session_start = Instant::now();
                state.interval = interval.paused(interval_start.elapsed().as_secs_f64());
                let dir = checkpoint::save_checkpoint(
                    self.dir,
                    &model,
                    &optimizer,
                    &state,
                    settings.keep_checkpoints,
                )?;
                if stop {
                    metrics_log.flush()?;
                    progress.finish();
                    return Err(Interrupted {
                        step,
                        checkpoint: dir,
                    }
                    .into());
                }
                if !finished {
                    progress.line(&format!("checkpoint {}", dir.display()));
                }
            }
        }
        metrics_log.flush()?;
        progress.finish();
        let dev = match last_eval {
            Some((step, evaluation)) if step == state.optimizer_step => evaluation,
            _ => self.evaluate_dev(&model, device)?,
        };
        self.save_final(&model, "final")?;
        let best = state.best.unwrap_or(BestDev {
            step: state.optimizer_step,
            accuracy: dev.accuracy,
        });
        let summary = RunSummary {
            dev_accuracy: dev.accuracy,
            best_dev_accuracy: best.accuracy,
            best_step: best.step,
            chance_accuracy: self.dev.chance_accuracy(),
            dev_loss: dev.loss,
            optimizer_steps: state.optimizer_step,
            examples_seen: state.examples_seen,
            wall_seconds: state.wall_seconds,
            backend: self.backend.to_string(),
            precision: settings.precision,
            skipped_steps: state.skipped_steps,
            loss_scale: state.loss_scaler.map(|s| s.scale),
            gradient_checkpointing: self.gradient_checkpointing,
            train_examples: self.train.len(),
            dev_examples: self.dev.len(),
        };
        checkpoint::write_json(&self.dir.join("summary.json"), &summary)?;
        let title = format!(
            "WikiHop training, {} (dev accuracy {:.3}, chance {:.3})",
            self.backend, summary.dev_accuracy, summary.chance_accuracy
        );
        let svg = training_curve_svg(&state.history, Some(summary.chance_accuracy), &title);
        let curve = self.dir.join("training_curve.svg");
        crate::output::write_file(&curve, svg.as_bytes())
            .with_context(|| format!("writing {}", curve.display()))?;
        progress.line(&format!(
            "done: dev accuracy {:.4} (best {:.4} at step {}; chance {:.4}) after {} steps in {:.1} s; wrote {}",
            summary.dev_accuracy,
            summary.best_dev_accuracy,
            summary.best_step,
            summary.chance_accuracy,
            summary.optimizer_steps,
            summary.wall_seconds,
            self.dir.join("summary.json").display()
        ));
        Ok(Trained {
            model,
            summary,
            dev,
        })
    }

    /// The gradients of `batches` (their losses divided by the number of batches), dealt
    /// round-robin over `devices`, one thread per device, each with `(loss, correct, examples)`
    /// of its batches. Batch `i` of the step takes its dropout masks from `seed.child(i)`,
    /// whichever device runs it. `loss_scale` multiplies the losses back-propagated and
    /// divides the gradients (in f32) again.
    fn gradients(
        &self,
        model: &WikiHopModel,
        batches: &[&[usize]],
        devices: &[Device],
        seed: DropoutSeed,
        loss_scale: f32,
    ) -> Result<Vec<DeviceGradients>> {
        let share = |d: usize| -> Vec<(DropoutSeed, &[usize])> {
            batches
                .iter()
                .enumerate()
                .skip(d)
                .step_by(devices.len())
                .map(|(i, &batch)| (seed.child(i as u64), batch))
                .collect()
        };
        let scale = batches.len() as f32;
        if devices.len() == 1 {
            return Ok(vec![self.device_gradients(
                model,
                &share(0),
                &devices[0],
                (scale, loss_scale),
            )?]);
        }
        std::thread::scope(|scope| {
            let handles: Vec<_> = devices
                .iter()
                .enumerate()
                .filter(|(d, _)| *d < batches.len())
                .map(|(d, device)| {
                    let mine = share(d);
                    let local = model.clone().fork(device);
                    scope.spawn(move || {
                        self.device_gradients(&local, &mine, device, (scale, loss_scale))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        })
    }

    /// Summed gradients of `batches` on one device (each loss divided by `passes` and
    /// multiplied by `loss_scale` for the backward pass, the gradients divided by `loss_scale`
    /// again in f32), each batch with the seed of its dropout masks.
    fn device_gradients(
        &self,
        model: &WikiHopModel,
        batches: &[(DropoutSeed, &[usize])],
        device: &Device,
        (passes, loss_scale): (f32, f32),
    ) -> Result<DeviceGradients> {
        let precision = self.settings.precision;
        // The pass runs on a copy in the compute dtype (the same parameter ids); `model` keeps
        // the f32 master weights.
        let compute = precision
            .apply(model.clone(), device)
            .expect("the dtype was checked on every device when training started");
        let mut accumulator = GradientsAccumulator::<WikiHopModel>::new();
        let mut stats = Vec::with_capacity(batches.len());
        for &(seed, indices) in batches {
            let batch = self.train.batch(indices, device);
            let combine = self.settings.combine;
            let (output, grads) = if self.gradient_checkpointing {
                let (output, pass) = compute
                    .try_forward_checkpointed(&batch, combine, Some(seed))
                    .context("a training batch does not fit the model")?;
                let grads = backward_loss(output.loss.clone(), passes, loss_scale).backward();
                let grads = pass.backward(&compute.longformer, grads);
                (output, grads)
            } else {
                let output = compute
                    .try_forward_seeded(&batch, combine, Some(seed))
                    .context("a training batch does not fit the model")?;
                let grads = backward_loss(output.loss.clone(), passes, loss_scale).backward();
                (output, grads)
            };
            let grads = GradientsParams::from_grads(grads, &compute);
            let grads = if precision == Precision::F32 {
                grads
            } else {
                grads_to_f32(model, grads, 1.0 / loss_scale)
            };
            accumulator.accumulate(model, grads);
            let candidates: Vec<usize> = indices
                .iter()
                .map(|&i| self.train.examples[i].candidates())
                .collect();
            let (predicted, loss) = predictions(&output, &candidates)?;
            let correct = predicted
                .iter()
                .filter(|p| p.predicted_index == p.answer_index)
                .count();
            stats.push((loss, correct, indices.len()));
        }
        Ok((accumulator.grads(), stats))
    }

    fn evaluate_dev(&self, model: &WikiHopModel, device: &Device) -> Result<Evaluation> {
        evaluate(
            &model.valid(),
            self.dev,
            BatchLimit::items(self.settings.eval_batch_size)
                .with_tokens(self.settings.eval_max_tokens),
            self.settings.combine,
            device,
        )
        .context("evaluating on the dev set")
    }

    /// Refuses to resume from a checkpoint whose training examples (`data` now) or settings
    /// differ from this run's: the batches and the schedule would no longer continue the
    /// checkpoint's. Older checkpoints recorded neither; of them, only a position in the epoch
    /// beyond the set's batches is refused.
    fn check_resumable(
        &self,
        state: &TrainState,
        data: &DataFingerprint,
        checkpoint: &Path,
    ) -> Result<()> {
        let batches = self.settings.batches_per_epoch(self.train.len());
        if state.batches_done >= batches {
            bail!(
                "cannot resume {}: {} stopped after batch {} of its epoch, but the training set \
                 now has {batches} batches of {}: the training file or the settings of its \
                 run.json changed",
                self.dir.display(),
                checkpoint.display(),
                state.batches_done,
                self.settings.batch_size
            );
        }
        if let Some(then) = &state.data
            && then != data
        {
            bail!(
                "cannot resume {}: the training examples are not those {} was trained on \
                 ({} examples in {} chunks now, {} in {} then, or as many with other tokens): \
                 the training file, the tokenizer, max_len or truncate of its run.json changed",
                self.dir.display(),
                checkpoint.display(),
                data.examples,
                data.chunks,
                then.examples,
                then.chunks
            );
        }
        if let Some(then) = &state.settings {
            let changes = self.settings.changes_from(then);
            if !changes.is_empty() {
                bail!(
                    "cannot resume {}: its settings changed since {} was written ({}); \
                     restore them in its run.json",
                    self.dir.display(),
                    checkpoint.display(),
                    changes.join(", ")
                );
            }
        }
        Ok(())
    }

    /// Writes `RUN_DIR/<name>/model.bpk` (atomically: the burnpack store writes a temporary
    /// sibling and renames it).
    fn save_final(&self, model: &WikiHopModel, name: &str) -> Result<PathBuf> {
        let dir = self.dir.join(name);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("model.bpk");
        checkpoint::save_model(model, &path)?;
        Ok(path)
    }

    /// `metrics.jsonl`, cut to the lines up to `step` (a resumed run rewrites what the lost
    /// interval had logged), open for appending. The cut file replaces the old one whole
    /// ([`crate::output::write_file`]): a process killed meanwhile leaves one or the other.
    fn metrics_log(&self, step: usize) -> Result<File> {
        let path = self.dir.join("metrics.jsonl");
        let kept: Vec<String> = match fs::read_to_string(&path) {
            Ok(text) => text
                .lines()
                .filter(|line| {
                    serde_json::from_str::<serde_json::Value>(line)
                        .ok()
                        .and_then(|v| {
                            v.as_object()
                                .and_then(|o| o.values().next())
                                .and_then(|p| p["step"].as_u64())
                        })
                        .is_some_and(|s| s as usize <= step)
                })
                .map(str::to_string)
                .collect(),
            Err(_) => Vec::new(),
        };
        let text: String = kept.iter().map(|line| format!("{line}\n")).collect();
        crate::output::write_file(&path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))
    }
}

/// Appends `value` and a newline to the metrics log in one write, so that a killed process
/// leaves at most its last line torn (which a resumed run drops).
fn log_line(file: &mut File, value: &serde_json::Value) -> Result<()> {
    file.write_all(format!("{value}\n").as_bytes())?;
    Ok(())
}

/// What a pass back-propagates: its loss divided by the step's number of passes, times the
/// loss scale (1 but for f16 passes; a power of two by default, so that the scaling is exact).
fn backward_loss<const D: usize>(loss: Tensor<D>, passes: f32, loss_scale: f32) -> Tensor<D> {
    let loss = loss.div_scalar(passes);
    if loss_scale == 1.0 {
        loss
    } else {
        loss.mul_scalar(loss_scale)
    }
}

/// `grads` with every parameter's gradient in f32 (the master weights' dtype), times `unscale`
/// (the inverse of the pass's loss scale).
fn grads_to_f32(model: &WikiHopModel, mut grads: GradientsParams, unscale: f32) -> GradientsParams {
    struct ToF32<'a>(&'a mut GradientsParams, f32);
    impl ModuleVisitor for ToF32<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(grad) = self.0.remove::<D>(param.id) {
                let grad = grad.cast(FloatDType::F32);
                let grad = if self.1 == 1.0 {
                    grad
                } else {
                    grad.mul_scalar(self.1)
                };
                self.0.register(param.id, grad);
            }
        }
    }
    model.visit(&mut ToF32(&mut grads, unscale));
    grads
}
