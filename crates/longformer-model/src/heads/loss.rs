//! HF's losses of the task heads (what their `forward(..., labels=...)` computes), in f32
//! whatever the logits' dtype: cross-entropy that skips an ignored label (`-100`, HF's
//! `CrossEntropyLoss` default; question answering ignores positions past the sequence), mean
//! squared error for regression, and binary cross-entropy on logits for multi-label
//! classification. Labels are checked on the host: one outside the classes is an error naming
//! it, where PyTorch stops with an index error.

use burn::tensor::activation::log_softmax;
use burn::tensor::{DType, Int, Tensor, TensorData};

use crate::error::InputError;
use crate::heads::{
    LongformerForMaskedLM, LongformerForMultipleChoice, LongformerForQuestionAnswering,
    LongformerForSequenceClassification, LongformerForTokenClassification, QuestionAnsweringOutput,
};

/// HF's ignored label (PyTorch's `CrossEntropyLoss` default `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

impl LongformerForMaskedLM {
    /// HF's masked-LM loss (`labels=` of `LongformerForMaskedLM`): the mean cross-entropy of
    /// the logits at the positions whose label is not -100 ([`IGNORE_INDEX`]).
    ///
    /// # Shapes
    /// - logits: `[batch_size, seq_length, vocab_size]` ([`forward`](Self::forward)'s)
    /// - labels: `[batch_size, seq_length]`, token ids, -100 where no loss is taken
    /// - output: `[1]`
    ///
    /// # Errors
    /// Labels of another shape, or a label outside the vocabulary other than -100, naming it.
    pub fn loss(&self, logits: Tensor<3>, labels: Tensor<2, Int>) -> Result<Tensor<1>, InputError> {
        per_token_cross_entropy("masked LM", logits, labels)
    }
}

impl LongformerForTokenClassification {
    /// HF's token-classification loss (`labels=` of `LongformerForTokenClassification`): the
    /// mean cross-entropy over the tokens whose label is not -100 ([`IGNORE_INDEX`]; HF's
    /// recipes give padding and continued word pieces -100).
    ///
    /// # Shapes
    /// - logits: `[batch_size, seq_length, num_labels]` ([`forward`](Self::forward)'s)
    /// - labels: `[batch_size, seq_length]`, classes in `0..num_labels` or -100
    /// - output: `[1]`
    ///
    /// # Errors
    /// Labels of another shape, or a label outside the classes other than -100, naming it.
    pub fn loss(&self, logits: Tensor<3>, labels: Tensor<2, Int>) -> Result<Tensor<1>, InputError> {
        per_token_cross_entropy("token classification", logits, labels)
    }
}

impl LongformerForSequenceClassification {
    /// HF's single-label classification loss (`labels=` of
    /// `LongformerForSequenceClassification` with integer labels and more than one label, or
    /// `problem_type: "single_label_classification"`): the mean cross-entropy over the rows
    /// whose label is not -100 ([`IGNORE_INDEX`]).
    ///
    /// # Shapes
    /// - logits: `[batch_size, num_labels]` ([`forward`](Self::forward)'s)
    /// - labels: `[batch_size]`, classes in `0..num_labels` or -100
    /// - output: `[1]`
    ///
    /// # Errors
    /// Labels of another shape, or a label outside the classes other than -100, naming it.
    pub fn loss(&self, logits: Tensor<2>, labels: Tensor<1, Int>) -> Result<Tensor<1>, InputError> {
        per_row_cross_entropy("sequence classification", logits, labels)
    }

    /// HF's regression loss (`problem_type: "regression"`, the default with one label): the
    /// mean squared error of the logits.
    ///
    /// # Shapes
    /// - logits: `[batch_size, num_labels]`
    /// - targets: `[batch_size, num_labels]` (`[batch_size, 1]` for one label)
    /// - output: `[1]`
    ///
    /// # Errors
    /// Targets of another shape.
    pub fn regression_loss(
        &self,
        logits: Tensor<2>,
        targets: Tensor<2>,
    ) -> Result<Tensor<1>, InputError> {
        mean_squared_error("sequence regression", logits, targets)
    }

    /// HF's multi-label loss (`problem_type: "multi_label_classification"`, the default for
    /// float labels and more than one label): binary cross-entropy of each logit against its
    /// target in `[0, 1]`, the mean over every element.
    ///
    /// # Shapes
    /// - logits: `[batch_size, num_labels]`
    /// - targets: `[batch_size, num_labels]`
    /// - output: `[1]`
    ///
    /// # Errors
    /// Targets of another shape.
    pub fn multi_label_loss(
        &self,
        logits: Tensor<2>,
        targets: Tensor<2>,
    ) -> Result<Tensor<1>, InputError> {
        binary_cross_entropy_with_logits("multi-label classification", logits, targets)
    }
}

impl LongformerForQuestionAnswering {
    /// HF's span loss (`start_positions=`, `end_positions=` of
    /// `LongformerForQuestionAnswering`): the mean of the start and end cross-entropies over
    /// the rows, with HF's handling of positions outside the sequence: they are clamped to
    /// `0..=seq_length` and `seq_length` is ignored (an answer cut off by truncation takes no
    /// loss; a negative position counts as 0).
    ///
    /// # Shapes
    /// - output: `[batch_size, seq_length]` start and end logits ([`forward`](Self::forward)'s)
    /// - start_positions, end_positions: `[batch_size]`, token positions
    /// - output: `[1]`
    ///
    /// # Errors
    /// Positions of another shape.
    pub fn loss(
        &self,
        output: QuestionAnsweringOutput,
        start_positions: Tensor<1, Int>,
        end_positions: Tensor<1, Int>,
    ) -> Result<Tensor<1>, InputError> {
        const WHAT: &str = "question answering";
        let [batch, seq] = output.start_logits.dims();
        let ignored = seq as i64;
        let clamp = |positions: Tensor<1, Int>| -> Result<Vec<i64>, InputError> {
            Ok(host_labels(WHAT, positions, [batch])?
                .into_iter()
                .map(|p| p.clamp(0, ignored))
                .collect())
        };
        let (starts, ends) = (clamp(start_positions)?, clamp(end_positions)?);
        let start = cross_entropy(WHAT, output.start_logits, starts, ignored)?;
        let end = cross_entropy(WHAT, output.end_logits, ends, ignored)?;
        Ok((start + end) / 2.0)
    }
}

impl LongformerForMultipleChoice {
    /// HF's multiple-choice loss (`labels=` of `LongformerForMultipleChoice`): the mean
    /// cross-entropy of each example's choice scores against its right choice, over the
    /// examples whose label is not -100 ([`IGNORE_INDEX`]).
    ///
    /// # Shapes
    /// - logits: `[examples, n_choices]` ([`forward`](Self::forward)'s)
    /// - labels: `[examples]`, the right choice's index
    /// - output: `[1]`
    ///
    /// # Errors
    /// Labels of another shape, or a label outside the choices other than -100, naming it.
    pub fn loss(&self, logits: Tensor<2>, labels: Tensor<1, Int>) -> Result<Tensor<1>, InputError> {
        per_row_cross_entropy("multiple choice", logits, labels)
    }
}

/// Cross-entropy over the rows of `[rows, classes]` logits, one label per row, -100 ignored.
fn per_row_cross_entropy(
    what: &'static str,
    logits: Tensor<2>,
    labels: Tensor<1, Int>,
) -> Result<Tensor<1>, InputError> {
    let labels = host_labels(what, labels, [logits.dims()[0]])?;
    cross_entropy(what, logits, labels, IGNORE_INDEX)
}

/// Cross-entropy over every token of `[batch, seq, classes]` logits, -100 ignored.
fn per_token_cross_entropy(
    what: &'static str,
    logits: Tensor<3>,
    labels: Tensor<2, Int>,
) -> Result<Tensor<1>, InputError> {
    let [batch, seq, classes] = logits.dims();
    let labels = host_labels(what, labels, [batch, seq])?;
    cross_entropy(
        what,
        logits.reshape([batch * seq, classes]),
        labels,
        IGNORE_INDEX,
    )
}

/// Mean cross-entropy of `logits` against class `labels`, over the labels that are not
/// `ignore_index`; when every label is ignored, NaN with a zero gradient (as PyTorch: 0 / 0,
/// and no label to learn from).
///
/// # Shapes
/// - logits: `[n, classes]`
/// - labels: `[n]`
/// - output: `[1]`
///
/// # Errors
/// [`InputError::LabelShape`] when `labels` is not `[n]`; [`InputError::LabelOutOfRange`] for a
/// label outside `0..classes` other than `ignore_index`, naming `what` and its place.
pub(crate) fn cross_entropy(
    what: &'static str,
    logits: Tensor<2>,
    labels: Vec<i64>,
    ignore_index: i64,
) -> Result<Tensor<1>, InputError> {
    let [n, classes] = logits.dims();
    if labels.len() != n {
        return Err(InputError::LabelShape {
            what,
            expected: vec![n],
            found: vec![labels.len()],
        });
    }
    // The rows with a label, and their labels: only those rows' log-softmax is computed (a
    // masked-LM batch labels some 15% of its tokens; the others get a zero gradient either way).
    let mut rows = Vec::with_capacity(n);
    let mut targets = Vec::with_capacity(n);
    for (index, &label) in labels.iter().enumerate() {
        if label == ignore_index {
            continue;
        }
        if !(0..classes as i64).contains(&label) {
            return Err(InputError::LabelOutOfRange {
                what,
                index,
                label,
                classes,
                ignore_index,
            });
        }
        rows.push(index as i64);
        targets.push(label);
    }
    let counted = rows.len();
    if counted == 0 {
        // PyTorch's loss is 0 / 0 = NaN, but its gradient is 0: a batch without a label
        // must not put NaN into the parameters.
        return Ok((logits.cast(DType::F32).sum() * 0.0).add_scalar(f32::NAN));
    }
    let device = logits.device();
    let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [counted]), &device);
    let targets = Tensor::<2, Int>::from_data(TensorData::new(targets, [counted, 1]), &device);
    let labelled = logits.cast(DType::F32).select(0, rows);
    let log_probs = log_softmax(labelled, 1).gather(1, targets);
    Ok(-log_probs.sum() / counted as f32)
}

/// Mean squared error, over every element.
///
/// # Shapes
/// - predictions, targets: the same, any
/// - output: `[1]`
///
/// # Errors
/// [`InputError::LabelShape`] when the shapes differ.
pub(crate) fn mean_squared_error<const D: usize>(
    what: &'static str,
    predictions: Tensor<D>,
    targets: Tensor<D>,
) -> Result<Tensor<1>, InputError> {
    check_same_shape(what, &predictions, &targets)?;
    let diff = predictions.cast(DType::F32) - targets.cast(DType::F32);
    Ok(diff.powi_scalar(2).mean())
}

/// Mean binary cross-entropy of `logits` against targets in `[0, 1]` (PyTorch's
/// `BCEWithLogitsLoss`: `max(x, 0) - x·y + log(1 + exp(-|x|))`), over every element.
///
/// # Shapes
/// - logits, targets: the same, any
/// - output: `[1]`
///
/// # Errors
/// [`InputError::LabelShape`] when the shapes differ.
pub(crate) fn binary_cross_entropy_with_logits<const D: usize>(
    what: &'static str,
    logits: Tensor<D>,
    targets: Tensor<D>,
) -> Result<Tensor<1>, InputError> {
    check_same_shape(what, &logits, &targets)?;
    let x = logits.cast(DType::F32);
    let y = targets.cast(DType::F32);
    let loss = x.clone().clamp_min(0.0) - x.clone() * y + x.abs().neg().exp().log1p();
    Ok(loss.mean())
}

fn check_same_shape<const D: usize>(
    what: &'static str,
    logits: &Tensor<D>,
    targets: &Tensor<D>,
) -> Result<(), InputError> {
    if logits.dims() != targets.dims() {
        return Err(InputError::LabelShape {
            what,
            expected: logits.dims().to_vec(),
            found: targets.dims().to_vec(),
        });
    }
    Ok(())
}

/// Class labels read to the host (for checking), when their shape is `expected`.
///
/// # Errors
/// [`InputError::LabelShape`] otherwise.
pub(crate) fn host_labels<const D: usize>(
    what: &'static str,
    labels: Tensor<D, Int>,
    expected: [usize; D],
) -> Result<Vec<i64>, InputError> {
    if labels.dims() != expected {
        return Err(InputError::LabelShape {
            what,
            expected: expected.to_vec(),
            found: labels.dims().to_vec(),
        });
    }
    Ok(labels.into_data().iter::<i64>().collect())
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;

    fn logits(device: &Device) -> Tensor<2> {
        Tensor::from_data(
            TensorData::new(vec![1.0f32, 2.0, 0.5, -1.0, 0.0, 3.0], [2, 3]),
            device,
        )
    }

    fn value(t: Tensor<1>) -> f32 {
        t.into_scalar::<f32>()
    }

    /// -log softmax([1, 2, 0.5])[1] and -log softmax([-1, 0, 3])[2], by hand.
    #[test]
    fn cross_entropy_is_the_mean_negative_log_probability() {
        let device = Device::default();
        let lse = |v: [f32; 3]| v.iter().map(|x| x.exp()).sum::<f32>().ln();
        let a = lse([1.0, 2.0, 0.5]) - 2.0;
        let b = lse([-1.0, 0.0, 3.0]) - 3.0;
        let loss = value(cross_entropy("test", logits(&device), vec![1, 2], -100).unwrap());
        assert!((loss - (a + b) / 2.0).abs() < 1e-6, "{loss}");
        let only_first =
            value(cross_entropy("test", logits(&device), vec![1, -100], -100).unwrap());
        assert!((only_first - a).abs() < 1e-6, "{only_first}");
        let none = value(cross_entropy("test", logits(&device), vec![-100, -100], -100).unwrap());
        assert!(none.is_nan(), "PyTorch's 0 / 0: {none}");
    }

    /// No label, no gradient: PyTorch's NaN loss back-propagates zeros.
    #[test]
    fn a_batch_without_labels_has_a_zero_gradient() {
        let device = Device::default().autodiff();
        let x = logits(&device).require_grad();
        let loss = cross_entropy("test", x.clone(), vec![-100, -100], -100).unwrap();
        let grads = loss.backward();
        let grad: Vec<f32> = x.grad(&grads).unwrap().into_data().iter::<f32>().collect();
        assert!(grad.iter().all(|&g| g == 0.0), "{grad:?}");
    }

    #[test]
    fn a_label_outside_the_classes_is_an_error() {
        let device = Device::default();
        let err = cross_entropy("sequence classification", logits(&device), vec![0, 3], -100)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("labels[1] is 3") && err.contains("0..3"),
            "{err}"
        );
        let err = cross_entropy("test", logits(&device), vec![0], -100).unwrap_err();
        assert!(matches!(err, InputError::LabelShape { .. }), "{err}");
    }

    #[test]
    fn binary_cross_entropy_matches_the_formula_at_large_logits() {
        let device = Device::default();
        let x = Tensor::<1>::from_data(TensorData::new(vec![-80.0f32, 0.0, 80.0], [3]), &device);
        let y = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 0.5, 0.0], [3]), &device);
        // 80, ln 2, 80: no overflow for large |x|.
        let loss = value(binary_cross_entropy_with_logits("test", x, y).unwrap());
        assert!((loss - (160.0 + 2f32.ln()) / 3.0).abs() < 1e-4, "{loss}");
    }
}
