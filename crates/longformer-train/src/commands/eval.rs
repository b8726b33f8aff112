//! `longformer eval`: accuracy of a trained WikiHop model on a file, and its predictions.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use longformer_data::read_wikihop;
use serde::Serialize;

use crate::backend::Backend;
use crate::checkpoint::write_json;
use crate::commands::train::{TrainedRun, load_examples};
use crate::evaluate::evaluate;

/// Flags of `longformer eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Run directory written by `longformer train` (run.json, config.json, best/, final/).
    #[arg(long, value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// Which weights: `best` (highest dev accuracy), `final`, a checkpoint directory
    /// (`RUN_DIR/checkpoints/step-N`) or a `model.bpk` file.
    #[arg(long, default_value = "best")]
    pub weights: String,
    /// WikiHop file to evaluate [default: the run's dev file].
    #[arg(long, value_name = "FILE.json")]
    pub data: Option<PathBuf>,
    /// Where to write the predictions [default: RUN_DIR/predictions.json].
    #[arg(long, value_name = "FILE.json")]
    pub out: Option<PathBuf>,
    /// Examples per batch.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    pub backend: Backend,
}

/// One example in `predictions.json`.
#[derive(Debug, Serialize)]
struct PredictionJson {
    /// The predicted candidate's text.
    prediction: String,
    /// Its index among the candidates.
    predicted_index: usize,
    /// Whether it is the answer.
    correct: bool,
    /// One score (logit) per candidate, in the file's candidate order.
    scores: Vec<f32>,
}

/// Runs the command.
pub fn run(args: EvalArgs) -> Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.run.join("predictions.json"));
    crate::output::check_writable(&out).with_context(|| format!("--out {}", out.display()))?;
    let device = args.backend.device()?;
    let TrainedRun {
        record,
        weights,
        tokenizer,
        model,
        ..
    } = TrainedRun::load(&args.run, &args.weights, &device)?;
    let data = args.data.clone().unwrap_or_else(|| record.dev.clone());
    let set = load_examples(&data, &tokenizer, &record.prepare_options())?;
    let evaluation = evaluate(
        &model,
        &set,
        args.batch_size,
        record.settings.combine,
        &device,
    )
    .with_context(|| format!("evaluating {}", data.display()))?;
    let candidates: BTreeMap<String, Vec<String>> = read_wikihop(&data, false)
        .with_context(|| format!("reading {}", data.display()))?
        .examples
        .into_iter()
        .map(|e| (e.id, e.candidates))
        .collect();
    let predictions: BTreeMap<&str, PredictionJson> = evaluation
        .predictions
        .iter()
        .map(|p| {
            let text = candidates
                .get(&p.id)
                .and_then(|c| c.get(p.predicted_index))
                .cloned()
                .unwrap_or_default();
            (
                p.id.as_str(),
                PredictionJson {
                    prediction: text,
                    predicted_index: p.predicted_index,
                    correct: p.predicted_index == p.answer_index,
                    scores: p.scores.clone(),
                },
            )
        })
        .collect();
    write_json(&out, &predictions)?;
    let _ = writeln!(
        std::io::stdout(),
        "{}: accuracy {:.4} over {} examples (chance {:.4}), loss {:.4}, weights {}; predictions in {}",
        data.display(),
        evaluation.accuracy,
        set.len(),
        set.chance_accuracy(),
        evaluation.loss,
        weights.display(),
        out.display()
    );
    Ok(())
}
