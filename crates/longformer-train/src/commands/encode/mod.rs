//! `longformer encode`: run the encoder on ids from a JSON file (or text) and save
//! `last_hidden_state` (with, when asked, the hidden states and attentions), or, with `--head`,
//! run a HuggingFace task head and save its logits.

mod heads;
mod input;
mod output;
mod progress;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::Tensor;
use clap::{Args, ValueEnum};
use longformer_model::batching::BatchLimit;
use longformer_model::{
    LongformerConfig, LongformerForMaskedLM, LongformerForMultipleChoice,
    LongformerForQuestionAnswering, LongformerForSequenceClassification,
    LongformerForTokenClassification, LongformerInput, OutputOptions, TaskHead, load_pretrained,
};

use crate::backend::{Backend, Precision};
use crate::progress::note;
use heads::run_head;
use input::{read_input, read_text_file, text_files, token_types, tokenize, truncate_rows};
pub use output::Pool;
use output::{Batching, Output, host, run_batches, unsort, write_output};

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
    /// `--attentions` takes all rows in one batch. Where only a row's real tokens are written
    /// (`--pool` without `--hidden-states`, `--head sequence-classification`), rows of similar
    /// lengths go together, longest first, each batch at the length of its own longest row, and
    /// the output keeps the input's order.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
    /// Also at most this many tokens per forward pass, padding counted (rows × the batch's
    /// length): long rows go a few at a time, which bounds memory, short ones up to
    /// `--batch-size`. A row over it alone is a batch of its own; nothing is cut. With
    /// `--head multiple-choice`, whole examples, at least one [default: no limit].
    #[arg(long, value_name = "TOKENS", conflicts_with = "attentions",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_tokens: Option<u64>,
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
    let lengths = rows.real_lengths();
    let [batch, seq] = input.dims();
    let batch_size = args.batch_size as usize;
    let limit = BatchLimit::items(batch_size).with_tokens(
        args.max_tokens
            .map(|t| usize::try_from(t).unwrap_or(usize::MAX)),
    );
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
        None => (
            encode_rows(&args, &input, &lengths, limit, &source)?,
            Vec::new(),
        ),
        Some(head) => run_head(
            head,
            &args,
            input,
            limit,
            (&rows.input_ids, &lengths),
            tokenizer.as_ref(),
        )
        .with_context(|| format!("encoding {source}"))?,
    };
    let elapsed = start.elapsed();
    // Which file each row came from, when rows are files.
    let metadata = (!files.is_empty()).then(|| {
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        let rows = serde_json::to_string(&names).expect("strings serialize");
        std::collections::HashMap::from([("rows".to_string(), rows)])
    });
    // The file first: a reader that closes stdout early (`| head`) must not cost it.
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

/// The base model's outputs for the rows of `input` (`source` names them in errors), encoded
/// in batches within `limit`: `last_hidden_state` or, with `--pool`, the pooled rows; the
/// pooler's output when the checkpoint has a pooler; the hidden states and attentions when
/// asked. With `--pool` alone (outputs of a row's real tokens only), the rows go longest first,
/// each batch cut to its longest row (`lengths`, see [`Batching::ByLength`]), and come back in
/// order.
fn encode_rows(
    args: &EncodeArgs,
    input: &LongformerInput,
    lengths: &[usize],
    limit: BatchLimit,
    source: &str,
) -> Result<Vec<Output>> {
    let device = input.input_ids.device();
    let model = load_pretrained(&args.model, &device)
        .with_context(|| format!("loading the model in {}", args.model.display()))?;
    let model = args.dtype.apply(model, &device)?;
    let options = OutputOptions::default()
        .with_hidden_states(args.hidden_states)
        .with_attentions(args.attentions);
    // Batch by batch; with `--pool`, only `[rows, hidden]` of each batch is kept.
    let (mut last, mut pooled, mut pooler, mut hidden, mut attentions) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let by_length = args.pool.is_some() && !args.hidden_states && !args.attentions;
    let batching = if by_length {
        Batching::ByLength(lengths)
    } else {
        Batching::InOrder
    };
    let (_, order) = run_batches(input, limit, batching, |rows| {
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
        Ok(())
    })?;
    let in_order = |parts: Vec<Tensor<2>>| {
        let rows = Tensor::cat(parts, 0);
        if by_length {
            unsort(rows, &order)
        } else {
            rows
        }
    };
    let mut outputs = vec![match args.pool {
        Some(pool) => host(pool.output_name(), in_order(pooled))?,
        None => host("last_hidden_state", Tensor::cat(last, 0))?,
    }];
    if !pooler.is_empty() {
        outputs.push(host("pooler_output", in_order(pooler))?);
    }
    for i in 0..hidden[0].len() {
        let layer = hidden.iter().map(|h| h[i].clone()).collect();
        outputs.push(host(&format!("hidden_state_{i}"), Tensor::cat(layer, 0))?);
    }
    // One batch (the caller checks): the global slots are the whole input's.
    for (i, probs) in attentions.into_iter().enumerate() {
        outputs.push(host(&format!("attentions_{i}"), probs.local)?);
        if let Some(global) = probs.global {
            outputs.push(host(&format!("global_attentions_{i}"), global)?);
        }
    }
    Ok(outputs)
}
