//! `longformer encode --head`: HF's task heads on the input, batch by batch, and the summary
//! printed for each (best label, span or choice; fills of `<mask>`).

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor};
use longformer_data::TextTokenizer;
use longformer_model::heads::{MultipleChoiceInput, mask_fills};
use longformer_model::{
    LongformerForMaskedLM, LongformerForMultipleChoice, LongformerForQuestionAnswering,
    LongformerForSequenceClassification, LongformerForTokenClassification, LongformerHeadConfig,
    LongformerInput, TaskHead, load_head,
};

use super::output::{Output, batches, host, in_batches};
use super::{EncodeArgs, Head};

/// Loads `head` from the model directory and runs it: its outputs, and a short summary to
/// print (`ids`: the unpadded rows, for per-token summaries).
pub(super) fn run_head(
    head: Head,
    args: &EncodeArgs,
    input: LongformerInput,
    batch_size: usize,
    ids_rows: &[Vec<i64>],
    tokenizer: Option<&TextTokenizer>,
) -> Result<(Vec<Output>, Vec<String>)> {
    let mut summary = Vec::new();
    let device = input.input_ids.device();
    let dir = &args.model;
    let head_config = LongformerHeadConfig::from_json_file(dir.join("config.json"))?;
    let outputs = match head {
        Head::Mlm => {
            let model: LongformerForMaskedLM = load_head_as(head, args, &device)?;
            let mask_id = tokenizer.map(mask_token_id).transpose()?;
            let ids = input.input_ids.clone();
            if let Some(mask_id) = mask_id
                && !rows_contain(&ids, mask_id)
            {
                let cut = if args.truncate {
                    ", or --truncate cut it off"
                } else {
                    ""
                };
                bail!(
                    "the text has no <mask> token to fill (the tokenizer's <mask> is id \
                     {mask_id}{cut})"
                );
            }
            let logits = in_batches(&input, batch_size, |rows| Ok(model.forward(rows)?))?;
            let output = host("logits", logits.clone())?;
            if let (Some(mask_id), Some(tokenizer)) = (mask_id, tokenizer) {
                for (n, fill) in mask_fills(logits.clone(), &ids, mask_id, args.top_k.into())?
                    .iter()
                    .enumerate()
                {
                    let candidates: Vec<String> = fill
                        .candidates
                        .iter()
                        .map(|(id, p)| {
                            format!("{:?} (id {id}) {p:.4}", tokenizer.token_text(*id as u32))
                        })
                        .collect();
                    summary.push(format!(
                        "<mask> {n} (row {}, position {}): {}",
                        fill.row,
                        fill.position,
                        candidates.join(", ")
                    ));
                }
            }
            vec![output]
        }
        Head::SequenceClassification => {
            let model: LongformerForSequenceClassification = load_head_as(head, args, &device)?;
            let logits = in_batches(&input, batch_size, |rows| Ok(model.forward(rows)?))?;
            let output = host("logits", logits.clone())?;
            summary.extend(best_of_rows("row", &logits, |i| head_config.label(i)));
            vec![output]
        }
        Head::QuestionAnswering => {
            let model: LongformerForQuestionAnswering = load_head_as(head, args, &device)?;
            let parts = batches(&input, batch_size)
                .map(|rows| model.forward(rows))
                .collect::<Result<Vec<_>, _>>()?;
            let start_logits =
                Tensor::cat(parts.iter().map(|p| p.start_logits.clone()).collect(), 0);
            let end_logits = Tensor::cat(parts.iter().map(|p| p.end_logits.clone()).collect(), 0);
            let outputs = vec![
                host("start_logits", start_logits.clone())?,
                host("end_logits", end_logits.clone())?,
            ];
            let lengths: Vec<usize> = ids_rows.iter().map(Vec::len).collect();
            for (row, (start, end)) in best_spans(&start_logits, &end_logits, &lengths)
                .into_iter()
                .enumerate()
            {
                let text = tokenizer.map(|t| {
                    let span: Vec<u32> = ids_rows[row][start..=end]
                        .iter()
                        .map(|&id| id as u32)
                        .collect();
                    format!(": {:?}", t.decode(&span))
                });
                let text = text.unwrap_or_default();
                summary.push(format!("row {row}: best span {start}..={end}{text}"));
            }
            outputs
        }
        Head::TokenClassification => {
            let model: LongformerForTokenClassification = load_head_as(head, args, &device)?;
            let logits = in_batches(&input, batch_size, |rows| Ok(model.forward(rows)?))?;
            let output = host("logits", logits.clone())?;
            let [batch, seq, labels] = logits.dims();
            let best = argmax_rows(&logits.clone().reshape([batch * seq, labels]));
            for (row, (tags, ids)) in best.chunks(seq).zip(ids_rows).enumerate() {
                // The row's own tokens, not the padding of a shorter row; with text, each tag
                // after its token.
                let tags: Vec<String> = tags[..ids.len()]
                    .iter()
                    .zip(ids)
                    .map(|(&i, &id)| match tokenizer {
                        Some(t) => {
                            format!("{:?}/{}", t.token_text(id as u32), head_config.label(i))
                        }
                        None => head_config.label(i),
                    })
                    .collect();
                summary.push(format!("row {row}: {}", tags.join(" ")));
            }
            vec![output]
        }
        Head::MultipleChoice => {
            let model: LongformerForMultipleChoice = load_head_as(head, args, &device)?;
            let [rows, _] = input.dims();
            let per_example = args.num_choices.unwrap_or(rows);
            // Checks that the rows make whole examples; then whole examples per batch.
            MultipleChoiceInput::new(input.clone(), per_example)?;
            let rows_per_batch = (batch_size / per_example).max(1) * per_example;
            let logits = in_batches(&input, rows_per_batch, |rows| {
                Ok(model.forward(MultipleChoiceInput::new(rows, per_example)?)?)
            })?;
            let output = host("logits", logits.clone())?;
            summary.extend(best_of_rows("example", &logits, |i| format!("choice {i}")));
            vec![output]
        }
    };
    Ok((outputs, summary))
}

/// `head`'s model from `args.model` (a checkpoint of that head, as HF's `save_pretrained` writes
/// it), in `args.dtype`.
pub(super) fn load_head_as<H: TaskHead>(
    head: Head,
    args: &EncodeArgs,
    device: &Device,
) -> Result<H> {
    let model = load_head(&args.model, device).with_context(|| {
        format!(
            "loading {} from {} (a checkpoint of that head, as HF's save_pretrained writes it)",
            head.hf_class(),
            args.model.display()
        )
    })?;
    args.dtype.apply(model, device)
}

/// The id the tokenizer gives `<mask>`.
pub(super) fn mask_token_id(tokenizer: &TextTokenizer) -> Result<i64> {
    tokenizer
        .token_to_id("<mask>")
        .map(i64::from)
        .with_context(|| {
            format!(
                "the tokenizer in {} has no <mask> token: it cannot fill masks",
                tokenizer.source().display()
            )
        })
}

pub(super) fn rows_contain(ids: &Tensor<2, burn::tensor::Int>, id: i64) -> bool {
    ids.clone().into_data().iter::<i64>().any(|t| t == id)
}

/// The index of the largest value of every row.
pub(super) fn argmax_rows(scores: &Tensor<2>) -> Vec<usize> {
    let [_, width] = scores.dims();
    let values: Vec<f32> = scores.clone().into_data().iter::<f32>().collect();
    values
        .chunks(width)
        .map(|row| {
            (0..row.len())
                .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
                .unwrap_or(0)
        })
        .collect()
}

/// The best column of every row of `logits` with its softmax probability, a line per row.
pub(super) fn best_of_rows(
    what: &str,
    logits: &Tensor<2>,
    name: impl Fn(usize) -> String,
) -> Vec<String> {
    let probs = burn::tensor::activation::softmax(logits.clone(), 1);
    let [_, width] = probs.dims();
    let values: Vec<f32> = probs.clone().into_data().iter::<f32>().collect();
    argmax_rows(&probs)
        .into_iter()
        .enumerate()
        .map(|(row, best)| {
            format!(
                "{what} {row}: {} (p = {:.4})",
                name(best),
                values[row * width + best]
            )
        })
        .collect()
}

/// For every row, the answer span `(start, end)` with `start <= end` inside the row's own
/// `lengths[row]` tokens (not the padding of a shorter row) that maximises
/// `start_logits[start] + end_logits[end]` (`[batch, seq]` each), as HF's question-answering
/// pipeline picks it (without its length limit).
pub(super) fn best_spans(
    start_logits: &Tensor<2>,
    end_logits: &Tensor<2>,
    lengths: &[usize],
) -> Vec<(usize, usize)> {
    let [_, seq] = start_logits.dims();
    let starts: Vec<f32> = start_logits.clone().into_data().iter::<f32>().collect();
    let ends: Vec<f32> = end_logits.clone().into_data().iter::<f32>().collect();
    starts
        .chunks(seq)
        .zip(ends.chunks(seq))
        .zip(lengths)
        .map(|((starts, ends), &len)| best_span(&starts[..len], &ends[..len]))
        .collect()
}

/// [`best_spans`] of one row: for each end, the best start at or before it.
pub(super) fn best_span(starts: &[f32], ends: &[f32]) -> (usize, usize) {
    let mut best_start = 0;
    let mut best = (0, 0, f32::NEG_INFINITY);
    for end in 0..starts.len() {
        if starts[end] > starts[best_start] {
            best_start = end;
        }
        let score = starts[best_start] + ends[end];
        if score > best.2 {
            best = (best_start, end, score);
        }
    }
    (best.0, best.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The best span never ends before it starts, even where the best end alone lies before
    /// the best start alone.
    #[test]
    fn best_span_ends_at_or_after_its_start() {
        let starts = [0.0, 0.1, 5.0, 0.2];
        let ends = [4.0, 0.0, 1.0, 3.0];
        assert_eq!(best_span(&starts, &ends), (2, 3));
        assert_eq!(best_span(&[1.0], &[1.0]), (0, 0));
        // Ties keep the earliest start and end.
        assert_eq!(best_span(&[1.0, 1.0], &[1.0, 1.0]), (0, 0));
    }
}
