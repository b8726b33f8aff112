//! [`ProblemType`]: what the outputs of a
//! [`LongformerForSequenceClassification`](crate::LongformerForSequenceClassification) mean (HF's
//! `problem_type`), which picks its loss, and [`ScoreFunction`], how its scores read as
//! probabilities.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// What a sequence classifier's outputs mean: HF's `problem_type` in `config.json`.
///
/// ```
/// use longformer_model::heads::ProblemType;
///
/// let problem: ProblemType = "multi_label_classification".parse().unwrap();
/// assert_eq!(problem, ProblemType::MultiLabelClassification);
/// // What HF's loss assumes without one: regression for one output, else by the labels' type.
/// assert_eq!(ProblemType::for_labels(None, 1, true), ProblemType::Regression);
/// assert_eq!(ProblemType::for_labels(None, 3, false), ProblemType::MultiLabelClassification);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemType {
    /// A real value per output; the loss is `regression_loss` (mean squared error), the scores
    /// read as they are.
    Regression,
    /// Exactly one label per row; the loss is `loss` (cross-entropy), the scores read through a
    /// softmax. Needs at least two labels.
    SingleLabelClassification,
    /// Any number of labels per row; the loss is `multi_label_loss` (binary cross-entropy), each
    /// score read through a sigmoid.
    MultiLabelClassification,
}

impl ProblemType {
    /// Every problem type, in HF's order.
    pub const ALL: [Self; 3] = [
        Self::Regression,
        Self::SingleLabelClassification,
        Self::MultiLabelClassification,
    ];

    /// HF's name, as `config.json` spells it.
    pub fn hf_name(self) -> &'static str {
        match self {
            Self::Regression => "regression",
            Self::SingleLabelClassification => "single_label_classification",
            Self::MultiLabelClassification => "multi_label_classification",
        }
    }

    /// The problem a loss of HF's `LongformerForSequenceClassification` solves: `configured`
    /// (the config's `problem_type`) when set, else regression for one label, single-label
    /// classification for integer labels and multi-label classification for float ones.
    pub fn for_labels(configured: Option<Self>, num_labels: usize, integer_labels: bool) -> Self {
        match configured {
            Some(problem) => problem,
            None if num_labels == 1 => Self::Regression,
            None if integer_labels => Self::SingleLabelClassification,
            None => Self::MultiLabelClassification,
        }
    }
}

impl fmt::Display for ProblemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hf_name())
    }
}

impl FromStr for ProblemType {
    type Err = ConfigError;

    /// HF's name of a problem type; another is an error listing them.
    fn from_str(name: &str) -> Result<Self, ConfigError> {
        Self::ALL
            .into_iter()
            .find(|problem| problem.hf_name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|p| p.hf_name()).collect();
                ConfigError::Invalid(format!(
                    "problem_type {name:?} is not one of {}",
                    names.join(", ")
                ))
            })
    }
}

/// How the scores of a sequence classifier read as probabilities, as HF's text-classification
/// pipeline reads them (see [`LongformerHeadConfig::score_function`](
/// crate::LongformerHeadConfig::score_function)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreFunction {
    /// As they are (regression).
    Identity,
    /// Each through a sigmoid, independently (multi-label classification, or one label).
    Sigmoid,
    /// A softmax over the labels (single-label classification).
    Softmax,
}

impl ScoreFunction {
    /// The function for a classifier of `num_labels` outputs and `problem_type`, as HF's
    /// pipeline picks it: none for regression, a sigmoid for multi-label classification or a
    /// single output, else a softmax.
    pub fn for_problem(problem_type: Option<ProblemType>, num_labels: usize) -> Self {
        match problem_type {
            Some(ProblemType::Regression) => Self::Identity,
            Some(ProblemType::MultiLabelClassification) => Self::Sigmoid,
            None if num_labels == 1 => Self::Sigmoid,
            Some(ProblemType::SingleLabelClassification) | None => Self::Softmax,
        }
    }

    /// `scores` (one row) read through this function.
    pub fn apply(self, scores: &[f32]) -> Vec<f32> {
        match self {
            Self::Identity => scores.to_vec(),
            Self::Sigmoid => scores.iter().map(|&s| 1.0 / (1.0 + (-s).exp())).collect(),
            Self::Softmax => {
                let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let exps: Vec<f32> = scores.iter().map(|&s| (s - max).exp()).collect();
                let sum: f32 = exps.iter().sum();
                exps.into_iter().map(|e| e / sum).collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_an_unknown_one_is_named() {
        for problem in ProblemType::ALL {
            assert_eq!(problem.hf_name().parse::<ProblemType>().unwrap(), problem);
            let json = serde_json::to_string(&problem).unwrap();
            assert_eq!(json, format!("{:?}", problem.hf_name()));
        }
        let error = "multi_label"
            .parse::<ProblemType>()
            .unwrap_err()
            .to_string();
        assert!(error.contains(r#"problem_type "multi_label" is not one of regression"#));
    }

    #[test]
    fn hf_infers_the_problem_from_the_labels_only_without_one() {
        use ProblemType::*;
        assert_eq!(ProblemType::for_labels(None, 1, true), Regression);
        assert_eq!(ProblemType::for_labels(None, 1, false), Regression);
        assert_eq!(
            ProblemType::for_labels(None, 2, true),
            SingleLabelClassification
        );
        assert_eq!(
            ProblemType::for_labels(None, 2, false),
            MultiLabelClassification
        );
        for problem in ProblemType::ALL {
            assert_eq!(ProblemType::for_labels(Some(problem), 1, true), problem);
        }
    }

    #[test]
    fn scores_read_as_hf_pipeline_reads_them() {
        use ProblemType::*;
        assert_eq!(
            ScoreFunction::for_problem(Some(Regression), 3),
            ScoreFunction::Identity
        );
        assert_eq!(
            ScoreFunction::for_problem(Some(MultiLabelClassification), 3),
            ScoreFunction::Sigmoid
        );
        assert_eq!(ScoreFunction::for_problem(None, 1), ScoreFunction::Sigmoid);
        assert_eq!(
            ScoreFunction::for_problem(Some(SingleLabelClassification), 3),
            ScoreFunction::Softmax
        );
        assert_eq!(ScoreFunction::for_problem(None, 3), ScoreFunction::Softmax);

        let scores = [2.0f32, 0.0, -1.0];
        assert_eq!(ScoreFunction::Identity.apply(&scores), scores);
        let sigmoid = ScoreFunction::Sigmoid.apply(&scores);
        assert!((sigmoid[0] - 0.880_797).abs() < 1e-6 && sigmoid[1] == 0.5);
        let softmax = ScoreFunction::Softmax.apply(&scores);
        assert!((softmax.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((softmax[0] - 0.843_794_7).abs() < 1e-6, "{softmax:?}");
    }
}
