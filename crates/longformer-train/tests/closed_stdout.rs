//! A reader that closes `longformer`'s stdout early (`longformer bench | head -1`) ends the
//! process as it ends `cat`: by SIGPIPE, quietly, not with a "Broken pipe" panic; and `encode`
//! has written its output file before it prints its summary.

#![cfg(unix)]

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn repo_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf())
        .join("../..")
}

/// Runs `longformer args` with its stdout a pipe whose reading end is already closed; the exit
/// status and stderr.
fn run_with_closed_stdout(args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_longformer"))
        .current_dir(repo_root())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run longformer");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait for longformer");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bench_ends_quietly_when_stdout_closes() {
    let (status, stderr) = run_with_closed_stdout(&[
        "bench",
        "--layers",
        "1",
        "--hidden",
        "32",
        "--heads",
        "2",
        "--vocab",
        "100",
        "--window",
        "8",
        "--seq",
        "16,24",
        "--global",
        "2",
        "--repeats",
        "1",
    ]);
    assert_eq!(status.signal(), Some(libc::SIGPIPE), "{status:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn encode_writes_its_file_before_its_summary() {
    let dir = std::env::temp_dir().join(format!("lf-closed-stdout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("ids.json");
    std::fs::write(&input, r#"{"input_ids": [[0, 5, 6, 2], [0, 7, 2]]}"#).unwrap();
    let output = dir.join("logits.safetensors");
    let model = repo_root().join("tests/fixtures/head_sequence_classification");
    let (status, stderr) = run_with_closed_stdout(&[
        "encode",
        "--model",
        model.to_str().unwrap(),
        "--head",
        "sequence-classification",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]);
    assert_eq!(status.signal(), Some(libc::SIGPIPE), "{status:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let bytes = std::fs::read(&output).expect("the file is written before the summary");
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(file.tensor("logits").unwrap().shape()[0], 2);
    std::fs::remove_dir_all(dir).unwrap();
}
