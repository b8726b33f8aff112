//! Accuracy and predictions of a [`WikiHopModel`] on a set of examples.

use anyhow::Context;
use burn::tensor::Device;
#[cfg(doc)]
use longformer_model::InputError;
use longformer_model::batching::BatchLimit;
use serde::Serialize;

use crate::examples::ExampleSet;
use crate::model::{Combine, WikiHopModel, WikiHopOutput};
use crate::readback::{read_back, read_scalar};

/// The scores the model gave one example.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// Example id.
    pub id: String,
    /// Index of the highest-scoring candidate.
    pub predicted_index: usize,
    /// Index of the answer.
    pub answer_index: usize,
    /// One logit per candidate.
    pub scores: Vec<f32>,
}

impl Prediction {
    /// The cross-entropy of the scores against the answer: this example's share of the loss.
    pub fn loss(&self) -> f64 {
        let max = self
            .scores
            .iter()
            .fold(f64::NEG_INFINITY, |m, &s| m.max(f64::from(s)));
        let sum: f64 = self
            .scores
            .iter()
            .map(|&s| (f64::from(s) - max).exp())
            .sum();
        max + sum.ln() - f64::from(self.scores[self.answer_index])
    }
}

/// Result of [`evaluate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction of examples whose answer scored highest.
    pub accuracy: f64,
    /// One per example, in set order.
    pub predictions: Vec<Prediction>,
}

/// Host-side view of a forward pass: per-example predictions and the batch's mean loss, or the
/// device's failure to compute them.
pub fn predictions(
    output: &WikiHopOutput,
    candidates: &[usize],
) -> anyhow::Result<(Vec<Prediction>, f64)> {
    let [examples, max_candidates] = output.logits.dims();
    let logits: Vec<f32> = read_back(output.logits.clone(), "the candidates' logits")?
        .try_to_vec_as::<f32>()
        .expect("f32 logits");
    let answers: Vec<i64> = read_back(output.answers.clone(), "the answers")?
        .try_to_vec_as::<i64>()
        .expect("int answers");
    let loss = f64::from(read_scalar(output.loss.clone(), "the loss")?);
    let predictions = (0..examples)
        .map(|e| {
            let scores = logits[e * max_candidates..e * max_candidates + candidates[e]].to_vec();
            let predicted_index = scores
                .iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &s)| {
                    if s > best.1 { (i, s) } else { best }
                })
                .0;
            Prediction {
                id: output.ids[e].clone(),
                predicted_index,
                answer_index: answers[e] as usize,
                scores,
            }
        })
        .collect();
    Ok((predictions, loss))
}

/// Runs `model` (in inference mode: pass `model.valid()`) over `set`, in batches within `limit`
/// of examples of similar lengths ([`ExampleSet::longest_first`]), its predictions in file
/// order; or returns the encoder's error for the first batch it cannot take (an
/// [`InputError`], see [`WikiHopModel::try_forward`]) or the device's failure to compute one.
pub fn evaluate(
    model: &WikiHopModel,
    set: &ExampleSet,
    limit: BatchLimit,
    combine: Combine,
    device: &Device,
) -> anyhow::Result<Evaluation> {
    let mut all = Vec::with_capacity(set.len());
    let mut loss_sum = 0.0;
    for indices in set.longest_first(limit) {
        let batch = set.batch(&indices, device);
        let output = model
            .try_forward(&batch, combine)
            .context("a batch does not fit the model")?;
        let candidates: Vec<usize> = indices
            .iter()
            .map(|&i| set.examples[i].candidates())
            .collect();
        let (predictions, loss) = predictions(&output, &candidates)?;
        loss_sum += loss * indices.len() as f64;
        all.extend(indices.into_iter().zip(predictions));
    }
    all.sort_by_key(|(index, _)| *index);
    let all: Vec<Prediction> = all.into_iter().map(|(_, p)| p).collect();
    let n = all.len().max(1) as f64;
    let correct = all
        .iter()
        .filter(|p| p.predicted_index == p.answer_index)
        .count();
    Ok(Evaluation {
        loss: loss_sum / n,
        accuracy: correct as f64 / n,
        predictions: all,
    })
}
