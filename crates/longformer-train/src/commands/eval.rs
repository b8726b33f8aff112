//! `longformer eval`: accuracy of a trained WikiHop model on a file, and its predictions; records
//! without an answer are predicted only.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use longformer_data::wikihop::parse_wikihop;
use longformer_data::{prepare_bytes, read_wikihop};
use longformer_model::batching::BatchLimit;
use serde::Serialize;

use crate::backend::{Backend, Precision};
use crate::checkpoint::write_json;
use crate::commands::train::{TrainedRun, example_set, load_examples};
use crate::evaluate::{Prediction, evaluate};
use crate::unlabeled::fill_missing_answers;

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
    /// WikiHop file to evaluate [default: the run's dev file]. Records without an `answer`
    /// are predicted only: no `correct` in their prediction, not counted in the accuracy and
    /// loss.
    #[arg(long, value_name = "FILE.json")]
    pub data: Option<PathBuf>,
    /// Where to write the predictions [default: RUN_DIR/predictions.json].
    #[arg(long, value_name = "FILE.json")]
    pub out: Option<PathBuf>,
    /// Examples per batch: examples of similar lengths go together, the longest first, each
    /// batch padded to its own longest chunk.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Also at most this many tokens per batch, padding counted (the batch's chunks × its
    /// longest chunk): batches of long examples hold fewer of them, which bounds memory, and
    /// batches of short ones up to `--batch-size`. An example over it alone is a batch of its
    /// own [default: no limit].
    #[arg(long, value_name = "TOKENS")]
    pub max_tokens: Option<usize>,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    pub backend: Backend,
    /// Float dtype to run the model in (`f16`/`bf16`: flex, or a GPU that has it; f16 on
    /// Vulkan and WGSL GPUs); the attention core and the answer scores compute in f32 either
    /// way.
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub dtype: Precision,
}

/// One example in `predictions.json`.
#[derive(Debug, Serialize)]
struct PredictionJson {
    /// The predicted candidate's text.
    prediction: String,
    /// Its index among the candidates.
    predicted_index: usize,
    /// Whether it is the answer (absent for a record without one).
    #[serde(skip_serializing_if = "Option::is_none")]
    correct: Option<bool>,
    /// One score (logit) per candidate, in the file's candidate order.
    scores: Vec<f32>,
}

/// Runs the command.
pub fn run(args: EvalArgs) -> Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    if args.max_tokens == Some(0) {
        bail!("--max-tokens must be at least 1");
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
    let model = args.dtype.apply(model, &device)?;
    let data = args.data.clone().unwrap_or_else(|| record.dev.clone());
    let options = record.prepare_options();
    // Records without an answer are predicted, not scored (see `unlabeled`); a file where every
    // record has one takes the pipeline's cached path. A file that cannot be read is left for
    // the pipeline to report.
    let bytes = std::fs::read(&data).ok();
    let filled = bytes.as_deref().and_then(fill_missing_answers);
    let set = match &filled {
        None => load_examples(&data, &tokenizer, &options)?,
        Some(filled) => {
            let (chunks, summary) = prepare_bytes(
                &filled.bytes,
                &data,
                &tokenizer,
                &options.config,
                options.progress,
            )
            .with_context(|| format!("preparing {}", data.display()))?;
            example_set(&data, chunks, &summary, &tokenizer)?
        }
    };
    // The records' candidates, from the bytes the examples were prepared from.
    let read = match filled.as_ref().map(|f| &f.bytes).or(bytes.as_ref()) {
        Some(bytes) => parse_wikihop(bytes, &data, false),
        None => read_wikihop(&data, false),
    };
    let unlabeled = filled.map(|f| f.unlabeled).unwrap_or_default();
    let evaluation = evaluate(
        &model,
        &set,
        BatchLimit::items(args.batch_size).with_tokens(args.max_tokens),
        record.settings.combine,
        &device,
    )
    .with_context(|| format!("evaluating {}", data.display()))?;
    let candidates: BTreeMap<String, Vec<String>> = read
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
                .with_context(|| {
                    format!(
                        "{} changed while it was evaluated: record {:?} is gone",
                        data.display(),
                        p.id
                    )
                })?;
            let labeled = !unlabeled.contains(&p.id);
            Ok((
                p.id.as_str(),
                PredictionJson {
                    prediction: text,
                    predicted_index: p.predicted_index,
                    correct: labeled.then_some(p.predicted_index == p.answer_index),
                    scores: p.scores.clone(),
                },
            ))
        })
        .collect::<Result<_>>()?;
    write_json(&out, &predictions)?;
    let scored: Vec<&Prediction> = evaluation
        .predictions
        .iter()
        .filter(|p| !unlabeled.contains(&p.id))
        .collect();
    let mut line = format!("{}: ", data.display());
    if scored.is_empty() {
        line += &format!("{} examples without answers, predicted", set.len());
    } else {
        let n = scored.len() as f64;
        let correct = scored
            .iter()
            .filter(|p| p.predicted_index == p.answer_index)
            .count();
        let chance = scored
            .iter()
            .map(|p| 1.0 / p.scores.len() as f64)
            .sum::<f64>();
        let loss = scored.iter().map(|p| p.loss()).sum::<f64>();
        line += &format!(
            "accuracy {:.4} over {} examples (chance {:.4}), loss {:.4}",
            correct as f64 / n,
            scored.len(),
            chance / n,
            loss / n
        );
        let predicted_only = evaluation.predictions.len() - scored.len();
        if predicted_only > 0 {
            line += &format!("; {predicted_only} more without answers, predicted");
        }
    }
    let _ = writeln!(
        std::io::stdout(),
        "{line}, weights {}; predictions in {}",
        weights.display(),
        out.display()
    );
    Ok(())
}
