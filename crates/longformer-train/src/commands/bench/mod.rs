//! `longformer bench`: time and peak memory of a random-weight model (no download), for the
//! forward pass alone or a whole training step, optionally side by side with HF PyTorch.
//!
//! - [`report`]: the JSON row both sides print, and the Markdown table.
//! - [`compare`]: `--compare-hf`, one process per measurement, ours and HF's alternating.
//! - [`gradcheck`]: `--gradient-check`, the backend's gradients against flex's.

pub mod compare;
pub mod core;
pub mod gradcheck;
pub mod report;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::tensor::{Int, Tensor, TensorData};
use clap::Args;
use longformer_model::{
    AttentionDilation, AttentionWindow, LocalAttentionKernel, LongformerConfig, LongformerInput,
};

use burn::optim::GradientsParams;

use crate::backend::{Backend, Precision};
use crate::optimization::OptimizerSettings;
use crate::progress::{note, say};
use crate::readback::read_back;

/// Arguments of `longformer bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Encoder layers.
    #[arg(long, default_value_t = 12)]
    pub layers: usize,
    /// Hidden size.
    #[arg(long, default_value_t = 768)]
    pub hidden: usize,
    /// Attention heads.
    #[arg(long, default_value_t = 12)]
    pub heads: usize,
    /// Vocabulary size (longformer-base's 50,265; a smaller one fits devices whose largest
    /// buffer binding is under the `[vocab, hidden]` embedding, such as OpenGL's 128 MiB).
    #[arg(long, default_value_t = 50_265, value_parser = clap::value_parser!(u32).range(4..))]
    pub vocab: u32,
    /// Full attention window.
    #[arg(long, default_value_t = 512)]
    pub window: usize,
    /// Sequence lengths, comma separated. Peak memory is the process's; give one length per run
    /// to measure each length's peak.
    #[arg(long, value_delimiter = ',', default_value = "4096")]
    pub seq: Vec<usize>,
    /// Global tokens per row (the first ones).
    #[arg(long, default_value_t = 64)]
    pub global: usize,
    /// Rows per batch.
    #[arg(long, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub batch: usize,
    /// Timed repeats after one warm-up.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// `fwd`: the forward pass. `train`: one training step: forward, backward of the scalar
    /// `mean(last_hidden_state)`, and an AdamW update.
    #[arg(long, value_enum, default_value_t = Mode::Fwd)]
    pub mode: Mode,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    pub backend: Backend,
    /// CPU threads (ours: the rayon pool and ndarray's matmul; HF: `torch.set_num_threads`).
    /// Defaults to every core.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub threads: Option<usize>,
    /// Also time HF transformers' PyTorch `LongformerModel` on the same shapes
    /// (`scripts/bench_hf.py`), alternating with ours, each length in fresh processes so that
    /// peak memory is per length; adds `hf_median_ms`, `hf_peak_bytes` and `ratio` (ours / HF).
    #[arg(long)]
    pub compare_hf: bool,
    /// Python interpreter with `torch` and `transformers`, for `--compare-hf`.
    #[arg(long, default_value = "python3")]
    pub python: PathBuf,
    /// The HF side's script, for `--compare-hf`.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/bench_hf.py"))]
    pub hf_script: PathBuf,
    /// Dilation of every head (1: HF's plain window; HF has no dilation, so not with
    /// `--compare-hf`).
    #[arg(long, default_value_t = 1)]
    pub dilation: usize,
    /// Causal windows (HF has none, so not with `--compare-hf`).
    #[arg(long)]
    pub causal: bool,
    /// In `--mode train`, keep only each layer's input and recompute the layers one at a time
    /// in the backward pass (activation checkpointing; with `--compare-hf`, HF's
    /// `gradient_checkpointing_enable()` on its side).
    #[arg(long)]
    pub gradient_checkpointing: bool,
    /// Dropout probability of the hidden states and attention probabilities in `--mode train`
    /// (Longformer's default 0.1; GPU anchors such as `anchor_bench.py` time with 0).
    #[arg(long, default_value_t = 0.1)]
    pub dropout: f64,
    /// What is timed: the whole `model`, or the `attention` core of one layer alone (local
    /// window and global keys for every token, and the global rows; no projections).
    #[arg(long, value_enum, default_value_t = Part::Model)]
    pub part: Part,
    /// Local-attention implementation: `auto` and `fused` (the fused op: the CubeCL kernel on
    /// GPUs, the CPU op on flex and ndarray) or `reference` (the band path of tensor ops).
    #[arg(long, value_enum, default_value_t = Kernel::Auto)]
    pub kernel: Kernel,
    /// Float dtype of the weights and activations (the attention core computes in f32 either
    /// way); HF's side runs in the same dtype with `--compare-hf`.
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub dtype: Precision,
    /// Also write the rows as a JSON array to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Instead of timing: one forward and backward pass of `sum(last_hidden_state · c)` (a
    /// fixed `c`) on this backend and on flex from the same weights, and every parameter's
    /// gradient compared; prints the largest difference (relative to each tensor's largest
    /// gradient) and fails above 1e-3. Checks the GPU kernels on a real device; give a small
    /// model (`--layers 2 --hidden 128 --vocab 1000 --seq 512`): flex computes it too.
    #[arg(long)]
    pub gradient_check: bool,
}

/// What `longformer bench` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Forward only.
    Fwd,
    /// Forward, backward and optimizer update.
    Train,
}

/// What `longformer bench` times (`--part`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// The whole encoder.
    Model,
    /// One layer's attention core alone.
    Attention,
}

/// `--kernel`: [`LocalAttentionKernel`] on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kernel {
    /// The fused kernel where it applies, the band path elsewhere.
    Auto,
    /// The fused kernel wherever it applies.
    Fused,
    /// Always the band path.
    Reference,
}

impl Kernel {
    fn choice(self) -> LocalAttentionKernel {
        match self {
            Self::Auto => LocalAttentionKernel::Auto,
            Self::Fused => LocalAttentionKernel::Fused,
            Self::Reference => LocalAttentionKernel::Reference,
        }
    }

    /// The flag's value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Fused => "fused",
            Self::Reference => "reference",
        }
    }

    fn label(self) -> Option<String> {
        match self {
            Self::Auto => None,
            Self::Fused => Some("fused kernel".into()),
            Self::Reference => Some("band path".into()),
        }
    }
}

impl Mode {
    /// The name rows carry (`fwd`, `train`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Fwd => "fwd",
            Self::Train => "train",
        }
    }
}

/// Runs the command: one JSON row per sequence length as it is measured, then a Markdown table.
pub fn run(args: BenchArgs) -> Result<()> {
    if args.seq.is_empty() || args.seq.contains(&0) || args.repeats == 0 {
        anyhow::bail!("--seq needs positive lengths and --repeats at least 1");
    }
    if let Some(&shortest) = args.seq.iter().min()
        && args.global > shortest
    {
        anyhow::bail!(
            "--global {} is more than --seq {shortest} holds: the first --global tokens of a \
             row are global (give --global {shortest} or less)",
            args.global
        );
    }
    let threads = args.threads.unwrap_or_else(compare::available_threads);
    if args.compare_hf && (args.dilation != 1 || args.causal) {
        anyhow::bail!(
            "--compare-hf times HF's plain window: HF has no --dilation or --causal windows"
        );
    }
    if !(0.0..1.0).contains(&args.dropout) {
        anyhow::bail!("--dropout must be in [0, 1), got {}", args.dropout);
    }
    if args.compare_hf && args.part != Part::Model {
        anyhow::bail!(
            "--compare-hf times HF's whole model; time the attention core against \
             FlexAttention with anchor_bench.py"
        );
    }
    if args.part == Part::Attention && args.dtype != Precision::F32 {
        anyhow::bail!(
            "--part attention times the attention core, which computes in f32 whatever --dtype is"
        );
    }
    if args.gradient_checkpointing && args.mode != Mode::Train {
        anyhow::bail!("--gradient-checkpointing applies to --mode train only");
    }
    if args.gradient_checkpointing && args.part == Part::Attention {
        anyhow::bail!(
            "--gradient-checkpointing recomputes the model's layers; --part attention times one \
             layer's attention core, which keeps its own O(n·d) state either way"
        );
    }
    let split = longformer_model::linear::split_k_chunks();
    if split > 1 {
        note(&format!(
            "{}={split}: on GPUs, training passes split the projections' weight gradients \
             into {split} products of rows (experimental)",
            longformer_model::linear::SPLIT_K_VAR
        ));
    }
    if args.gradient_check {
        if args.compare_hf || args.part != Part::Model || args.dtype != Precision::F32 {
            anyhow::bail!(
                "--gradient-check compares the whole model's f32 gradients with flex's: not \
                 with --compare-hf, --part attention or --dtype"
            );
        }
        return gradcheck::gradient_check(&args, &model_config(&args)?);
    }
    let rows = if args.compare_hf {
        compare::compare(&args, threads)?
    } else {
        if let Some(n) = args.threads {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build_global()
                .context("setting the thread count (--threads)")?;
        }
        measure(&args, threads)?
    };
    say(&format!("\n{}", report::markdown_table(&rows)));
    if let Some(path) = &args.out {
        report::write_rows(path, &rows)?;
        note(&format!("wrote {}", path.display()));
    }
    Ok(())
}

/// Token ids of the benchmark input are `3 + (i · 7919 mod token_range)`: HF's script draws
/// the same ids (50,000 for the base vocabulary).
fn token_range(vocab: u32) -> usize {
    (vocab as usize - 3).min(50_000)
}

/// The model the flags describe (random weights come from its `init`).
fn model_config(args: &BenchArgs) -> Result<LongformerConfig> {
    let max_seq = args.seq.iter().copied().max().unwrap_or(0);
    let config = LongformerConfig::new()
        .with_vocab_size(args.vocab as usize)
        .with_num_hidden_layers(args.layers)
        .with_hidden_size(args.hidden)
        .with_num_attention_heads(args.heads)
        .with_intermediate_size(4 * args.hidden)
        .with_max_position_embeddings(max_seq + 2)
        .with_attention_window(AttentionWindow::Uniform(args.window))
        .with_attention_dilation(AttentionDilation::Uniform(args.dilation))
        .with_autoregressive(args.causal)
        .with_hidden_dropout_prob(args.dropout)
        .with_attention_probs_dropout_prob(args.dropout)
        .with_local_attention_kernel(args.kernel.choice());
    config.validate().context(
        "the flags describe no valid model (--layers, --hidden, --heads, --vocab, --window, \
         --dilation, --causal set its config)",
    )?;
    Ok(config)
}

/// Measures every length of `args.seq` in this process, printing each row as JSON.
fn measure(args: &BenchArgs, threads: usize) -> Result<Vec<report::BenchRow>> {
    let device = args.backend.device()?;
    let config = model_config(args)?;
    let device = match args.mode {
        Mode::Fwd => device,
        Mode::Train => device.autodiff(),
    };
    if args.part == Part::Attention {
        return measure_attention_core(args, threads, &device);
    }
    let mut model = args
        .dtype
        .apply(config.init_with_pooler(false, &device), &device)?;
    let mut optimizer = OptimizerSettings::default().optimizer();
    let mut rows = Vec::new();
    let tokens = token_range(args.vocab);
    for &seq in &args.seq {
        let ids: Vec<i64> = (0..args.batch * seq)
            .map(|i| 3 + (i * 7919 % tokens) as i64)
            .collect();
        let global: Vec<bool> = (0..args.batch * seq)
            .map(|i| i % seq < args.global)
            .collect();
        let make_input = || {
            LongformerInput::new(Tensor::<2, Int>::from_data(
                TensorData::new(ids.clone(), [args.batch, seq]),
                &device,
            ))
            .with_global_attention_mask(Tensor::from_data(
                TensorData::new(global.clone(), [args.batch, seq]),
                &device,
            ))
        };
        let mut times = Vec::new();
        for i in 0..=args.repeats {
            let start = Instant::now();
            let (out, pass) = if args.gradient_checkpointing {
                let pass = model.try_forward_checkpointed(make_input())?;
                (pass.last_hidden_state.clone(), Some(pass))
            } else {
                (model.try_forward(make_input())?.last_hidden_state, None)
            };
            match args.mode {
                Mode::Fwd => {
                    read_back(out, "the forward pass")?; // wait for the device
                }
                Mode::Train => {
                    let loss = out.mean();
                    read_back(loss.clone(), "the forward pass")?; // wait for the device
                    let forward = start.elapsed();
                    let grads = match pass {
                        Some(pass) => pass.backward(&model, loss.backward()),
                        None => loss.backward(),
                    };
                    let grads = GradientsParams::from_grads(grads, &model);
                    // Wait for the backward pass: read one gradient.
                    let gamma = &model.embeddings.layer_norm.gamma;
                    if let Some(grad) = grads.get::<1>(gamma.id) {
                        read_back(grad, "the backward pass")?;
                    }
                    let backward = start.elapsed();
                    model = optimizer.step(1e-5, model, grads);
                    // Wait for the device: read one updated weight.
                    read_back(
                        model.embeddings.layer_norm.gamma.val(),
                        "the optimizer step",
                    )?;
                    note(&format!(
                        "seq {seq}: forward {:.0} ms, backward {:.0} ms, optimizer {:.0} ms",
                        forward.as_secs_f64() * 1e3,
                        (backward - forward).as_secs_f64() * 1e3,
                        (start.elapsed() - backward).as_secs_f64() * 1e3
                    ));
                }
            }
            device
                .sync()
                .map_err(|e| anyhow::anyhow!("the device failed: {e:?}"))?;
            if i > 0 {
                times.push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let row = report::BenchRow {
            backend: args.backend.feature().into(),
            mode: args.mode.name().into(),
            seq,
            batch: args.batch,
            median_ms: median,
            tokens_per_s: (args.batch * seq) as f64 / (median / 1e3),
            peak_bytes: peak_bytes(args.backend, &device),
            threads,
            pattern: pattern_name(args.dilation, args.causal, args.kernel, args.dtype),
            gradient_checkpointing: args.gradient_checkpointing,
            hf_median_ms: None,
            hf_peak_bytes: None,
            ratio: None,
        };
        say(&serde_json::to_string(&row)?);
        rows.push(row);
    }
    Ok(rows)
}

/// How a row names a window other than HF's plain one, a forced kernel choice and a dtype other
/// than f32.
fn pattern_name(dilation: usize, causal: bool, kernel: Kernel, dtype: Precision) -> Option<String> {
    let window = match (dilation, causal) {
        (1, false) => None,
        (1, true) => Some("causal".into()),
        (d, false) => Some(format!("dilation {d}")),
        (d, true) => Some(format!("dilation {d}, causal")),
    };
    let dtype = (dtype != Precision::F32).then(|| dtype.name().to_string());
    let notes: Vec<String> = window
        .into_iter()
        .chain(kernel.label())
        .chain(dtype)
        .collect();
    (!notes.is_empty()).then(|| notes.join(", "))
}

/// `--part attention`: times [`core::AttentionCore`] at every length (mode `attention fwd` or
/// `attention train`).
fn measure_attention_core(
    args: &BenchArgs,
    threads: usize,
    device: &burn::tensor::Device,
) -> Result<Vec<report::BenchRow>> {
    if args.dilation != 1 || args.causal {
        anyhow::bail!("--part attention times the plain window (no --dilation or --causal)");
    }
    if args.kernel == Kernel::Fused && !longformer_model::attention::fused::fused_available(device)
    {
        anyhow::bail!(
            "--kernel fused: the fused op is not available on {}",
            args.backend.feature()
        );
    }
    let mut rows = Vec::new();
    for &seq in &args.seq {
        let shape = core::CoreShape {
            batch: args.batch,
            heads: args.heads,
            seq,
            head_dim: args.hidden / args.heads,
            window: args.window / 2,
            n_global: args.global,
        };
        let case = core::AttentionCore::new(&shape, args.kernel.choice(), device);
        let train = args.mode == Mode::Train;
        let mut times = Vec::new();
        for i in 0..=args.repeats {
            let start = Instant::now();
            case.run(train)?;
            if i > 0 {
                times.push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        if args.kernel != Kernel::Reference {
            note(&format!(
                "seq {seq}: attention core (local and global rows), max |this path - Burn \
                 ops| = {:.2e}",
                case.difference_from_reference()?
            ));
        }
        let row = report::BenchRow {
            backend: args.backend.feature().into(),
            mode: format!("attention {}", args.mode.name()),
            seq,
            batch: args.batch,
            median_ms: median,
            tokens_per_s: (args.batch * seq) as f64 / (median / 1e3),
            peak_bytes: peak_bytes(args.backend, device),
            threads,
            pattern: pattern_name(1, false, args.kernel, Precision::F32),
            gradient_checkpointing: false,
            hf_median_ms: None,
            hf_peak_bytes: None,
            ratio: None,
        };
        say(&serde_json::to_string(&row)?);
        rows.push(row);
    }
    Ok(rows)
}

/// Peak memory of the run so far: on GPUs the device memory Burn's allocator has reserved (its
/// pool keeps what it took, so this is its high-water mark), on CPUs the process's peak resident
/// memory.
fn peak_bytes(backend: Backend, device: &burn::tensor::Device) -> Option<u64> {
    match backend {
        Backend::Wgpu | Backend::Vulkan => device.memory_pool_usage().map(|u| u.bytes_reserved),
        Backend::Flex | Backend::Ndarray => peak_rss_bytes(),
    }
}

/// The process's peak resident memory (`VmHWM`), where the OS reports it.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).map(|c| c.args)
    }

    /// Flags that measure nothing, or panicked before, are refused before any model is built.
    #[test]
    fn flags_that_describe_no_run_are_refused() {
        for flags in [&["--batch", "0"][..], &["--threads", "0"], &["--seq", "0"]] {
            let refused = parse(flags).map_err(|e| e.to_string()).and_then(|args| {
                run(args).map_err(|e| e.to_string())?;
                Ok(())
            });
            assert!(refused.is_err(), "{flags:?} was accepted");
        }
        let message = run(parse(&["--seq", "32"]).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("--global 64") && message.contains("--seq 32"),
            "{message}"
        );
        let args = parse(&[
            "--hidden", "30", "--heads", "4", "--seq", "64", "--layers", "1",
        ]);
        let message = format!("{:#}", run(args.unwrap()).unwrap_err());
        assert!(
            message.contains("--hidden") && message.contains("not divisible"),
            "{message}"
        );
    }
}
