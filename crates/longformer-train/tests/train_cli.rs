//! `longformer train` and `longformer eval` end to end on a few sample-set records.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf())
        .join("../..")
}

fn longformer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_longformer"))
        .current_dir(repo_root())
        .args(args)
        .output()
        .expect("run longformer")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lf-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The first `n` records of the sample's dev set, as a WikiHop file in `dir`.
fn small_wikihop(dir: &Path, n: usize) -> PathBuf {
    let text = std::fs::read_to_string(repo_root().join("data/wikihop-sample/dev.json")).unwrap();
    let records: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let path = dir.join("small.json");
    std::fs::write(&path, serde_json::to_string(&records[..n]).unwrap()).unwrap();
    path
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn trains_checkpoints_summarizes_and_evaluates() {
    let dir = temp_dir("run");
    let data = small_wikihop(&dir, 12);
    let data = data.to_str().unwrap();
    let run = dir.join("run");
    let run_s = run.to_str().unwrap();
    let train_args = [
        "train",
        "--train",
        data,
        "--dev",
        data,
        "--max-steps",
        "4",
        "--batch-size",
        "3",
        "--eval-every",
        "2",
        "--checkpoint-every",
        "2",
        "--log-every",
        "1",
        "--warmup",
        "1",
        "--run-dir",
        run_s,
    ];
    let out = longformer(&train_args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("step      4/4"), "{}", stderr(&out));

    let summary = json(&run.join("summary.json"));
    assert_eq!(summary["optimizer_steps"], 4);
    assert_eq!(summary["backend"], "flex");
    assert_eq!(summary["dev_examples"], 12);
    for key in [
        "dev_accuracy",
        "chance_accuracy",
        "wall_seconds",
        "best_dev_accuracy",
    ] {
        let value = summary[key].as_f64().unwrap_or(-1.0);
        assert!((0.0..=1e6).contains(&value), "{key} = {value}");
    }
    let chance = summary["chance_accuracy"].as_f64().unwrap();
    assert!(chance > 0.1 && chance < 0.6, "chance {chance}");
    let svg = std::fs::read_to_string(run.join("training_curve.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("dev accuracy"));
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(
        metrics.lines().filter(|l| l.contains("\"train\"")).count(),
        4
    );
    assert_eq!(metrics.lines().filter(|l| l.contains("\"dev\"")).count(), 2);
    for file in [
        "checkpoints/step-00000002/model.bpk",
        "checkpoints/step-00000004/optimizer.bpk",
        "checkpoints/step-00000004/state.json",
        "best/model.bpk",
        "final/model.bpk",
        "run.json",
        "config.json",
    ] {
        assert!(run.join(file).is_file(), "missing {file}");
    }

    // The run directory is taken: no silent overwrite.
    let again = longformer(&train_args);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("--resume"), "{}", stderr(&again));

    // Resuming a finished run trains no more and reports the same step count.
    let resumed = longformer(&["train", "--resume", run_s]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(json(&run.join("summary.json"))["optimizer_steps"], 4);

    let eval = longformer(&["eval", "--run", run_s, "--weights", "final"]);
    assert!(eval.status.success(), "{}", stderr(&eval));
    let predictions = json(&run.join("predictions.json"));
    let predictions = predictions.as_object().unwrap();
    assert_eq!(predictions.len(), 12);
    let records: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(data).unwrap()).unwrap();
    for record in &records {
        let p = &predictions[record["id"].as_str().unwrap()];
        let candidates = record["candidates"].as_array().unwrap();
        assert_eq!(p["scores"].as_array().unwrap().len(), candidates.len());
        let index = p["predicted_index"].as_u64().unwrap() as usize;
        assert_eq!(p["prediction"], candidates[index]);
        assert_eq!(p["correct"], record["answer"] == candidates[index]);
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_inputs_are_clear_errors() {
    let dir = temp_dir("errors");
    let broken = dir.join("broken.json");
    std::fs::write(&broken, "[{\"id\": \"x\", \"query\": ").unwrap();
    let out = longformer(&[
        "train",
        "--train",
        broken.to_str().unwrap(),
        "--run-dir",
        dir.join("r1").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("broken.json"), "{}", stderr(&out));

    let out = longformer(&["train", "--resume", dir.join("nothing").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("run.json"), "{}", stderr(&out));

    let data = small_wikihop(&dir, 4);
    let out = longformer(&[
        "train",
        "--train",
        data.to_str().unwrap(),
        "--dev",
        data.to_str().unwrap(),
        "--lr",
        "0",
        "--run-dir",
        dir.join("r2").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("lr must be positive"),
        "{}",
        stderr(&out)
    );

    let out = longformer(&["train", "--resume", dir.to_str().unwrap(), "--lr", "1e-4"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("drop --lr"), "{}", stderr(&out));

    let out = longformer(&["eval", "--run", dir.join("nothing").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("run.json"), "{}", stderr(&out));
    std::fs::remove_dir_all(dir).unwrap();
}
