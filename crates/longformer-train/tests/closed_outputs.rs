//! A reader that goes away (`longformer bench | head -1`, `2>&1 | head`) neither crashes a
//! command ("Broken pipe" panics of `println!`) nor costs its files: the results still land in
//! `--output` / `--out`, and the exit status is success.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn repo_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf())
        .join("../..")
}

/// Runs `longformer args` with stdout and stderr pipes whose reading ends are already closed.
fn run_with_closed_outputs(args: &[&str]) -> std::process::ExitStatus {
    let mut child = Command::new(env!("CARGO_BIN_EXE_longformer"))
        .current_dir(repo_root())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run longformer");
    drop(child.stdout.take());
    drop(child.stderr.take());
    child.wait().expect("wait for longformer")
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lf-closed-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn bench_finishes_and_writes_its_rows_when_nobody_reads() {
    let dir = scratch("bench");
    let rows = dir.join("rows.json");
    let status = run_with_closed_outputs(&[
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
        "--out",
        rows.to_str().unwrap(),
    ]);
    assert!(status.success(), "{status:?}");
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&rows).unwrap()).unwrap();
    assert_eq!(rows.as_array().map(Vec::len), Some(2));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn encode_with_a_head_writes_its_file_when_nobody_reads() {
    let dir = scratch("encode");
    let input = dir.join("ids.json");
    std::fs::write(&input, r#"{"input_ids": [[0, 5, 6, 2], [0, 7, 2]]}"#).unwrap();
    let output = dir.join("logits.safetensors");
    let model = repo_root().join("tests/fixtures/head_sequence_classification");
    let status = run_with_closed_outputs(&[
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
    assert!(status.success(), "{status:?}");
    let bytes = std::fs::read(&output).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(file.tensor("logits").unwrap().shape()[0], 2);
    std::fs::remove_dir_all(dir).unwrap();
}
