//! `--compare-hf`: every sequence length is measured twice, by this binary and by
//! `scripts/bench_hf.py` (HF transformers' PyTorch `LongformerModel`), each in a fresh process with
//! the same thread count, so that peak memory is per length and neither side warms the other's
//! caches. The order alternates from one length to the next.

use std::process::Command;

use anyhow::{Context, Result, bail};

use super::BenchArgs;
use super::report::BenchRow;
use crate::progress::{note, say};

/// Cores this process may use.
pub fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Measures ours and HF's on every length of `args.seq`, printing each combined row as JSON.
pub fn compare(args: &BenchArgs, threads: usize) -> Result<Vec<BenchRow>> {
    check_python(args)?;
    let exe = std::env::current_exe().context("locating this binary")?;
    let mut rows = Vec::new();
    for (i, &seq) in args.seq.iter().enumerate() {
        let ours = || -> Result<BenchRow> {
            let mut cmd = Command::new(&exe);
            cmd.arg("bench")
                .args(["--backend", args.backend.feature()])
                .args(shape_args(args, seq, threads));
            if args.gradient_checkpointing {
                cmd.arg("--gradient-checkpointing");
            }
            cmd.args(["--kernel", args.kernel.name()]);
            run_row(cmd, threads, &format!("our bench at seq {seq}"))
        };
        let hf = || -> Result<BenchRow> {
            let mut cmd = Command::new(&args.python);
            cmd.arg(&args.hf_script)
                .args(shape_args(args, seq, threads));
            if args.gradient_checkpointing {
                cmd.arg("--gradient-checkpointing");
            }
            run_row(cmd, threads, &format!("scripts/bench_hf.py at seq {seq}"))
        };
        let (ours, hf) = if i % 2 == 0 {
            let o = ours()?;
            (o, hf()?)
        } else {
            let h = hf()?;
            (ours()?, h)
        };
        let row = ours.compared_with(&hf);
        note(&format!(
            "seq {seq}: ours {:.1} ms, HF {:.1} ms, ratio {:.2}",
            row.median_ms,
            hf.median_ms,
            row.ratio.unwrap_or(f64::NAN)
        ));
        say(&serde_json::to_string(&row)?);
        rows.push(row);
    }
    Ok(rows)
}

/// The shape and timing flags both sides accept.
fn shape_args(args: &BenchArgs, seq: usize, threads: usize) -> Vec<String> {
    [
        ("--vocab", args.vocab.to_string()),
        ("--layers", args.layers.to_string()),
        ("--hidden", args.hidden.to_string()),
        ("--heads", args.heads.to_string()),
        ("--window", args.window.to_string()),
        ("--seq", seq.to_string()),
        ("--global", args.global.to_string()),
        ("--batch", args.batch.to_string()),
        ("--repeats", args.repeats.to_string()),
        ("--mode", args.mode.name().to_string()),
        ("--threads", threads.to_string()),
        ("--dropout", args.dropout.to_string()),
        ("--dtype", args.dtype.name().to_string()),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_string(), value])
    .collect()
}

/// Runs one measuring process with every thread pool sized to `threads` and reads its row.
fn run_row(mut cmd: Command, threads: usize, what: &str) -> Result<BenchRow> {
    let n = threads.to_string();
    for var in [
        "RAYON_NUM_THREADS",
        "MATMUL_NUM_THREADS",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
    ] {
        cmd.env(var, &n);
    }
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("starting {what}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("{what} failed ({}); its output was:\n{stdout}", out.status);
    }
    BenchRow::from_output(&stdout, what)
}

/// A clear error before any measurement when the HF side cannot run.
fn check_python(args: &BenchArgs) -> Result<()> {
    if !args.hf_script.is_file() {
        bail!(
            "--compare-hf needs {} (pass --hf-script PATH)",
            args.hf_script.display()
        );
    }
    let probe = Command::new(&args.python)
        .args(["-c", "import torch, transformers"])
        .output()
        .with_context(|| {
            format!(
                "--compare-hf runs {} (pass --python PATH); it could not be started",
                args.python.display()
            )
        })?;
    if !probe.status.success() {
        bail!(
            "--compare-hf needs torch and transformers in {} (pip install torch transformers): {}",
            args.python.display(),
            String::from_utf8_lossy(&probe.stderr).trim()
        );
    }
    Ok(())
}
