//! `longformer train`: fine-tune (or train from scratch) a WikiHop model.
//!
//! With no arguments it trains the `tiny` configuration from scratch on the bundled sample set
//! with settings for training from scratch. With `--model DIR` the defaults are the paper's
//! fine-tuning settings. Every flag overrides its default.

// The flags' doc comments are clap's help text, where `[value]` states a default and `<unix time>`
// is a placeholder; rustdoc would read them as links and HTML.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::Args;
use longformer_data::{
    DEFAULT_MAX_LEN, LayoutConfig, PrepareConfig, PrepareOptions, ProgressMode, Summary,
    WikiHopChunk, WikiHopTokenizer, has_tokenizer_files, prepare_file, sample_dir,
};
use longformer_model::LongformerConfig;
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, Precision};
use crate::checkpoint::{load_model, read_json, run_weights, write_json};
use crate::examples::ExampleSet;
use crate::init::{ConfigChoice, ModelSource, check_tokenizer};
use crate::loss_scale::LossScaling;
use crate::model::{Combine, WikiHopModel};
use crate::optimization::OptimizerSettings;
use crate::output::write_file;
use crate::progress::note;
use crate::readback::is_device_failure;
use crate::run_lock::RunLock;
use crate::stop_signal::{INTERRUPTED_EXIT_CODE, stop_on_signal};
use crate::trainer::{Interrupted, Run, Start, TrainSettings};

/// Flags of `longformer train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// WikiHop training file [default: the bundled sample's train.json].
    #[arg(long, value_name = "FILE.json")]
    pub train: Option<PathBuf>,
    /// WikiHop dev file [default: the bundled sample's dev.json].
    #[arg(long, value_name = "FILE.json")]
    pub dev: Option<PathBuf>,
    /// Tokenizer directory or tokenizer.json [default: the --model directory's, which must
    /// then have one; without --model, the bundled sample's].
    #[arg(long, value_name = "DIR")]
    pub tokenizer: Option<PathBuf>,
    /// Start from this HF Longformer checkpoint directory (paper fine-tuning defaults).
    #[arg(long, value_name = "DIR", conflicts_with = "config")]
    pub model: Option<PathBuf>,
    /// Random-init configuration: `tiny`, `base` or an HF config.json [default: tiny].
    #[arg(long, value_name = "tiny|base|FILE")]
    pub config: Option<ConfigChoice>,
    /// Run directory (checkpoints, metrics.jsonl, training_curve.svg, summary.json)
    /// [default: runs/wikihop-<unix time>].
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// Continue the run in this directory from its newest checkpoint, with its saved settings
    /// and data (both must be unchanged since that checkpoint).
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["run_dir", "model", "config"])]
    pub resume: Option<PathBuf>,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    pub backend: Backend,
    /// Dtype of the forward and backward passes: `f16` and `bf16` run them on a half copy of
    /// the weights while the weights, AdamW and the gradients it sees stay f32 [f32]. `f16`
    /// scales the loss (--loss-scale), skipping steps whose gradients overflow; it is the half
    /// type of GPUs reached through Vulkan or WGSL (bf16: flex and Metal).
    #[arg(long, value_enum)]
    pub dtype: Option<Precision>,
    /// First loss scale of `--dtype f16`: halved (and the step skipped) when the gradients
    /// overflow, doubled after --loss-scale-growth-interval steps without overflow [65536].
    #[arg(long, value_name = "SCALE")]
    pub loss_scale: Option<f32>,
    /// Optimizer steps without overflow after which `--dtype f16`'s loss scale doubles [2000].
    #[arg(long, value_name = "STEPS")]
    pub loss_scale_growth_interval: Option<usize>,
    /// GPUs to train on (wgpu/vulkan): each optimizer step's batches are spread over them
    /// (use --grad-accum ≥ the number of devices).
    #[arg(long, default_value_t = 1)]
    pub devices: usize,
    /// Keep only each layer's input in the forward pass and recompute the layers one at a
    /// time in the backward pass (HF's gradient checkpointing): far less memory for one more
    /// forward pass, the same weights. Allowed with --resume.
    #[arg(long)]
    pub gradient_checkpointing: bool,
    /// Peak learning rate [3e-5 with --model, 1e-3 from scratch].
    #[arg(long)]
    pub lr: Option<f64>,
    /// AdamW weight decay [0.01].
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// AdamW β₁ [0.9].
    #[arg(long)]
    pub beta1: Option<f32>,
    /// AdamW β₂ [0.98].
    #[arg(long)]
    pub beta2: Option<f32>,
    /// AdamW ε [1e-6].
    #[arg(long)]
    pub epsilon: Option<f32>,
    /// Warmup optimizer steps [200 with --model, 50 from scratch].
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Clip the global gradient norm at this value (positive); 0 disables [1.0].
    #[arg(long)]
    pub max_grad_norm: Option<f32>,
    /// Examples per forward/backward pass [1 with --model, 16 from scratch].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Passes averaged into one optimizer step [32 with --model, 1 from scratch].
    #[arg(long)]
    pub grad_accum: Option<usize>,
    /// Epochs [15 with --model, 8 from scratch].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Stop after this many optimizer steps: the learning rate's linear decay ends at 0 there
    /// (with fewer steps than --warmup, it stops while still rising).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Seed of the initialization, the example order and dropout [42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// How the chunks of a long example combine their candidate logits [mean].
    #[arg(long, value_enum)]
    pub combine: Option<Combine>,
    /// Optimizer steps between log lines [10].
    #[arg(long)]
    pub log_every: Option<usize>,
    /// Optimizer steps between dev evaluations [200 with --model, 100 from scratch].
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Optimizer steps between checkpoints [200 with --model, 100 from scratch].
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    /// Newest checkpoints kept, at least 1 [2].
    #[arg(long)]
    pub keep_checkpoints: Option<usize>,
    /// Examples per batch of the dev evaluations (examples of similar lengths together) [8].
    #[arg(long)]
    pub eval_batch_size: Option<usize>,
    /// Also at most this many tokens per dev-evaluation batch, padding counted (its chunks × its
    /// longest chunk), which bounds the evaluation's memory; an example over it is a batch of
    /// its own [no limit].
    #[arg(long, value_name = "TOKENS")]
    pub eval_max_tokens: Option<usize>,
    /// Longest chunk in tokens; longer examples are split [4096, at most the model's positions].
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Keep only the first chunk of examples longer than --max-len.
    #[arg(long)]
    pub truncate: bool,
    /// No log lines (and no data-preparation progress).
    #[arg(long)]
    pub quiet: bool,
}

/// What a run directory records about its data and model, for `--resume` and `eval`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// Training file (absolute in runs written since paths were made absolute).
    pub train: PathBuf,
    /// Dev file (absolute, as `train`).
    pub dev: PathBuf,
    /// Tokenizer (absolute, as `train`).
    pub tokenizer: PathBuf,
    /// Chunk length.
    pub max_len: usize,
    /// Truncation instead of chunking.
    pub truncate: bool,
    /// The starting weights (`tiny`, `base`, a config file or a checkpoint directory).
    pub initialized_from: String,
    /// The training settings.
    pub settings: TrainSettings,
}

/// A finished (or checkpointed) run, loaded for evaluation or export.
pub struct TrainedRun {
    /// `run.json`.
    pub record: RunRecord,
    /// `config.json`.
    pub config: LongformerConfig,
    /// The weights file loaded.
    pub weights: PathBuf,
    /// The run's tokenizer, checked against the model.
    pub tokenizer: WikiHopTokenizer,
    /// The model with those weights.
    pub model: WikiHopModel,
}

impl TrainedRun {
    /// Loads the run in `run_dir` with the weights `which` names ([`run_weights`]) on `device`.
    pub fn load(run_dir: &Path, which: &str, device: &Device) -> Result<Self> {
        let record = RunRecord::read(run_dir)?;
        let weights = run_weights(run_dir, which)?;
        let (config, tokenizer) = record.model_and_tokenizer(run_dir)?;
        let model = load_model(WikiHopModel::init(&config, device), &weights)?;
        Ok(Self {
            record,
            config,
            weights,
            tokenizer,
            model,
        })
    }
}

impl RunRecord {
    /// Reads `RUN_DIR/run.json`.
    pub fn read(run_dir: &Path) -> Result<Self> {
        let mut record: Self = read_json(&run_dir.join("run.json"))?;
        // Runs written before 0 was refused kept one checkpoint with it.
        record.settings.keep_checkpoints = record.settings.keep_checkpoints.max(1);
        Ok(record)
    }

    /// Reads `RUN_DIR/config.json`.
    pub fn model_config(run_dir: &Path) -> Result<LongformerConfig> {
        Ok(LongformerConfig::from_json_file(
            run_dir.join("config.json"),
        )?)
    }

    /// The model configuration (`config.json`) and the tokenizer of the run in `run_dir`,
    /// checked against each other ([`check_model`](Self::check_model)).
    pub fn model_and_tokenizer(
        &self,
        run_dir: &Path,
    ) -> Result<(LongformerConfig, WikiHopTokenizer)> {
        let config = Self::model_config(run_dir)?;
        let tokenizer = self.tokenizer(run_dir)?;
        self.check_model(run_dir, &tokenizer, &config)?;
        Ok((config, tokenizer))
    }

    /// The run's tokenizer, from the path `run.json` records (named in the error when it has
    /// moved).
    pub fn tokenizer(&self, run_dir: &Path) -> Result<WikiHopTokenizer> {
        WikiHopTokenizer::from_dir(&self.tokenizer).with_context(|| {
            format!(
                "the run's tokenizer (recorded in {})",
                run_dir.join("run.json").display()
            )
        })
    }

    /// Checks that the run's tokenizer and chunk length fit the model of its `config.json`
    /// (see [`check_tokenizer`]; chunks of `max_len` tokens must have positions).
    pub fn check_model(
        &self,
        run_dir: &Path,
        tokenizer: &WikiHopTokenizer,
        config: &LongformerConfig,
    ) -> Result<()> {
        let config_file = run_dir.join("config.json");
        check_tokenizer(tokenizer, config, &config_file)?;
        if self.max_len > config.max_sequence_length() {
            bail!(
                "max_len {} in {} exceeds the model's maximum of {} tokens ({}: \
                 max_position_embeddings - pad_token_id - 1)",
                self.max_len,
                run_dir.join("run.json").display(),
                config.max_sequence_length(),
                config_file.display()
            );
        }
        Ok(())
    }

    /// The layout settings for preparing data.
    pub fn prepare_options(&self) -> PrepareOptions {
        PrepareOptions {
            config: PrepareConfig {
                layout: LayoutConfig {
                    max_len: self.max_len,
                    truncate: self.truncate,
                },
                strict: false,
                shuffle_seed: None,
            },
            cache_dir: Some(PathBuf::from("target/longformer-cache")),
            progress: ProgressMode::Auto,
        }
    }
}

/// Reads, tokenizes and groups a WikiHop file (skipped records are reported); a file with no
/// usable example is an error naming it and why.
pub fn load_examples(
    path: &Path,
    tokenizer: &WikiHopTokenizer,
    options: &PrepareOptions,
) -> Result<ExampleSet> {
    let prepared = prepare_file(path, tokenizer, options)
        .with_context(|| format!("preparing {}", path.display()))?;
    example_set(path, prepared.chunks, &prepared.summary, tokenizer)
}

/// The examples of `chunks`, prepared from `path` as `summary` says, or an error when there
/// are none; a note says how many records were skipped.
pub fn example_set(
    path: &Path,
    chunks: Vec<WikiHopChunk>,
    summary: &Summary,
    tokenizer: &WikiHopTokenizer,
) -> Result<ExampleSet> {
    let set = ExampleSet::new(chunks, tokenizer.pad_id());
    if set.is_empty() {
        let why = if summary.skipped.is_empty() {
            format!("it holds {} records", summary.records)
        } else {
            format!(
                "all {} of its records were skipped: {} (see `longformer prepare --strict`)",
                summary.records,
                summary.skipped_kinds()
            )
        };
        bail!("{} has no usable example: {why}", path.display());
    }
    if !summary.skipped.is_empty() {
        note(&format!(
            "{}: skipped {} bad records (see `longformer prepare --strict`)",
            path.display(),
            summary.skipped.len()
        ));
    }
    Ok(set)
}

/// Runs the command.
pub fn run(args: TrainArgs) -> Result<()> {
    let devices = args.backend.devices(args.devices)?;
    let autodiff = devices[0].clone().autodiff();
    // `lock`: a resumed run's directory is locked before anything else (see `run_lock`); a new
    // one once its data is ready, below.
    let (run_dir, record, start, config, tokenizer, model_dir, lock) = match &args.resume {
        Some(run_dir) => {
            if let Some(flag) = settings_flag_given(&args) {
                bail!(
                    "--resume continues with the run's saved settings (RUN_DIR/run.json); drop {flag}"
                );
            }
            let record = RunRecord::read(run_dir)?;
            let lock = RunLock::acquire(run_dir)?;
            // Before the data is prepared: a run without a checkpoint has nothing to resume.
            crate::checkpoint::latest_checkpoint(run_dir)?;
            let (config, tokenizer) = record.model_and_tokenizer(run_dir)?;
            record.settings.check_devices(&devices)?;
            let model = WikiHopModel::init(&config, &autodiff);
            (
                run_dir.clone(),
                record,
                Start::Resume(model),
                config,
                tokenizer,
                None,
                Some(lock),
            )
        }
        None => {
            let source = match (&args.model, &args.config) {
                (Some(dir), _) => ModelSource::Pretrained(dir.clone()),
                (None, Some(choice)) => ModelSource::Random(choice.clone()),
                (None, None) => ModelSource::Random(ConfigChoice::Tiny),
            };
            let sample = sample_dir();
            let tokenizer_dir = match (&args.tokenizer, source.dir()) {
                (Some(tokenizer), _) => tokenizer.clone(),
                (None, Some(dir)) if has_tokenizer_files(dir) => dir.to_path_buf(),
                (None, Some(dir)) => bail!(
                    "{} has no tokenizer (tokenizer.json, or vocab.json and merges.txt): \
                     pass the model's tokenizer with --tokenizer DIR",
                    dir.display()
                ),
                (None, None) => sample.join("tokenizer"),
            };
            let tokenizer = WikiHopTokenizer::from_dir(&tokenizer_dir)?;
            let seed = args.seed.unwrap_or(42);
            let settings = settings(&args, matches!(source, ModelSource::Pretrained(_)), seed);
            settings.check_devices(&devices)?;
            let run_dir = args.run_dir.clone().unwrap_or_else(default_run_dir);
            check_run_dir(&run_dir, source.dir())?;
            autodiff.seed(seed);
            let (model, config) = source.build(&tokenizer, &autodiff)?;
            let max_len = args
                .max_len
                .unwrap_or(DEFAULT_MAX_LEN)
                .min(config.max_sequence_length());
            let record = RunRecord {
                train: absolute(
                    &args
                        .train
                        .clone()
                        .unwrap_or_else(|| sample.join("train.json")),
                )?,
                dev: absolute(&args.dev.clone().unwrap_or_else(|| sample.join("dev.json")))?,
                tokenizer: absolute(&tokenizer_dir)?,
                max_len,
                truncate: args.truncate,
                initialized_from: match &source {
                    ModelSource::Pretrained(dir) => absolute(dir)?.display().to_string(),
                    ModelSource::Random(ConfigChoice::Tiny) => "tiny".into(),
                    ModelSource::Random(ConfigChoice::Base) => "base".into(),
                    ModelSource::Random(ConfigChoice::File(f)) => {
                        absolute(f)?.display().to_string()
                    }
                },
                settings,
            };
            let model_dir = source.dir().map(Path::to_path_buf);
            (
                run_dir,
                record,
                Start::Fresh(model),
                config,
                tokenizer,
                model_dir,
                None,
            )
        }
    };
    let mut options = record.prepare_options();
    if args.quiet {
        options.progress = ProgressMode::Hidden;
    }
    let train = load_examples(&record.train, &tokenizer, &options)?;
    let dev = load_examples(&record.dev, &tokenizer, &options)?;
    // Held until the process ends: one process per run directory.
    let _lock = match lock {
        Some(lock) => lock,
        None => {
            // A new run, written only now that it can start: a failed start leaves no
            // half-made run.
            let lock = RunLock::acquire(&run_dir)?;
            // Again, under the lock: another process may have started a run there meanwhile.
            check_run_dir(&run_dir, model_dir.as_deref())?;
            write_json(&run_dir.join("run.json"), &record)?;
            write_file(&run_dir.join("config.json"), config.to_hf_json().as_bytes())
                .with_context(|| format!("writing {}", run_dir.join("config.json").display()))?;
            lock
        }
    };
    let stop = stop_on_signal();
    let run = Run {
        dir: &run_dir,
        train: &train,
        dev: &dev,
        settings: &record.settings,
        backend: args.backend.feature(),
        verbose: !args.quiet,
        stop: Some(stop),
        gradient_checkpointing: args.gradient_checkpointing,
    };
    let trained = match run.train(start, &devices) {
        Err(e) if e.is::<Interrupted>() => {
            note(&format!(
                "{e}; continue with `longformer train --resume {}`",
                run_dir.display()
            ));
            std::process::exit(INTERRUPTED_EXIT_CODE);
        }
        Err(e) => return Err(with_resume_hint(e, &run_dir)),
        Ok(trained) => trained,
    };
    let s = &trained.summary;
    let _ = writeln!(
        std::io::stdout(),
        "dev accuracy {:.4} (chance {:.4}, best {:.4} at step {}) after {} optimizer steps, {:.1} s; run directory {}",
        s.dev_accuracy,
        s.chance_accuracy,
        s.best_dev_accuracy,
        s.best_step,
        s.optimizer_steps,
        s.wall_seconds,
        run_dir.display()
    );
    Ok(())
}

/// `path` made absolute against the current directory (run.json must not depend on where
/// `--resume` or `eval` run).
fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
}

/// Refuses a run directory that would mix a new run with other files: one holding a run with
/// checkpoints (continue it with `--resume`), the `--model` directory, or any other non-empty
/// directory without a `run.json`. A run stopped before its first checkpoint starts over.
fn check_run_dir(run_dir: &Path, model: Option<&Path>) -> Result<()> {
    if crate::checkpoint::checkpoints(run_dir)?.last().is_some() {
        bail!(
            "{} already holds a run; continue it with --resume {} or pick another --run-dir",
            run_dir.display(),
            run_dir.display()
        );
    }
    let entries = match std::fs::read_dir(run_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", run_dir.display())),
    };
    if let Some(model) = model
        && std::fs::canonicalize(run_dir).ok() == std::fs::canonicalize(model).ok()
    {
        bail!(
            "--run-dir {} is the --model directory: pick another",
            run_dir.display()
        );
    }
    let mut entries = entries.filter(|entry| {
        entry
            .as_ref()
            .map_or(true, |e| e.file_name() != crate::run_lock::LOCK_FILE)
    });
    if entries.next().is_some() && !run_dir.join("run.json").is_file() {
        bail!(
            "--run-dir {} exists, is not empty and holds no run: pick another or an empty one",
            run_dir.display()
        );
    }
    Ok(())
}

/// The settings of a new run: the flags, else the defaults for `pretrained` or not.
fn settings(args: &TrainArgs, pretrained: bool, seed: u64) -> TrainSettings {
    let paper = TrainSettings::default();
    let base = if pretrained {
        paper
    } else {
        TrainSettings {
            optimizer: OptimizerSettings {
                lr: 1e-3,
                warmup_steps: 50,
                ..OptimizerSettings::default()
            },
            batch_size: 16,
            grad_accum: 1,
            epochs: 8,
            eval_every: 100,
            checkpoint_every: 100,
            ..paper
        }
    };
    TrainSettings {
        optimizer: OptimizerSettings {
            lr: args.lr.unwrap_or(base.optimizer.lr),
            weight_decay: args.weight_decay.unwrap_or(base.optimizer.weight_decay),
            beta1: args.beta1.unwrap_or(base.optimizer.beta1),
            beta2: args.beta2.unwrap_or(base.optimizer.beta2),
            epsilon: args.epsilon.unwrap_or(base.optimizer.epsilon),
            warmup_steps: args.warmup.unwrap_or(base.optimizer.warmup_steps),
            max_grad_norm: match args.max_grad_norm {
                Some(0.0) => None,
                Some(n) => Some(n),
                None => base.optimizer.max_grad_norm,
            },
        },
        batch_size: args.batch_size.unwrap_or(base.batch_size),
        grad_accum: args.grad_accum.unwrap_or(base.grad_accum),
        epochs: args.epochs.unwrap_or(base.epochs),
        max_steps: args.max_steps,
        seed,
        combine: args.combine.unwrap_or(base.combine),
        log_every: args.log_every.unwrap_or(base.log_every),
        eval_every: args.eval_every.unwrap_or(base.eval_every),
        checkpoint_every: args.checkpoint_every.unwrap_or(base.checkpoint_every),
        keep_checkpoints: args.keep_checkpoints.unwrap_or(base.keep_checkpoints),
        precision: args.dtype.unwrap_or(base.precision),
        loss_scaling: loss_scaling(args),
        eval_batch_size: args.eval_batch_size.unwrap_or(base.eval_batch_size),
        eval_max_tokens: args.eval_max_tokens.or(base.eval_max_tokens),
    }
}

/// The loss scaling of `--dtype f16` (its flags, else PyTorch's defaults); none for the other
/// dtypes unless a loss-scale flag is given, which [`TrainSettings::validate`] then refuses.
fn loss_scaling(args: &TrainArgs) -> Option<LossScaling> {
    let flags = args.loss_scale.is_some() || args.loss_scale_growth_interval.is_some();
    if args.dtype != Some(Precision::F16) && !flags {
        return None;
    }
    let default = LossScaling::default();
    Some(LossScaling {
        init_scale: args.loss_scale.unwrap_or(default.init_scale),
        growth_interval: args
            .loss_scale_growth_interval
            .unwrap_or(default.growth_interval),
    })
}

/// `error` of a run in `run_dir`, with, when the device failed mid-run (out of memory) after a
/// checkpoint, how to continue from it: the checkpoints before the failure hold, and
/// `--gradient-checkpointing`, allowed with `--resume`, takes most of a pass's memory off.
fn with_resume_hint(error: anyhow::Error, run_dir: &Path) -> anyhow::Error {
    if !is_device_failure(&error) {
        return error;
    }
    match crate::checkpoint::latest_checkpoint(run_dir) {
        Ok(newest) => error.context(format!(
            "training stopped at a device failure; its newest checkpoint, {}, holds: continue \
             from it with `longformer train --resume {}` (add --gradient-checkpointing if the \
             device ran out of memory)",
            newest.display(),
            run_dir.display()
        )),
        Err(_) => error,
    }
}

/// The first flag that sets data or training settings, which a resumed run takes from its
/// `run.json` instead.
fn settings_flag_given(args: &TrainArgs) -> Option<&'static str> {
    let given = [
        ("--train", args.train.is_some()),
        ("--dev", args.dev.is_some()),
        ("--tokenizer", args.tokenizer.is_some()),
        ("--lr", args.lr.is_some()),
        ("--weight-decay", args.weight_decay.is_some()),
        ("--beta1", args.beta1.is_some()),
        ("--beta2", args.beta2.is_some()),
        ("--epsilon", args.epsilon.is_some()),
        ("--warmup", args.warmup.is_some()),
        ("--max-grad-norm", args.max_grad_norm.is_some()),
        ("--batch-size", args.batch_size.is_some()),
        ("--grad-accum", args.grad_accum.is_some()),
        ("--epochs", args.epochs.is_some()),
        ("--max-steps", args.max_steps.is_some()),
        ("--seed", args.seed.is_some()),
        ("--combine", args.combine.is_some()),
        ("--log-every", args.log_every.is_some()),
        ("--eval-every", args.eval_every.is_some()),
        ("--checkpoint-every", args.checkpoint_every.is_some()),
        ("--keep-checkpoints", args.keep_checkpoints.is_some()),
        ("--eval-batch-size", args.eval_batch_size.is_some()),
        ("--eval-max-tokens", args.eval_max_tokens.is_some()),
        ("--dtype", args.dtype.is_some()),
        ("--loss-scale", args.loss_scale.is_some()),
        (
            "--loss-scale-growth-interval",
            args.loss_scale_growth_interval.is_some(),
        ),
        ("--max-len", args.max_len.is_some()),
        ("--truncate", args.truncate),
    ];
    given
        .into_iter()
        .find(|(_, set)| *set)
        .map(|(flag, _)| flag)
}

fn default_run_dir() -> PathBuf {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from(format!("runs/wikihop-{now}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readback::DeviceFailure;

    /// A device failure after a checkpoint says how to continue from it; before one, and for
    /// other errors (which a resumed run would meet again), the error is left as it is.
    #[test]
    fn a_device_failure_after_a_checkpoint_says_how_to_resume() {
        let run = std::env::temp_dir().join(format!("lf-resume-hint-{}", std::process::id()));
        let failure = || {
            anyhow::Error::from(DeviceFailure {
                what: "the loss".into(),
                reason: "can't allocate buffer".into(),
            })
            .context("step 3")
        };
        let plain = with_resume_hint(failure(), &run).to_string();
        assert_eq!(plain, "step 3");
        let step = run.join("checkpoints/step-00000002");
        std::fs::create_dir_all(&step).unwrap();
        std::fs::write(step.join("state.json"), "{}").unwrap();
        let hinted = format!("{:#}", with_resume_hint(failure(), &run));
        assert!(
            hinted.contains("continue from it with `longformer train --resume")
                && hinted.contains("step-00000002")
                && hinted.contains("--gradient-checkpointing")
                && hinted.contains("can't allocate buffer"),
            "{hinted}"
        );
        let other = with_resume_hint(anyhow::anyhow!("a batch does not fit the model"), &run);
        assert_eq!(other.to_string(), "a batch does not fit the model");
        std::fs::remove_dir_all(&run).unwrap();
    }
}
