//! `longformer encode`: run the encoder on ids from a JSON file (or text) and save
//! `last_hidden_state` (with, when asked, the hidden states and attentions), or, with `--head`,
//! run a HuggingFace task head and save its logits.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use clap::{Args, ValueEnum};
use longformer_data::TextTokenizer;
use longformer_model::heads::{MultipleChoiceInput, mask_fills};
use longformer_model::precision::to_f32;
use longformer_model::{
    LongformerConfig, LongformerForMaskedLM, LongformerForMultipleChoice,
    LongformerForQuestionAnswering, LongformerForSequenceClassification,
    LongformerForTokenClassification, LongformerHeadConfig, LongformerInput, OutputOptions,
    TaskHead, load_head, load_pretrained,
};
use serde::Deserialize;

use crate::backend::{Backend, Precision};
use crate::progress::note;
use crate::readback::read_back;

/// Arguments of `longformer encode`.
#[derive(Args, Debug)]
pub struct EncodeArgs {
    /// HF model directory (config.json + model.safetensors or pytorch_model.bin).
    #[arg(long, default_value = "assets/tiny-longformer")]
    pub model: PathBuf,
    /// JSON file `{"input_ids": [[...]], "attention_mask": [[...]], "global_attention_mask": [[...]]}`
    /// (as a HF tokenizer's output, `token_type_ids` too); all but `input_ids` are optional,
    /// ragged rows are padded with `pad_token_id`.
    #[arg(long, conflicts_with = "text")]
    pub input: Option<PathBuf>,
    /// Text to encode with the model directory's tokenizer (`tokenizer.json`, or `vocab.json` +
    /// `merges.txt`), between `<s>` and `</s>`: the ids HF's `AutoTokenizer` gives it (no
    /// WikiHop markers). Without `--head`, global attention goes on the first token (`<s>`); with
    /// one, where the head puts it by default (as in HF). Repeat it for a batch: one row per
    /// text, shorter rows padded.
    #[arg(long)]
    pub text: Vec<String>,
    /// A file whose whole content (UTF-8) is a text, as `--text` takes it (`-`: standard
    /// input): for documents too long to pass on the command line. Repeat it for a batch; a
    /// directory stands for its files (not hidden ones or sub-directories), in name order. The
    /// output's metadata `rows` names the file of each row.
    #[arg(long, conflicts_with_all = ["text", "input"])]
    pub text_file: Vec<PathBuf>,
    /// Where to write `last_hidden_state` (F32, `[batch, seq, hidden]`; with `pooler_output`,
    /// `[batch, hidden]`, when the checkpoint has a pooler), or the head's logits, as
    /// safetensors.
    #[arg(long, default_value = "runs/encode/last_hidden_state.safetensors")]
    pub output: PathBuf,
    /// Run a task head (the directory must hold that head's HF checkpoint) and write its logits
    /// instead of `last_hidden_state`: `logits` (`mlm` `[batch, seq, vocab]`,
    /// `sequence-classification` `[batch, labels]`, `token-classification` `[batch, seq, labels]`,
    /// `multiple-choice` `[examples, choices]`) or `start_logits` + `end_logits`
    /// (`question-answering`, `[batch, seq]`). Without a global mask, global attention goes where
    /// HF's head puts it. `mlm` with `--text` prints the top fills of every `<mask>`.
    #[arg(long, value_enum)]
    pub head: Option<Head>,
    /// With `--head multiple-choice`: choices per example, taken as consecutive rows (default: all
    /// rows are the choices of one example).
    #[arg(long)]
    pub num_choices: Option<usize>,
    /// With `--head mlm --text`: fills printed per `<mask>`.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    pub top_k: u16,
    /// Also write HF's `hidden_states` (`output_hidden_states=True`): `hidden_state_0` (the
    /// embedding output) to `hidden_state_{layers}` (the last layer's, `last_hidden_state`), each
    /// F32 `[batch, seq, hidden]`. Not with `--head`.
    #[arg(long, conflicts_with = "head")]
    pub hidden_states: bool,
    /// Also write HF's attentions (`output_attentions=True`), per layer `i`: `attentions_{i}`,
    /// `[batch, heads, seq, global + 2 * window + 1]` (each token over the global tokens, then its
    /// window; rows of global tokens are zero), and, with global tokens, `global_attentions_{i}`,
    /// `[batch, heads, seq, global]` (each global token over every key). Large: some 1.3 GB for
    /// longformer-base at 4,096 tokens. Not with `--head`.
    #[arg(long, conflicts_with = "head")]
    pub attentions: bool,
    /// Rows per forward pass: more rows are encoded this many at a time, at the length of the
    /// longest (each row's outputs are what it gets in one batch; memory grows with this). With
    /// `--head multiple-choice`, whole examples (`--num-choices` rows each), at least one.
    /// `--attentions` takes all rows in one batch.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
    /// One vector per row instead of `last_hidden_state`: `mean` writes `mean_pooled`, the mean
    /// of the last hidden states over the row's real tokens (attention mask 1), `first` writes
    /// `first_token`, the hidden state at position 0 (`<s>`, where HF's pooler and
    /// classification heads read), each F32 `[batch, hidden]`, computed batch by batch (a large
    /// corpus needs memory for its vectors only). Not with `--head`.
    #[arg(long, value_enum, conflicts_with = "head")]
    pub pool: Option<Pool>,
    /// Cut rows longer than the model takes (`max_position_embeddings - pad_token_id - 1`
    /// tokens other than padding) instead of refusing them: a `--text` keeps its closing `</s>`
    /// (as HF's tokenizer truncates), `--input` rows lose their last tokens (with their masks
    /// and token types).
    #[arg(long)]
    pub truncate: bool,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    pub backend: Backend,
    /// Float dtype to run the model in (`f16`/`bf16`: flex, or a GPU that has it); the attention
    /// core computes in f32 either way and the output file holds F32.
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub dtype: Precision,
}

/// How `--pool` makes one vector of a row's last hidden states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Pool {
    /// The mean over the row's real tokens (`mean_pooled`).
    Mean,
    /// The hidden state at position 0, `<s>` (`first_token`).
    First,
}

impl Pool {
    /// The name of the pooled output in the file.
    fn output_name(self) -> &'static str {
        match self {
            Self::Mean => "mean_pooled",
            Self::First => "first_token",
        }
    }

    /// `[rows, hidden]` from `hidden` (`[rows, seq, hidden]`), in f32 whatever the model's
    /// dtype; `real` marks the real tokens (all, when `None`).
    fn apply(self, hidden: Tensor<3>, real: Option<Tensor<2, Bool>>) -> Tensor<2> {
        let hidden = to_f32(hidden);
        let [rows, seq, width] = hidden.dims();
        match self {
            Self::First => hidden.narrow(1, 0, 1).reshape([rows, width]),
            Self::Mean => {
                let weights = match real {
                    Some(real) => real.float(),
                    None => Tensor::ones([rows, seq], &hidden.device()),
                };
                // A row without real tokens (a mask of zeros) gets zeros, not 0 / 0.
                let count = weights.clone().sum_dim(1).clamp_min(1.0); // [rows, 1]
                let sum = (hidden * weights.unsqueeze_dim(2))
                    .sum_dim(1)
                    .reshape([rows, width]);
                sum / count
            }
        }
    }
}

/// A HuggingFace Longformer task head (`--head`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Head {
    /// `LongformerForMaskedLM`.
    Mlm,
    /// `LongformerForSequenceClassification`.
    SequenceClassification,
    /// `LongformerForQuestionAnswering`.
    QuestionAnswering,
    /// `LongformerForTokenClassification`.
    TokenClassification,
    /// `LongformerForMultipleChoice`.
    MultipleChoice,
}

impl Head {
    /// HF's class name of the head model.
    fn hf_class(self) -> &'static str {
        match self {
            Self::Mlm => LongformerForMaskedLM::HF_CLASS,
            Self::SequenceClassification => LongformerForSequenceClassification::HF_CLASS,
            Self::QuestionAnswering => LongformerForQuestionAnswering::HF_CLASS,
            Self::TokenClassification => LongformerForTokenClassification::HF_CLASS,
            Self::MultipleChoice => LongformerForMultipleChoice::HF_CLASS,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputJson {
    input_ids: Vec<Vec<i64>>,
    attention_mask: Option<Vec<Vec<i64>>>,
    global_attention_mask: Option<Vec<Vec<i64>>>,
    token_type_ids: Option<Vec<Vec<i64>>>,
}

/// Runs the command.
pub fn run(args: EncodeArgs) -> Result<()> {
    crate::output::check_writable(&args.output)
        .with_context(|| format!("--output {}", args.output.display()))?;
    if args.num_choices.is_some() && args.head != Some(Head::MultipleChoice) {
        bail!("--num-choices only applies to --head multiple-choice");
    }
    let device = args.backend.device()?;
    let config = LongformerConfig::from_json_file(args.model.join("config.json"))?;
    if args
        .text_file
        .iter()
        .filter(|p| *p == Path::new("-"))
        .count()
        > 1
    {
        bail!("--text-file - (standard input) can be given once");
    }
    let files = text_files(&args.text_file)?;
    let texts = if files.is_empty() {
        args.text.clone()
    } else {
        files
            .iter()
            .map(|path| read_text_file(path))
            .collect::<Result<_>>()?
    };
    let (mut rows, tokenizer) = match (&args.input, texts.is_empty()) {
        (Some(path), true) => (read_input(path)?, None),
        (None, false) => {
            let (rows, tokenizer) = tokenize(&args.model, &texts, args.head.is_none())?;
            (rows, Some(tokenizer))
        }
        _ => bail!("give --input FILE.json, --text \"...\" or --text-file FILE"),
    };
    let source = match (&args.input, files.as_slice()) {
        (Some(path), _) => path.display().to_string(),
        (None, [path]) => format!("the tokenized {}", path.display()),
        (None, []) => "the tokenized --text".to_string(),
        (None, _) => "the tokenized --text-file texts".to_string(),
    };
    if args.truncate {
        let limit = config.max_sequence_length();
        let keep_last = !texts.is_empty();
        for (row, before, after) in
            truncate_rows(&mut rows, limit, config.pad_token_id as i64, keep_last)
        {
            note(&format!(
                "{source}: row {row} truncated from {before} to {after} tokens (--truncate)"
            ));
        }
    }
    let mut input = LongformerInput::try_from_rows(
        &rows.input_ids,
        rows.attention_mask.as_deref(),
        rows.global_attention_mask.as_deref(),
        config.pad_token_id as i64,
        &device,
    )
    .with_context(|| format!("reading {source}"))?;
    if let Some(types) = &rows.token_type_ids {
        input.token_type_ids = Some(token_types(types, input.dims(), &device));
    }
    let [batch, seq] = input.dims();
    let batch_size = args.batch_size as usize;
    if args.attentions && batch > batch_size {
        bail!(
            "--attentions encodes all rows in one batch: {batch} rows need --batch-size {batch} \
             (or more)"
        );
    }
    note(&format!(
        "encoding {batch} row(s) of {seq} tokens on {:?} in {}",
        args.backend,
        args.dtype.name()
    ));
    let start = Instant::now();
    let (outputs, summary) = match args.head {
        None => {
            let model = load_pretrained(&args.model, &device)
                .with_context(|| format!("loading the model in {}", args.model.display()))?;
            let model = args.dtype.apply(model, &device)?;
            let options = OutputOptions::default()
                .with_hidden_states(args.hidden_states)
                .with_attentions(args.attentions);
            // Batch by batch; with `--pool`, only `[rows, hidden]` of each batch is kept.
            let (mut last, mut pooled, mut pooler, mut hidden, mut attentions) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for rows in batches(&input, batch_size) {
                let real = rows.attention_mask.clone();
                let out = model
                    .try_forward_with(rows, options)
                    .with_context(|| format!("encoding {source}"))?;
                match args.pool {
                    Some(pool) => pooled.push(pool.apply(out.last_hidden_state, real)),
                    None => last.push(out.last_hidden_state),
                }
                pooler.extend(out.pooler_output);
                hidden.push(out.hidden_states);
                attentions.extend(out.attentions);
            }
            let mut outputs = vec![match args.pool {
                Some(pool) => host(pool.output_name(), Tensor::cat(pooled, 0))?,
                None => host("last_hidden_state", Tensor::cat(last, 0))?,
            }];
            if !pooler.is_empty() {
                outputs.push(host("pooler_output", Tensor::cat(pooler, 0))?);
            }
            for i in 0..hidden[0].len() {
                let layer = hidden.iter().map(|h| h[i].clone()).collect();
                outputs.push(host(&format!("hidden_state_{i}"), Tensor::cat(layer, 0))?);
            }
            // One batch (checked above): the global slots are the whole input's.
            for (i, probs) in attentions.into_iter().enumerate() {
                outputs.push(host(&format!("attentions_{i}"), probs.local)?);
                if let Some(global) = probs.global {
                    outputs.push(host(&format!("global_attentions_{i}"), global)?);
                }
            }
            (outputs, Vec::new())
        }
        Some(head) => run_head(
            head,
            &args,
            input,
            batch_size,
            &rows.input_ids,
            tokenizer.as_ref(),
        )
        .with_context(|| format!("encoding {source}"))?,
    };
    let elapsed = start.elapsed();
    // The file first: a reader that closes stdout early (`| head`) must not cost it.
    // Which file each row came from, when rows are files.
    let metadata = (!files.is_empty()).then(|| {
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        let rows = serde_json::to_string(&names).expect("strings serialize");
        std::collections::HashMap::from([("rows".to_string(), rows)])
    });
    write_output(&args.output, &outputs, metadata)?;
    for (name, _, dims) in &outputs {
        note(&format!(
            "wrote {name} {dims:?} to {}",
            args.output.display()
        ));
    }
    note(&format!("({:.3} s)", elapsed.as_secs_f64()));
    let mut stdout = std::io::stdout().lock();
    for line in summary {
        if writeln!(stdout, "{line}").is_err() {
            break;
        }
    }
    Ok(())
}

/// The files `--text-file` names, a directory standing for its files (not hidden, not in
/// sub-directories) in name order; an empty directory is an error.
fn text_files(given: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in given {
        if !path.is_dir() {
            files.push(path.clone());
            continue;
        }
        let listing = || format!("listing --text-file {}", path.display());
        let mut inside = Vec::new();
        for entry in std::fs::read_dir(path).with_context(listing)? {
            let file = entry.with_context(listing)?.path();
            let hidden = file
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if file.is_file() && !hidden {
                inside.push(file);
            }
        }
        if inside.is_empty() {
            bail!(
                "--text-file {} is a directory without files",
                path.display()
            );
        }
        inside.sort();
        files.extend(inside);
    }
    Ok(files)
}

/// The whole content of `path` (`-`: standard input) as text, or an error naming the file.
fn read_text_file(path: &Path) -> Result<String> {
    let bytes = if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading --text-file - (standard input)")?;
        bytes
    } else {
        std::fs::read(path).with_context(|| format!("reading --text-file {}", path.display()))?
    };
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "--text-file {} is not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

/// A named F32 output: values and dimensions.
type Output = (String, Vec<f32>, Vec<usize>);

/// `tensor` read back from the device; a device failure is an error naming the output.
fn host<const D: usize>(name: &str, tensor: Tensor<D>) -> Result<Output> {
    let dims = tensor.dims().to_vec();
    let data = read_back(tensor, &format!("`{name}` {dims:?}"))?;
    Ok((name.to_string(), data.iter::<f32>().collect(), dims))
}

/// Cuts every row of `rows` holding more than `limit` ids other than `pad` to its first `limit`
/// such ids (explicit padding among them kept), with its masks and token types; with
/// `keep_last`, the row's last id (a text's `</s>`) ends the cut row. Returns
/// `(row, length before, length after)` of the rows cut.
fn truncate_rows(
    rows: &mut InputJson,
    limit: usize,
    pad: i64,
    keep_last: bool,
) -> Vec<(usize, usize, usize)> {
    let mut cut = Vec::new();
    for row in 0..rows.input_ids.len() {
        let ids = &rows.input_ids[row];
        let real = ids.iter().filter(|&&id| id != pad).count();
        if real <= limit || limit == 0 {
            continue;
        }
        let wanted = if keep_last { limit - 1 } else { limit };
        // The length of the prefix holding `wanted` non-pad ids.
        let mut seen = 0;
        let end = ids
            .iter()
            .position(|&id| {
                seen += usize::from(id != pad);
                seen > wanted
            })
            .unwrap_or(ids.len());
        let before = ids.len();
        for list in [
            Some(&mut rows.input_ids),
            rows.attention_mask.as_mut(),
            rows.global_attention_mask.as_mut(),
            rows.token_type_ids.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            let kept_last = *list[row].last().expect("checked as long as the ids");
            list[row].truncate(end);
            if keep_last {
                list[row].push(kept_last);
            }
        }
        cut.push((row, before, rows.input_ids[row].len()));
    }
    cut
}

/// `[batch, seq]` token types from `rows` (ragged as `input_ids`; the padding gets type 0).
/// [`read_input`] has checked their shape.
fn token_types(rows: &[Vec<i64>], [batch, seq]: [usize; 2], device: &Device) -> Tensor<2, Int> {
    let mut flat = vec![0i64; batch * seq];
    for (row, types) in rows.iter().enumerate() {
        flat[row * seq..row * seq + types.len()].copy_from_slice(types);
    }
    Tensor::from_data(TensorData::new(flat, [batch, seq]), device)
}

/// Loads `head` from the model directory and runs it: its outputs, and a short summary to
/// print (`ids`: the unpadded rows, for per-token summaries).
fn run_head(
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

/// `input` in batches of at most `rows` rows, in order, each at the input's length.
fn batches(input: &LongformerInput, rows: usize) -> impl Iterator<Item = LongformerInput> + '_ {
    let [batch, _] = input.dims();
    (0..batch)
        .step_by(rows)
        .map(move |start| input.narrow_rows(start, rows.min(batch - start)))
}

/// `forward` of each of [`batches`], its outputs concatenated along the first axis (rows, or
/// examples).
fn in_batches<const D: usize>(
    input: &LongformerInput,
    rows: usize,
    forward: impl FnMut(LongformerInput) -> Result<Tensor<D>>,
) -> Result<Tensor<D>> {
    let parts = batches(input, rows)
        .map(forward)
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::cat(parts, 0))
}

/// `head`'s model from `args.model` (a checkpoint of that head, as HF's `save_pretrained` writes
/// it), in `args.dtype`.
fn load_head_as<H: TaskHead>(head: Head, args: &EncodeArgs, device: &Device) -> Result<H> {
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
fn mask_token_id(tokenizer: &TextTokenizer) -> Result<i64> {
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

fn rows_contain(ids: &Tensor<2, burn::tensor::Int>, id: i64) -> bool {
    ids.clone().into_data().iter::<i64>().any(|t| t == id)
}

/// The index of the largest value of every row.
fn argmax_rows(scores: &Tensor<2>) -> Vec<usize> {
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
fn best_of_rows(what: &str, logits: &Tensor<2>, name: impl Fn(usize) -> String) -> Vec<String> {
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
fn best_spans(
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
fn best_span(starts: &[f32], ends: &[f32]) -> (usize, usize) {
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

fn read_input(path: &Path) -> Result<InputJson> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let input: InputJson = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a valid input file", path.display()))?;
    if input.input_ids.is_empty() || input.input_ids.iter().any(Vec::is_empty) {
        bail!(
            "{}: input_ids must hold at least one non-empty row",
            path.display()
        );
    }
    for (name, mask) in [
        ("attention_mask", &input.attention_mask),
        ("global_attention_mask", &input.global_attention_mask),
        ("token_type_ids", &input.token_type_ids),
    ] {
        let Some(mask) = mask else { continue };
        if mask.len() != input.input_ids.len() {
            bail!(
                "{}: {name} has {} rows but input_ids has {}",
                path.display(),
                mask.len(),
                input.input_ids.len()
            );
        }
        for (row, (m, ids)) in mask.iter().zip(&input.input_ids).enumerate() {
            if m.len() != ids.len() {
                bail!(
                    "{}: {name} row {row} has {} entries but input_ids row {row} has {}",
                    path.display(),
                    m.len(),
                    ids.len()
                );
            }
        }
    }
    // The device's integers are i32; a type past them would not reach the model's own check.
    for (row, types) in input.token_type_ids.iter().flatten().enumerate() {
        if let Some(col) = types
            .iter()
            .position(|t| !(0..=i32::MAX as i64).contains(t))
        {
            bail!(
                "{}: token_type_ids row {row} column {col} is {}, not a token type",
                path.display(),
                types[col]
            );
        }
    }
    Ok(input)
}

/// `<s> text </s>` for each text (a row each) with the model directory's tokenizer, as HF
/// tokenizes it; global attention on `<s>` when `global_first`, else no global mask (the head's
/// default applies).
fn tokenize(
    model_dir: &Path,
    texts: &[String],
    global_first: bool,
) -> Result<(InputJson, TextTokenizer)> {
    let tokenizer = TextTokenizer::from_dir(model_dir)?;
    let rows: Vec<Vec<i64>> = texts
        .iter()
        .enumerate()
        .map(|(row, text)| {
            let ids = tokenizer
                .encode(text)
                .with_context(|| format!("tokenizing text {row}"))?;
            Ok(ids.into_iter().map(i64::from).collect())
        })
        .collect::<Result<_>>()?;
    let global = global_first.then(|| {
        rows.iter()
            .map(|ids| {
                let mut global = vec![0; ids.len()];
                global[0] = 1;
                global
            })
            .collect()
    });
    Ok((
        InputJson {
            input_ids: rows,
            attention_mask: None,
            global_attention_mask: global,
            token_type_ids: None,
        },
        tokenizer,
    ))
}

/// Writes `outputs` to `path` as safetensors, with `metadata` in its header.
fn write_output(
    path: &Path,
    outputs: &[Output],
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<()> {
    let tensors: Vec<(&str, &[f32], Vec<usize>)> = outputs
        .iter()
        .map(|(name, values, dims)| (name.as_str(), values.as_slice(), dims.clone()))
        .collect();
    let file = crate::output::f32_safetensors(&tensors, metadata)?;
    crate::output::write_file(path, &file).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows over the limit keep their first `limit` ids other than padding (and their closing
    /// id with `keep_last`), masks alike; shorter rows and explicit padding are untouched.
    #[test]
    fn truncation_keeps_the_first_tokens_and_optionally_the_last() {
        let mut rows = InputJson {
            input_ids: vec![vec![0, 5, 6, 7, 8, 2], vec![0, 5, 1, 1, 2]],
            attention_mask: Some(vec![vec![1; 6], vec![1, 1, 0, 0, 1]]),
            global_attention_mask: None,
            token_type_ids: None,
        };
        let mut text = InputJson {
            input_ids: rows.input_ids.clone(),
            attention_mask: rows.attention_mask.clone(),
            global_attention_mask: None,
            token_type_ids: None,
        };
        // Pad id 1: the second row holds 3 real ids, under the limit of 4.
        assert_eq!(truncate_rows(&mut rows, 4, 1, false), [(0, 6, 4)]);
        assert_eq!(rows.input_ids, [vec![0, 5, 6, 7], vec![0, 5, 1, 1, 2]]);
        assert_eq!(rows.attention_mask.unwrap()[0], [1, 1, 1, 1]);
        assert_eq!(truncate_rows(&mut text, 4, 1, true), [(0, 6, 4)]);
        assert_eq!(text.input_ids[0], [0, 5, 6, 2]);
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

    /// Token types of ragged rows are laid out on the padded grid, padding typed 0.
    #[test]
    fn token_types_pad_ragged_rows_with_zero() {
        let device = Device::flex();
        let types = token_types(&[vec![1, 1, 1], vec![1]], [2, 3], &device);
        let values: Vec<i64> = types.into_data().iter::<i64>().collect();
        assert_eq!(values, [1, 1, 1, 1, 0, 0]);
    }

    /// The bundled tiny model: a Longformer `config.json` and a `tokenizer.json` that says
    /// `add_prefix_space: true`, which HF's tokenizer class for Longformer overrides.
    fn tiny_model() -> PathBuf {
        let manifest = std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test");
        Path::new(&manifest).join("../../assets/tiny-longformer")
    }

    #[test]
    fn text_gets_the_ids_hf_gives_it() {
        // HF: AutoTokenizer.from_pretrained("assets/tiny-longformer")(text)["input_ids"]
        // (transformers 5.24). No prefix space, and the WikiHop markers are plain text.
        for (text, hf) in [
            (
                "Hello world",
                &[0, 44, 335, 80, 83, 285, 264, 80, 72, 2][..],
            ),
            (
                "a [ent] b [/question]",
                &[
                    0, 69, 225, 63, 316, 88, 65, 270, 225, 63, 19, 85, 89, 589, 396, 65, 2,
                ],
            ),
        ] {
            let (input, _) = tokenize(&tiny_model(), &[text.to_string()], true).unwrap();
            assert_eq!(input.input_ids, [hf], "{text:?}");
            let global = input.global_attention_mask.unwrap();
            assert_eq!(global[0].iter().sum::<i64>(), 1);
            assert_eq!(global[0][0], 1);
        }
    }
}
