//! `longformer`: the command-line front end (encode, prepare, ...).
//!
//! The backend is a Cargo feature (`flex`, `ndarray`, `wgpu`, `vulkan`); `cargo xtask` picks it.

mod backend;
mod commands;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "longformer", version, about = "Longformer on Burn")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the encoder on token ids or text and write `last_hidden_state` to a safetensors file.
    Encode(commands::encode::EncodeArgs),
    /// Turn a WikiHop (QAngaroo) JSON file into model inputs, one JSON line per chunk.
    Prepare(commands::prepare::PrepareArgs),
    /// Time the forward pass of a random-weight model and report peak memory (JSON lines).
    Bench(commands::bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Encode(args) => commands::encode::run(args),
        Command::Prepare(args) => commands::prepare::run(args),
        Command::Bench(args) => commands::bench::run(args),
    }
}
