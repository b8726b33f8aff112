//! Step checkpoints of a training run, written atomically.
//!
//! ```text
//! RUN_DIR/checkpoints/step-00000120/
//!     model.bpk       WikiHopModel weights (burnpack; keeps parameter ids)
//!     optimizer.bpk   AdamW moments, keyed by parameter id
//!     state.json      TrainState: step, epoch, position in the epoch, history, best dev,
//!                     the training data's fingerprint and the settings
//! ```
//! A checkpoint is written into `step-XXXXXXXX.partial/` and renamed when complete, so a
//! process killed while saving leaves the previous checkpoint intact and the half-written
//! one is ignored (and replaced when the resumed run saves that step again).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::{BurnpackStore, ModuleSnapshot};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::examples::DataFingerprint;
use crate::loss_scale::LossScaler;
use crate::metrics::{History, Interval};
use crate::model::WikiHopModel;
use crate::trainer::TrainSettings;

/// Where training stands: everything besides the weights needed to continue exactly.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps taken.
    pub optimizer_step: usize,
    /// Current epoch (0-based).
    pub epoch: usize,
    /// Batches of this epoch already consumed.
    pub batches_done: usize,
    /// Training examples processed so far.
    pub examples_seen: usize,
    /// Wall time spent training before this point, in seconds (over all resumed sessions).
    pub wall_seconds: f64,
    /// Best dev accuracy so far and its step.
    pub best: Option<BestDev>,
    /// Metrics so far.
    pub history: History,
    /// The training examples the run trains on; a resumed run must have the same (absent in
    /// checkpoints written before it was recorded).
    #[serde(default)]
    pub data: Option<DataFingerprint>,
    /// The settings the run trains with; a resumed run must have the same, but for the
    /// logging, evaluation and checkpoint cadence (absent in older checkpoints).
    #[serde(default)]
    pub settings: Option<TrainSettings>,
    /// The log interval in progress (absent in older checkpoints: a run resumed from one logs
    /// only the steps after the resume in its next line).
    #[serde(default)]
    pub interval: Interval,
    /// The loss scale of a run with f16 passes (absent in other runs).
    #[serde(default)]
    pub loss_scaler: Option<LossScaler>,
    /// Optimizer steps skipped so far because their f16 gradients overflowed.
    #[serde(default)]
    pub skipped_steps: usize,
}

/// The best dev evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BestDev {
    /// Optimizer step of the evaluation.
    pub step: usize,
    /// Dev accuracy.
    pub accuracy: f64,
}

/// Name of the checkpoint directory of `step`.
fn step_dir(run_dir: &Path, step: usize) -> PathBuf {
    run_dir.join("checkpoints").join(format!("step-{step:08}"))
}

/// Saves a model as burnpack at `path` (replacing it).
pub fn save_model(model: &WikiHopModel, path: &Path) -> Result<()> {
    let mut store = BurnpackStore::from_file(path)
        .auto_extension(false)
        .overwrite(true);
    model
        .save_into(&mut store)
        .with_context(|| format!("writing model weights {}", path.display()))
}

/// The weights file `which` names in the run `run_dir`: `best` or `final` (that directory's
/// `model.bpk`), a checkpoint directory (its `model.bpk`) or a `model.bpk` file; an error saying
/// what `--weights` takes when there is none.
pub fn run_weights(run_dir: &Path, which: &str) -> Result<PathBuf> {
    let weights = match which {
        "best" | "final" => run_dir.join(which).join("model.bpk"),
        path if Path::new(path).is_dir() => Path::new(path).join("model.bpk"),
        path => PathBuf::from(path),
    };
    if !weights.is_file() {
        bail!(
            "no weights at {}: --weights takes `best`, `final`, a checkpoint directory \
             (RUN_DIR/checkpoints/step-N) or a model.bpk file",
            weights.display()
        );
    }
    Ok(weights)
}

/// Loads burnpack weights from `path` into `model`; every parameter must be present with its shape.
pub fn load_model(mut model: WikiHopModel, path: &Path) -> Result<WikiHopModel> {
    let mut store = BurnpackStore::from_file(path).auto_extension(false);
    let result = model.load_from(&mut store).map_err(|e| {
        anyhow::anyhow!(
            "cannot load model weights {} (a model.bpk of this run, matching its config.json, \
             is expected): {}",
            path.display(),
            shortened(&e.to_string())
        )
    })?;
    // Runs started from a pretrained model before the pooler was dropped saved its weights;
    // WikiHop never used them.
    let unused: Vec<&String> = result
        .unused
        .iter()
        .filter(|key| !key.split('.').any(|part| part == "pooler"))
        .collect();
    if !result.missing.is_empty() || !result.errors.is_empty() || !unused.is_empty() {
        let missing: Vec<&str> = result.missing.iter().map(|(p, _)| p.as_str()).collect();
        let errors: Vec<String> = result.errors.iter().map(|e| format!("{e:?}")).collect();
        bail!(
            "{} does not match the model (is it this run's model.bpk, with this run's \
             config.json?): missing {}; unexpected {}; mismatched {}",
            path.display(),
            first_few(&missing),
            first_few(&unused),
            first_few(&errors),
        );
    }
    Ok(model)
}

/// `items` as `N: a, b, c, ...`: the count and the first three, for errors about keys.
fn first_few<T: std::fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    let shown: Vec<String> = items
        .iter()
        .take(3)
        .map(|i| shortened(&i.to_string()))
        .collect();
    let more = if items.len() > 3 { ", ..." } else { "" };
    format!("{} ({}{more})", items.len(), shown.join(", "))
}

/// `text`, cut to its first 300 characters (Burn's load errors list every key).
fn shortened(text: &str) -> String {
    const LIMIT: usize = 300;
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!(
            "{} ... ({} characters more)",
            &text[..cut],
            text[cut..].chars().count()
        ),
        None => text.to_string(),
    }
}

/// Writes the checkpoint of `state.optimizer_step` atomically, then keeps only the `keep`
/// newest checkpoints. Returns its directory.
pub fn save_checkpoint(
    run_dir: &Path,
    model: &WikiHopModel,
    optimizer: &ModuleOptimizer,
    state: &TrainState,
    keep: usize,
) -> Result<PathBuf> {
    let dir = step_dir(run_dir, state.optimizer_step);
    let partial = dir.with_extension("partial");
    if partial.exists() {
        fs::remove_dir_all(&partial).with_context(|| format!("removing {}", partial.display()))?;
    }
    fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;
    save_model(model, &partial.join("model.bpk"))?;
    optimizer
        .save(partial.join("optimizer.bpk"))
        .map_err(|e| anyhow::anyhow!("writing optimizer state in {}: {e:?}", partial.display()))?;
    write_json(&partial.join("state.json"), state)?;
    // On disk before the rename makes the checkpoint the newest: after a crash of the machine
    // (not only of the process), the newest complete checkpoint is whole.
    for file in ["model.bpk", "optimizer.bpk", "state.json"] {
        sync(&partial.join(file))?;
    }
    sync_dir(&partial)?;
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::rename(&partial, &dir)
        .with_context(|| format!("renaming {} to {}", partial.display(), dir.display()))?;
    sync_dir(&run_dir.join("checkpoints"))?;
    prune(run_dir, keep)?;
    Ok(dir)
}

/// Flushes the file at `path` to the disk.
fn sync(path: &Path) -> Result<()> {
    fs::File::open(path)
        .and_then(|file| file.sync_all())
        .with_context(|| format!("flushing {} to disk", path.display()))
}

/// Flushes a directory's entries (a rename in it) to the disk, where the platform can.
fn sync_dir(dir: &Path) -> Result<()> {
    if cfg!(unix) { sync(dir) } else { Ok(()) }
}

/// A checkpoint read back.
pub struct Checkpoint {
    /// The model with the checkpoint's weights.
    pub model: WikiHopModel,
    /// The optimizer with the checkpoint's moments.
    pub optimizer: ModuleOptimizer,
    /// Where training stood.
    pub state: TrainState,
    /// The checkpoint directory.
    pub dir: PathBuf,
}

/// The newest complete checkpoint directory of `run_dir`; an error naming the run directory
/// when it has none.
pub fn latest_checkpoint(run_dir: &Path) -> Result<PathBuf> {
    checkpoints(run_dir)?
        .pop()
        .ok_or_else(|| no_checkpoint(run_dir))
}

/// The error for a run directory without a complete checkpoint.
fn no_checkpoint(run_dir: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "{} has no complete checkpoint (looked for checkpoints/step-*/): the run stopped before \
         its first one; start it again with its original command (its settings are in {})",
        run_dir.display(),
        run_dir.join("run.json").display()
    )
}

/// Loads the newest complete checkpoint of `run_dir` into `model` and `optimizer` (freshly
/// built with the run's settings, on `device`). A checkpoint that cannot be read (a crash of
/// the machine can leave one so) is passed over, with a note on stderr, for the one before it;
/// the error is the newest one's when none can be read.
pub fn load_latest(
    run_dir: &Path,
    model: WikiHopModel,
    optimizer: ModuleOptimizer,
    device: &Device,
) -> Result<Checkpoint> {
    let mut first_error: Option<anyhow::Error> = None;
    for dir in checkpoints(run_dir)?.into_iter().rev() {
        match load_checkpoint(&dir, model.clone(), optimizer.clone(), device) {
            Ok(checkpoint) => return Ok(checkpoint),
            Err(e) => {
                crate::progress::note(&format!(
                    "cannot read the checkpoint {} ({e:#}); trying the one before it",
                    dir.display()
                ));
                first_error.get_or_insert(e);
            }
        }
    }
    Err(match first_error {
        Some(e) => e.context(format!(
            "no checkpoint of {} can be read",
            run_dir.display()
        )),
        None => no_checkpoint(run_dir),
    })
}

/// Loads the checkpoint in `dir`.
fn load_checkpoint(
    dir: &Path,
    model: WikiHopModel,
    optimizer: ModuleOptimizer,
    device: &Device,
) -> Result<Checkpoint> {
    let state: TrainState = read_json(&dir.join("state.json"))?;
    let model = load_model(model, &dir.join("model.bpk"))?.fork(device);
    let optimizer = optimizer
        .load(dir.join("optimizer.bpk"))
        .map_err(|e| anyhow::anyhow!("reading optimizer state in {}: {e:?}", dir.display()))?;
    Ok(Checkpoint {
        model,
        optimizer,
        state,
        dir: dir.to_path_buf(),
    })
}

/// Complete checkpoint directories of a run, oldest first.
pub fn checkpoints(run_dir: &Path) -> Result<Vec<PathBuf>> {
    let root = run_dir.join("checkpoints");
    if !root.is_dir() {
        return Ok(Vec::new());
    }
    let mut dirs: Vec<(usize, PathBuf)> = Vec::new();
    for entry in fs::read_dir(&root).with_context(|| format!("listing {}", root.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(step) = name.strip_prefix("step-").and_then(|s| s.parse().ok())
            && path.join("state.json").is_file()
        {
            dirs.push((step, path));
        }
    }
    dirs.sort();
    Ok(dirs.into_iter().map(|(_, p)| p).collect())
}

fn prune(run_dir: &Path, keep: usize) -> Result<()> {
    let all = checkpoints(run_dir)?;
    for old in &all[..all.len().saturating_sub(keep.max(1))] {
        fs::remove_dir_all(old).with_context(|| format!("removing {}", old.display()))?;
    }
    Ok(())
}

/// Writes `value` as pretty JSON through a temporary file and a rename
/// ([`crate::output::write_file`]).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)? + "\n";
    crate::output::write_file(path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Reads a JSON file, naming it in errors.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;
    use longformer_model::LongformerConfig;

    use super::*;

    /// Runs started from a pretrained model before the pooler was dropped saved its weights:
    /// they still load (the pooler's keys are skipped), while other mismatches are errors.
    #[test]
    fn weights_with_a_pooler_load_into_the_wikihop_model() {
        let device = Device::flex();
        let config = LongformerConfig::tiny(50);
        let dir = std::env::temp_dir().join(format!("lf-pooler-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("model.bpk");
        let with_pooler = WikiHopModel::new(config.init(&device), config.hidden_size, &device);
        assert!(with_pooler.longformer.pooler.is_some());
        save_model(&with_pooler, &path).unwrap();
        load_model(WikiHopModel::init(&config, &device), &path).unwrap();

        let wider = LongformerConfig::tiny(60);
        let error = load_model(WikiHopModel::init(&wider, &device), &path).unwrap_err();
        assert!(format!("{error:#}").contains("model.bpk"), "{error:#}");

        // Another layout (more layers, other widths): the message counts the keys and shows a
        // few, rather than Burn's debug listing of every one.
        let mut other = LongformerConfig::tiny(50);
        other.num_hidden_layers += 3;
        other.intermediate_size *= 2;
        let error = load_model(WikiHopModel::init(&other, &device), &path).unwrap_err();
        let message = format!("{error:#}");
        assert!(
            message.contains("is expected") && message.len() < 1500,
            "{message}"
        );
        fs::remove_dir_all(dir).unwrap();
    }
}
