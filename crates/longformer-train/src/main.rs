//! `longformer`: the command-line front end (encode, prepare, bench, train, eval, export,
//! convert).
//!
//! Each backend is a Cargo feature (`flex`, `ndarray`, `wgpu` by default; `vulkan`, which
//! `cargo xtask --backend vulkan` adds); `--backend` picks one of those built in at run time.

use std::io::Write;
use std::process::ExitCode;

use longformer_train::commands;

use clap::{Parser, Subcommand};

/// mimalloc: glibc's allocator `mmap`s every large tensor afresh, so each is faulted in and
/// zeroed by the kernel again (1.8 million page faults in a two-forward bench run).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (index 15 of `mi_option_e` in its `mimalloc.h`, v2 and v3;
/// `libmimalloc-sys` names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory mapped for reuse instead of returning it to the OS 10 ms after it is
/// freed (mimalloc's default): a training step frees and reallocates gigabytes of activations,
/// and every re-fault is a zeroed page (a quarter of a step's time at n = 4096). The resident
/// size stays at the process's peak. `MIMALLOC_PURGE_DELAY` in the environment still rules.
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a plain integer option; mimalloc reads it on its next purge.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

#[derive(Parser, Debug)]
#[command(name = "longformer", version, about = "Longformer on Burn")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once
enum Command {
    /// Run the encoder on token ids or text and write `last_hidden_state` (or, with `--head`, a
    /// task head's logits; `--head mlm --text` fills `<mask>`) to a safetensors file.
    Encode(commands::encode::EncodeArgs),
    /// Turn a WikiHop (QAngaroo) JSON file into model inputs, one JSON line per chunk.
    Prepare(commands::prepare::PrepareArgs),
    /// Time the forward pass (`--mode train`: a training step) of a random-weight model, or one
    /// layer's attention core, and report peak memory (JSON lines).
    Bench(commands::bench::BenchArgs),
    /// Train a WikiHop model (with no arguments: a tiny model on the bundled sample set).
    Train(commands::train::TrainArgs),
    /// Accuracy and predictions.json of a trained WikiHop model (`--run RUN_DIR`).
    Eval(commands::eval::EvalArgs),
    /// Write a trained WikiHop run as a HuggingFace directory: its encoder (`LongformerModel`),
    /// tokenizer with the WikiHop markers, and answer-scoring layer.
    Export(commands::export::ExportArgs),
    /// Convert a RoBERTa checkpoint directory into a Longformer one (positions extended by
    /// copying, global projections copied from the local ones).
    Convert(commands::convert::ConvertArgs),
}

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Encode(args) => commands::encode::run(args),
        Command::Prepare(args) => commands::prepare::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Train(args) => commands::train::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Convert(args) => commands::convert::run(args),
        Command::Export(args) => commands::export::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "{}", commands::error_report(&error));
            ExitCode::FAILURE
        }
    }
}
