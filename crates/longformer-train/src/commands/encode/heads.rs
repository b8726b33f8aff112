//! `longformer encode --head`: HF's task heads on the input, batch by batch, and the summary
//! printed for each (best label, span or choice; fills of `<mask>`).

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor};
use longformer_data::TextTokenizer;
use longformer_model::batching::BatchLimit;
use longformer_model::heads::{MultipleChoiceInput, ScoreFunction, mask_fills};
use longformer_model::{
    LongformerForMaskedLM, LongformerForMultipleChoice, LongformerForQuestionAnswering,
    LongformerForSequenceClassification, LongformerForTokenClassification, LongformerHeadConfig,
    LongformerInput, TaskHead, load_head,
};

use super::output::{Batching, Output, host, in_batches, in_length_sorted_batches, run_batches};
use super::{EncodeArgs, Head};

/// Loads `head` from the model directory and runs it: its outputs, and a short summary to
/// print (`ids_rows`: the unpadded rows, for per-token summaries; `lengths`: each row's tokens
/// before its trailing padding, by which sequence classification, whose labels read the first
/// token only, batches its rows, see
/// [`length_sorted_batches`](super::output::length_sorted_batches)).
pub(super) fn run_head(
    head: Head,
    args: &EncodeArgs,
    input: LongformerInput,
    limit: BatchLimit,
    (ids_rows, lengths): (&[Vec<i64>], &[usize]),
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
                && !ids_rows.iter().flatten().any(|&id| id == mask_id)
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
            let logits = in_batches(&input, limit, |rows| Ok(model.forward(rows)?))?;
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
            let logits =
                in_length_sorted_batches(&input, lengths, limit, |rows| Ok(model.forward(rows)?))?;
            let output = host("logits", logits)?;
            summary.extend(classified_rows(&output, &head_config));
            vec![output]
        }
        Head::QuestionAnswering => {
            let model: LongformerForQuestionAnswering = load_head_as(head, args, &device)?;
            let (parts, _) = run_batches(&input, limit, Batching::InOrder, |rows| {
                Ok(model.forward(rows)?)
            })?;
            let start_logits =
                Tensor::cat(parts.iter().map(|p| p.start_logits.clone()).collect(), 0);
            let end_logits = Tensor::cat(parts.iter().map(|p| p.end_logits.clone()).collect(), 0);
            let outputs = vec![
                host("start_logits", start_logits)?,
                host("end_logits", end_logits)?,
            ];
            let lengths: Vec<usize> = ids_rows.iter().map(Vec::len).collect();
            for (row, (start, end)) in best_spans(&outputs[0], &outputs[1], &lengths)
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
            let logits = in_batches(&input, limit, |rows| Ok(model.forward(rows)?))?;
            let output = host("logits", logits)?;
            let (seq, labels) = (output.2[1], output.2[2]); // [batch, seq, labels]
            let best = argmax_rows(&output.1, labels);
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
            let [_, seq] = input.dims();
            let examples = BatchLimit::items(limit.items / per_example.max(1))
                .with_tokens(limit.tokens)
                .items_at(per_example, seq);
            let rows_per_batch = BatchLimit::items(examples * per_example);
            let logits = in_batches(&input, rows_per_batch, |rows| {
                Ok(model.forward(MultipleChoiceInput::new(rows, per_example)?)?)
            })?;
            let output = host("logits", logits)?;
            summary.extend(best_of_rows("example", &output, |i| format!("choice {i}")));
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

/// The index of the largest of every `width` values (the earliest of ties).
pub(super) fn argmax_rows(values: &[f32], width: usize) -> Vec<usize> {
    values
        .chunks(width)
        .map(|row| {
            (0..row.len())
                .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
                .unwrap_or(0)
        })
        .collect()
}

/// The best column of every row of `logits` (`[rows, columns]`) with its softmax probability,
/// a line per row.
pub(super) fn best_of_rows(
    what: &str,
    logits: &Output,
    name: impl Fn(usize) -> String,
) -> Vec<String> {
    let (_, values, dims) = logits;
    argmax_rows(values, dims[1])
        .into_iter()
        .zip(values.chunks(dims[1]))
        .enumerate()
        .map(|(row, (best, logits))| {
            let p = ScoreFunction::Softmax.apply(logits)[best];
            format!("{what} {row}: {} (p = {p:.4})", name(best))
        })
        .collect()
}

/// A line per row of a sequence classifier's `logits` (`[rows, labels]`), read as HF's
/// text-classification pipeline reads them ([`LongformerHeadConfig::score_function`]): the best
/// label and its softmax probability; for multi-label classification (or a single label) every
/// label whose sigmoid reaches 0.5, most probable first; for regression every output's value.
pub(super) fn classified_rows(logits: &Output, config: &LongformerHeadConfig) -> Vec<String> {
    let (_, values, dims) = logits;
    match config.score_function() {
        ScoreFunction::Softmax => best_of_rows("row", logits, |i| config.label(i)),
        ScoreFunction::Identity => values
            .chunks(dims[1])
            .enumerate()
            .map(|(row, outputs)| {
                let outputs: Vec<String> = outputs
                    .iter()
                    .enumerate()
                    .map(|(i, v)| format!("{} = {v:.4}", config.label(i)))
                    .collect();
                format!("row {row}: {}", outputs.join(", "))
            })
            .collect(),
        ScoreFunction::Sigmoid => values
            .chunks(dims[1])
            .enumerate()
            .map(|(row, logits)| {
                let p = ScoreFunction::Sigmoid.apply(logits);
                let mut order: Vec<usize> = (0..p.len()).collect();
                order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
                let label = |i: usize| format!("{} (p = {:.4})", config.label(i), p[i]);
                let chosen: Vec<String> = order
                    .iter()
                    .take_while(|&&i| p[i] >= 0.5)
                    .map(|&i| label(i))
                    .collect();
                if chosen.is_empty() {
                    format!("row {row}: no label (best: {})", label(order[0]))
                } else {
                    format!("row {row}: {}", chosen.join(", "))
                }
            })
            .collect(),
    }
}

/// For every row, the answer span `(start, end)` with `start <= end` inside the row's own
/// `lengths[row]` tokens (not the padding of a shorter row) that maximises
/// `start_logits[start] + end_logits[end]` (`[batch, seq]` each), as HF's question-answering
/// pipeline picks it (without its length limit).
pub(super) fn best_spans(
    start_logits: &Output,
    end_logits: &Output,
    lengths: &[usize],
) -> Vec<(usize, usize)> {
    let seq = start_logits.2[1];
    start_logits
        .1
        .chunks(seq)
        .zip(end_logits.1.chunks(seq))
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
    use longformer_model::ProblemType;

    use super::*;

    fn logits(rows: usize, values: &[f32]) -> Output {
        let labels = values.len() / rows;
        ("logits".into(), values.to_vec(), vec![rows, labels])
    }

    fn config(problem: Option<ProblemType>, labels: &[&str]) -> LongformerHeadConfig {
        let json = r#"{"attention_window": 4, "hidden_size": 8, "num_attention_heads": 2,
            "num_hidden_layers": 1, "intermediate_size": 16, "max_position_embeddings": 20,
            "vocab_size": 10, "pad_token_id": 1}"#;
        LongformerHeadConfig::from_json_str(json)
            .unwrap()
            .with_labels(labels.iter().copied())
            .with_problem_type(problem)
    }

    /// A classifier's rows read by its problem type: the softmax's best label, the labels a
    /// sigmoid picks (or none), or the regression values.
    #[test]
    fn classified_rows_follow_the_problem_type() {
        let scores = logits(2, &[2.0, 0.0, -1.0, -3.0, -2.0, -0.5]);
        let labels = ["a", "b", "c"];
        assert_eq!(
            classified_rows(&scores, &config(None, &labels)),
            ["row 0: a (p = 0.8438)", "row 1: c (p = 0.7662)"]
        );
        let multi = config(Some(ProblemType::MultiLabelClassification), &labels);
        assert_eq!(
            classified_rows(&scores, &multi),
            [
                "row 0: a (p = 0.8808), b (p = 0.5000)",
                "row 1: no label (best: c (p = 0.3775))"
            ]
        );
        let regression = config(Some(ProblemType::Regression), &["score"]);
        assert_eq!(
            classified_rows(&logits(2, &[0.25, -1.5]), &regression),
            ["row 0: score = 0.2500", "row 1: score = -1.5000"]
        );
        // One label without a problem type: a sigmoid, as HF's pipeline reads it.
        assert_eq!(
            classified_rows(&logits(1, &[1.0]), &config(None, &["yes"])),
            ["row 0: yes (p = 0.7311)"]
        );
    }

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
