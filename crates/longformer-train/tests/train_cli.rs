//! `longformer train` and `longformer eval` end to end on a few sample-set records.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf())
        .join("../..")
}

fn longformer(args: &[&str]) -> Output {
    longformer_in(&repo_root(), args)
}

/// Runs the binary in `dir`.
fn longformer_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_longformer"))
        .current_dir(dir)
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
    let all_predictions = json(&run.join("predictions.json"));
    let predictions = all_predictions.as_object().unwrap();
    assert_eq!(predictions.len(), 12);
    // A token budget of one: an example per batch, the same predictions.
    let alone = run.join("alone.json");
    let eval = longformer(&[
        "eval",
        "--run",
        run_s,
        "--weights",
        "final",
        "--max-tokens",
        "1",
        "--out",
        alone.to_str().unwrap(),
    ]);
    assert!(eval.status.success(), "{}", stderr(&eval));
    let alone = json(&alone);
    for (id, p) in alone.as_object().unwrap() {
        let q = &predictions[id];
        assert_eq!(p["predicted_index"], q["predicted_index"], "{id}");
    }
    for (id, a, b) in paired_scores(&alone, &all_predictions) {
        assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{id}: {a} vs {b}");
    }
    // In bf16 (the attention core and the answer scores in f32): scores within bf16's
    // rounding of the f32 ones; ndarray has no bf16.
    let half = run.join("bf16.json");
    let half_s = half.to_str().unwrap();
    let eval = [
        "eval",
        "--run",
        run_s,
        "--weights",
        "final",
        "--out",
        half_s,
    ];
    let out = longformer(&[&eval[..], &["--dtype", "bf16"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let mut rounded = 0;
    for (id, a, b) in paired_scores(&json(&half), &all_predictions) {
        assert!((a - b).abs() <= 0.05 * (1.0 + b.abs()), "{id}: {a} vs {b}");
        rounded += usize::from(a != b);
    }
    assert!(
        rounded > 0,
        "bf16 scores equal the f32 ones: the model ran in f32"
    );
    let refused = [&eval[..], &["--dtype", "bf16", "--backend", "ndarray"]].concat();
    let message = failure(&longformer(&refused));
    assert!(message.contains("cannot compute in BF16"), "{message}");
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
    let out = longformer(&["eval", "--run", dir.to_str().unwrap(), "--max-tokens", "0"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--max-tokens"), "{}", stderr(&out));
    std::fs::remove_dir_all(dir).unwrap();
}

/// `--eval-batch-size` and `--eval-max-tokens` change how the dev set is batched, not what it
/// scores: a run with an example per evaluation batch ends at the dev loss and accuracy of one
/// with the defaults (within float rounding), and its run.json records both settings.
#[test]
fn eval_batch_limits_change_batching_not_scores() {
    let dir = temp_dir("eval-limits");
    let data = small_wikihop(&dir, 12);
    let data = data.to_str().unwrap();
    let (plain, limited) = (dir.join("plain"), dir.join("limited"));
    short_run_ok(data, plain.to_str().unwrap(), &[]);
    let extra = ["--eval-batch-size", "2", "--eval-max-tokens", "1"];
    short_run_ok(data, limited.to_str().unwrap(), &extra);
    let (a, b) = (
        json(&plain.join("summary.json")),
        json(&limited.join("summary.json")),
    );
    assert_eq!(a["dev_accuracy"], b["dev_accuracy"]);
    let (la, lb) = (
        a["dev_loss"].as_f64().unwrap(),
        b["dev_loss"].as_f64().unwrap(),
    );
    assert!((la - lb).abs() <= 1e-5 * (1.0 + la.abs()), "{la} vs {lb}");
    let settings = &json(&limited.join("run.json"))["settings"];
    assert_eq!(settings["eval_batch_size"], 2);
    assert_eq!(settings["eval_max_tokens"], 1);
    assert!(json(&plain.join("run.json"))["settings"]["eval_max_tokens"].is_null());
    std::fs::remove_dir_all(dir).unwrap();
}

/// Every candidate's score in two `predictions.json` files, side by side with its record's id
/// (the records of `a`, looked up in `b`).
fn paired_scores(a: &serde_json::Value, b: &serde_json::Value) -> Vec<(String, f64, f64)> {
    let mut pairs = Vec::new();
    for (id, p) in a.as_object().unwrap() {
        let theirs = b[id]["scores"].as_array().unwrap();
        for (x, y) in p["scores"].as_array().unwrap().iter().zip(theirs) {
            pairs.push((id.clone(), x.as_f64().unwrap(), y.as_f64().unwrap()));
        }
        assert_eq!(p["scores"].as_array().unwrap().len(), theirs.len(), "{id}");
    }
    pairs
}

/// A failed run: exit status 1 (an error, not a panic), and its stderr.
fn failure(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    stderr(out)
}

/// Arguments of a short training run on `data` into `run`, plus `extra`, whose flags replace
/// the same flags of the short run (clap refuses a flag given twice).
/// `--gradient-checkpointing` changes memory, not training: a run with it, and one resumed with
/// it (a flag `--resume` takes), log the same losses and gradient norms and end at the same dev
/// loss as a run without it. Within 1e-5: the recomputed layers run the same operations on the
/// same values, but a vectorized sum may round differently in another buffer's alignment.
#[test]
fn gradient_checkpointing_trains_the_same_run() {
    let dir = temp_dir("checkpointing");
    let data = small_wikihop(&dir, 12);
    let data = data.to_str().unwrap();
    // Every train line's step, loss, accuracy and gradient norm, then the final dev loss.
    let outcome = |run: &Path| -> Vec<f64> {
        let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
        let mut seen: Vec<f64> = metrics
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter_map(|v| v.get("train").cloned())
            .flat_map(|t| ["step", "loss", "accuracy", "grad_norm"].map(|k| t[k].as_f64().unwrap()))
            .collect();
        seen.push(
            json(&run.join("summary.json"))["dev_loss"]
                .as_f64()
                .unwrap(),
        );
        seen
    };
    let same = |a: &[f64], b: &[f64]| {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| (x - y).abs() <= 1e-5 * x.abs().max(1.0))
    };
    let plain = dir.join("plain");
    let args = ["--quiet", "--log-every", "1"];
    short_run_ok(data, plain.to_str().unwrap(), &args);
    let expected = outcome(&plain);
    assert_eq!(expected.len(), 4 * 4 + 1, "{expected:?}");
    let recomputed = dir.join("recomputed");
    let run_s = recomputed.to_str().unwrap();
    let checkpointed = [&args[..], &["--gradient-checkpointing"]].concat();
    short_run_ok(data, run_s, &checkpointed);
    let got = outcome(&recomputed);
    assert!(same(&got, &expected), "{got:?}\nagainst\n{expected:?}");
    assert_eq!(
        json(&recomputed.join("summary.json"))["gradient_checkpointing"],
        true
    );
    // Resumed from step 2 with the flag.
    std::fs::remove_dir_all(recomputed.join("checkpoints/step-00000004")).unwrap();
    std::fs::remove_file(recomputed.join("summary.json")).unwrap();
    let out = longformer(&[
        "train",
        "--resume",
        run_s,
        "--quiet",
        "--gradient-checkpointing",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let got = outcome(&recomputed);
    assert!(same(&got, &expected), "{got:?}\nagainst\n{expected:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// `--dtype f16` scales the loss: the scaling's settings go to run.json, the scale to each log
/// line and the summary; a resumed run keeps them (and refuses the flags).
#[test]
fn f16_training_scales_the_loss_and_records_it() {
    let dir = temp_dir("f16");
    let data = small_wikihop(&dir, 12);
    let data = data.to_str().unwrap();
    let run = dir.join("run");
    let run_s = run.to_str().unwrap();
    let args = ["--quiet", "--log-every", "1", "--dtype", "f16"];
    short_run_ok(
        data,
        run_s,
        &[&args[..], &["--loss-scale", "1024"]].concat(),
    );
    let record = json(&run.join("run.json"));
    assert_eq!(
        record["settings"]["loss_scaling"],
        serde_json::json!({"init_scale": 1024.0, "growth_interval": 2000})
    );
    let summary = json(&run.join("summary.json"));
    assert_eq!(summary["precision"], "f16");
    assert_eq!(summary["loss_scale"], 1024.0);
    assert_eq!(summary["skipped_steps"], 0);
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let scales: Vec<_> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|v| v.get("train").map(|t| t["loss_scale"].clone()))
        .collect();
    assert_eq!(scales, vec![serde_json::json!(1024.0); 4]);
    let message = failure(&longformer(&[
        "train",
        "--resume",
        run_s,
        "--loss-scale",
        "8",
    ]));
    assert!(message.contains("drop --loss-scale"), "{message}");
    // Without the flag, PyTorch's first scale, 2^16.
    let default = dir.join("default");
    short_run_ok(data, default.to_str().unwrap(), &args);
    let record = json(&default.join("run.json"));
    assert_eq!(record["settings"]["loss_scaling"]["init_scale"], 65536.0);
    // An f32 run records none.
    let plain = dir.join("plain");
    short_run_ok(data, plain.to_str().unwrap(), &["--quiet"]);
    assert!(json(&plain.join("run.json"))["settings"]["loss_scaling"].is_null());
    assert!(json(&plain.join("summary.json"))["loss_scale"].is_null());
    std::fs::remove_dir_all(dir).unwrap();
}

/// `bench` refuses `--gradient-checkpointing` where it would not apply, rather than report rows
/// that say it did.
#[test]
fn bench_refuses_gradient_checkpointing_where_it_does_not_apply() {
    for (extra, expected) in [
        (&["--mode", "fwd"][..], "--mode train only"),
        (
            &["--mode", "train", "--part", "attention"][..],
            "--part attention",
        ),
    ] {
        let mut args = vec![
            "bench",
            "--gradient-checkpointing",
            "--layers",
            "1",
            "--seq",
            "64",
        ];
        args.extend_from_slice(extra);
        let message = failure(&longformer(&args));
        assert!(message.contains(expected), "{args:?}: {message}");
    }
}

/// `bench --gradient-check` on the software GPU: the fused kernels' and the embeddings'
/// gradients against flex's, one line per length; refused with the flags it cannot honour.
#[test]
fn bench_gradient_check_compares_the_backend_with_flex() {
    let shape = [
        "bench",
        "--gradient-check",
        "--layers",
        "2",
        "--hidden",
        "64",
        "--heads",
        "4",
        "--vocab",
        "1000",
        "--window",
        "32",
        "--seq",
        "96,130",
        "--global",
        "5",
    ];
    let backend = if std::env::var("LONGFORMER_SKIP_WGPU").is_ok_and(|v| v == "1") {
        "ndarray"
    } else {
        "wgpu"
    };
    let mut args = shape.to_vec();
    args.extend(["--backend", backend]);
    let out = longformer(&args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    for seq in ["96", "130"] {
        let line = format!("seq {seq}: gradients on {backend} against flex: worst ");
        assert!(text.contains(&line), "{text}");
    }
    let mut args = shape.to_vec();
    args.extend(["--dtype", "bf16"]);
    assert!(failure(&longformer(&args)).contains("--gradient-check compares"));
}

fn short_run<'a>(data: &'a str, run: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut flags = vec![
        ["--train", data],
        ["--dev", data],
        ["--max-steps", "4"],
        ["--batch-size", "3"],
        ["--checkpoint-every", "2"],
        ["--warmup", "1"],
        ["--run-dir", run],
    ];
    flags.retain(|[flag, _]| !extra.contains(flag));
    let mut args = vec!["train"];
    args.extend(flags.into_iter().flatten());
    args.extend_from_slice(extra);
    args
}

/// Runs [`short_run`]`(data, run, extra)`, which must succeed.
fn short_run_ok(data: &str, run: &str, extra: &[&str]) {
    let out = longformer(&short_run(data, run, extra));
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A short run ([`short_run`]) on the first `records` dev records, in a fresh temp dir: the dir
/// and the run directory in it.
fn trained_run(tag: &str, records: usize) -> (PathBuf, PathBuf) {
    let dir = temp_dir(tag);
    let data = small_wikihop(&dir, records);
    let run = dir.join("run");
    short_run_ok(data.to_str().unwrap(), run.to_str().unwrap(), &[]);
    (dir, run)
}

/// The sample tokenizer's `tokenizer.json`, changed by `edit`, in `dir`.
fn edited_tokenizer(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let path = repo_root().join("data/wikihop-sample/tokenizer/tokenizer.json");
    let mut tokenizer = json(&path);
    edit(&mut tokenizer);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();
    dir.to_path_buf()
}

/// An HF Longformer directory as `from_pretrained` reads it: `assets/tiny-longformer` with a
/// word embedding of `rows` rows (cut, or padded with zero rows; `vocab_size` to match), and its
/// tokenizer.
fn hf_model(dir: &Path, rows: usize) {
    let source = repo_root().join("assets/tiny-longformer");
    std::fs::create_dir_all(dir).unwrap();
    let mut config = json(&source.join("config.json"));
    config["vocab_size"] = rows.into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::copy(source.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    let bytes = std::fs::read(source.join("model.safetensors")).unwrap();
    let weights = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = weights
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let mut shape = view.shape().to_vec();
            let mut data = view.data().to_vec();
            if name == "embeddings.word_embeddings.weight" {
                // Fewer rows, or zero rows past the file's.
                data.resize(rows * shape[1] * 4, 0);
                shape[0] = rows;
            }
            (name, view.dtype(), shape, data)
        })
        .collect();
    let views = tensors.iter().map(|(name, dtype, shape, data)| {
        let view = safetensors::tensor::TensorView::new(*dtype, shape.clone(), data).unwrap();
        (name.clone(), view)
    });
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
}

/// The README's fine-tuning path: an HF checkpoint whose vocabulary lacks the WikiHop
/// markers, so that its word embedding grows (on the autodiff device), then resume and eval.
#[test]
fn fine_tunes_resumes_and_evaluates_a_checkpoint_whose_vocabulary_grows() {
    let dir = temp_dir("model");
    let data = small_wikihop(&dir, 12);
    let data = data.to_str().unwrap();
    let model = dir.join("hf");
    hf_model(&model, 2048); // the tokenizer has 2048 ids, 2052 with the markers
    let model_s = model.to_str().unwrap();
    let run = dir.join("run");
    let run_s = run.to_str().unwrap();

    // The model directory is not a run directory.
    let out = longformer(&short_run(data, model_s, &["--model", model_s]));
    assert!(failure(&out).contains("is the --model directory"));

    let out = longformer(&short_run(data, run_s, &["--model", model_s]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("by 4 rows"), "{}", stderr(&out));
    assert_eq!(json(&run.join("config.json"))["vocab_size"], 2052);
    // Resumed from step 2, steps 3 and 4 train the grown embedding again.
    std::fs::remove_dir_all(run.join("checkpoints/step-00000004")).unwrap();
    let resumed = longformer(&["train", "--resume", run_s]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert!(run.join("checkpoints/step-00000004/model.bpk").is_file());
    assert_eq!(json(&run.join("summary.json"))["optimizer_steps"], 4);
    let eval = longformer(&["eval", "--run", run_s]);
    assert!(eval.status.success(), "{}", stderr(&eval));

    // A padded vocabulary: spare rows past the tokenizer's ids stay unused; hundreds of rows
    // more mean another tokenizer.
    for (rows, ok) in [(2052 + 64, true), (2052 + 200, false)] {
        let padded = dir.join(format!("padded-{rows}"));
        hf_model(&padded, rows);
        let padded_s = padded.to_str().unwrap();
        let run = dir.join(format!("run-{rows}"));
        let out = longformer(&short_run(
            data,
            run.to_str().unwrap(),
            &["--model", padded_s],
        ));
        if ok {
            assert!(out.status.success(), "{}", stderr(&out));
            assert!(
                stderr(&out).contains("64 rows past the ids"),
                "{}",
                stderr(&out)
            );
        } else {
            assert!(failure(&out).contains("not the model's tokenizer"));
        }
    }

    // Without its tokenizer files, the model directory needs --tokenizer: the bundled
    // sample's would not be the model's.
    std::fs::remove_file(model.join("tokenizer.json")).unwrap();
    let other = dir.join("other");
    let other_s = other.to_str().unwrap();
    let out = longformer(&short_run(data, other_s, &["--model", model_s]));
    let message = failure(&out);
    assert!(message.contains("has no tokenizer") && message.contains("--tokenizer"));
    assert!(!other.exists());

    // A tokenizer padding with another id than the model's pad_token_id.
    let swapped = edited_tokenizer(&dir.join("swapped"), |t| {
        t["model"]["vocab"]["<pad>"] = 266.into();
        t["model"]["vocab"]["Ġin"] = 1.into();
        for token in t["added_tokens"].as_array_mut().unwrap() {
            if token["content"] == "<pad>" {
                token["id"] = 266.into();
            }
        }
    });
    let extra = ["--model", model_s, "--tokenizer", swapped.to_str().unwrap()];
    let out = longformer(&short_run(data, other_s, &extra));
    let message = failure(&out);
    assert!(message.contains("pads with id 266") && message.contains("pad_token_id is 1"));
    std::fs::remove_dir_all(dir).unwrap();
}

/// `eval` (and `--resume`) check the run's tokenizer and max_len against its model instead of
/// panicking in the forward pass.
#[test]
fn eval_refuses_a_tokenizer_or_max_len_its_model_cannot_take() {
    let (dir, run) = trained_run("eval-fit", 6);
    let original = std::fs::read_to_string(run.join("run.json")).unwrap();
    let edit_run = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut record: serde_json::Value = serde_json::from_str(&original).unwrap();
        edit(&mut record);
        std::fs::write(run.join("run.json"), record.to_string()).unwrap();
    };
    let plus_one = edited_tokenizer(&dir.join("plus-one"), |t| {
        let vocab = t["model"]["vocab"].as_object_mut().unwrap();
        let next = vocab.len();
        vocab.insert("zzextra".into(), next.into());
    });
    edit_run(&|r| r["tokenizer"] = plus_one.to_str().unwrap().into());
    for args in [
        vec!["eval", "--run", run.to_str().unwrap()],
        vec!["train", "--resume", run.to_str().unwrap()],
    ] {
        let message = failure(&longformer(&args));
        assert!(
            message.contains("has 2053 ids but the model only 2052"),
            "{message}"
        );
    }
    edit_run(&|r| r["max_len"] = 2000.into());
    let message = failure(&longformer(&["eval", "--run", run.to_str().unwrap()]));
    assert!(
        message.contains("max_len 2000") && message.contains("maximum of 512 tokens"),
        "{message}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// A reader of stderr or stdout that goes away (`2>&1 | head`) does not stop a run.
#[test]
fn training_survives_closed_stderr_and_stdout() {
    let dir = temp_dir("closed");
    let data = small_wikihop(&dir, 6);
    let data = data.to_str().unwrap();
    // A first run fills the preparation cache, whose progress lines are not this crate's.
    let warm = dir.join("warm");
    short_run_ok(data, warm.to_str().unwrap(), &["--quiet"]);

    let run = dir.join("run");
    let mut child = Command::new(env!("CARGO_BIN_EXE_longformer"))
        .current_dir(repo_root())
        .args(short_run(
            data,
            run.to_str().unwrap(),
            &["--log-every", "1"],
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(json(&run.join("summary.json"))["optimizer_steps"], 4);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Settings and data that cannot train are refused, naming the flag or the file, before the
/// run directory is made.
#[test]
fn bad_settings_and_empty_sets_are_refused_before_the_run_directory_is_made() {
    let dir = temp_dir("refused");
    let data = small_wikihop(&dir, 4);
    let data = data.to_str().unwrap();
    let empty = dir.join("empty.json");
    std::fs::write(&empty, "[]").unwrap();
    let empty = empty.to_str().unwrap();
    let run = dir.join("run");
    let run_s = run.to_str().unwrap();
    for (extra, expected) in [
        (&["--dev", empty][..], "empty.json has no usable example"),
        (&["--train", empty], "empty.json has no usable example"),
        (
            &["--max-len", "10"],
            "small.json has no usable example: all 4",
        ),
        (&["--epochs", "0"], "--epochs must be at least 1"),
        (
            &["--keep-checkpoints", "0"],
            "--keep-checkpoints must be at least 1",
        ),
        (
            &["--eval-max-tokens", "0"],
            "--eval-max-tokens must be at least 1",
        ),
        (
            &["--eval-batch-size", "0"],
            "--eval-batch-size must be at least 1",
        ),
        (&["--beta1", "1.5"], "--beta1 must be in [0, 1)"),
        (&["--beta2=-1"], "--beta2 must be in [0, 1)"),
        (&["--epsilon", "0"], "--epsilon must be positive"),
        (
            &["--weight-decay=-5"],
            "--weight-decay must be 0 or positive",
        ),
        (
            &["--max-grad-norm", "NaN"],
            "--max-grad-norm must be positive",
        ),
        (
            &["--dtype", "bf16", "--backend", "ndarray"],
            "cannot compute in BF16",
        ),
        (
            &["--loss-scale", "1024"],
            "apply to --dtype f16 only, not f32",
        ),
        (
            &["--dtype", "bf16", "--loss-scale-growth-interval", "10"],
            "apply to --dtype f16 only, not bf16",
        ),
        (
            &["--dtype", "f16", "--loss-scale", "0"],
            "--loss-scale must be a finite number",
        ),
        (
            &["--dtype", "f16", "--loss-scale-growth-interval", "0"],
            "--loss-scale-growth-interval must be at least 1",
        ),
    ] {
        let message = failure(&longformer(&short_run(data, run_s, extra)));
        assert!(message.contains(expected), "{extra:?}: {message}");
        assert!(!run.exists(), "{extra:?} left {}", run.display());
    }

    // A directory that holds something else is not a run directory.
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("notes.txt"), "mine").unwrap();
    let message = failure(&longformer(&short_run(data, run_s, &[])));
    assert!(message.contains("is not empty"), "{message}");
    assert_eq!(
        std::fs::read_to_string(run.join("notes.txt")).unwrap(),
        "mine"
    );

    // --resume looks for a checkpoint before preparing the data.
    std::fs::remove_file(run.join("notes.txt")).unwrap();
    let record = serde_json::json!({
        "train": "/nonexistent/train.json", "dev": "/nonexistent/dev.json",
        "tokenizer": "/nonexistent/tokenizer", "max_len": 64, "truncate": false,
        "initialized_from": "tiny",
        "settings": serde_json::to_value(longformer_train::TrainSettings::default()).unwrap(),
    });
    std::fs::write(run.join("run.json"), record.to_string()).unwrap();
    let message = failure(&longformer(&["train", "--resume", run_s]));
    assert!(message.contains("no complete checkpoint"), "{message}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// `--resume` refuses a training file or settings changed since the checkpoint.
#[test]
fn resume_refuses_changed_training_data_or_settings() {
    let dir = temp_dir("changed");
    let data = small_wikihop(&dir, 12);
    let run = dir.join("run");
    let run_s = run.to_str().unwrap();
    short_run_ok(data.to_str().unwrap(), run_s, &["--quiet"]);

    let original = std::fs::read_to_string(&data).unwrap();
    let mut records: Vec<serde_json::Value> = serde_json::from_str(&original).unwrap();
    records.pop();
    std::fs::write(&data, serde_json::to_string(&records).unwrap()).unwrap();
    let message = failure(&longformer(&["train", "--resume", run_s]));
    assert!(
        message.contains("training examples are not those") && message.contains("11 examples"),
        "{message}"
    );
    std::fs::write(&data, &original).unwrap();

    let saved = std::fs::read_to_string(run.join("run.json")).unwrap();
    let mut record: serde_json::Value = serde_json::from_str(&saved).unwrap();
    record["settings"]["batch_size"] = 4.into();
    std::fs::write(run.join("run.json"), record.to_string()).unwrap();
    let message = failure(&longformer(&["train", "--resume", run_s]));
    assert!(message.contains("batch_size: 3 → 4"), "{message}");
    std::fs::write(run.join("run.json"), saved).unwrap();

    let out = longformer(&["train", "--resume", run_s, "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // A checkpoint from before the fingerprints: a position beyond the epoch is still refused.
    std::fs::remove_dir_all(run.join("checkpoints/step-00000004")).unwrap();
    let state_path = run.join("checkpoints/step-00000002/state.json");
    let mut state = json(&state_path);
    state.as_object_mut().unwrap().remove("data");
    state.as_object_mut().unwrap().remove("settings");
    std::fs::write(&state_path, state.to_string()).unwrap();
    std::fs::write(&data, serde_json::to_string(&records[..3]).unwrap()).unwrap();
    let message = failure(&longformer(&["train", "--resume", run_s]));
    assert!(
        message.contains("after batch 2 of its epoch") && message.contains("now has 1 batches"),
        "{message}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// run.json holds absolute paths: `--resume` and `eval` work from any directory.
#[test]
fn relative_paths_are_recorded_absolute() {
    let dir = temp_dir("relative");
    small_wikihop(&dir, 6);
    let tokenizer = repo_root().join("data/wikihop-sample/tokenizer");
    let extra = ["--tokenizer", tokenizer.to_str().unwrap(), "--quiet"];
    let out = longformer_in(&dir, &short_run("small.json", "run", &extra));
    assert!(out.status.success(), "{}", stderr(&out));
    let record = json(&dir.join("run/run.json"));
    assert_eq!(record["train"], dir.join("small.json").to_str().unwrap());
    let run = dir.join("run");
    let eval = longformer(&["eval", "--run", run.to_str().unwrap()]);
    assert!(eval.status.success(), "{}", stderr(&eval));
    std::fs::remove_dir_all(dir).unwrap();
}

/// `export` writes a run's encoder as an HF directory that loads back as the same encoder, its
/// tokenizer with the WikiHop markers, and the answer-scoring row; it refuses a non-empty
/// directory without `--force`.
#[test]
fn export_writes_the_run_as_an_hf_directory() {
    use burn::tensor::{Device, Int, Tensor, TensorData};
    use longformer_model::{LongformerConfig, LongformerInput, load_pretrained};

    let (dir, run) = trained_run("export", 4);
    let to = dir.join("hf");
    let export = |extra: &[&str]| {
        let mut args = vec![
            "export",
            "--run",
            run.to_str().unwrap(),
            "--weights",
            "final",
            "--to",
            to.to_str().unwrap(),
        ];
        args.extend(extra);
        longformer(&args)
    };
    let out = export(&[]);
    assert!(out.status.success(), "{}", stderr(&out));

    // The encoder: as the run's, bit for bit.
    let device = Device::flex();
    let config = LongformerConfig::from_json_file(run.join("config.json")).unwrap();
    let trained = longformer_train::checkpoint::load_model(
        longformer_train::WikiHopModel::init(&config, &device),
        &run.join("final/model.bpk"),
    )
    .unwrap();
    let exported = load_pretrained(&to, &device).unwrap();
    let ids =
        Tensor::<2, Int>::from_data(TensorData::new(vec![0i64, 7, 9, 11, 2], [1, 5]), &device);
    let hidden = |m: &longformer_model::LongformerModel| {
        m.try_forward(LongformerInput::new(ids.clone()))
            .unwrap()
            .last_hidden_state
            .into_data()
    };
    assert_eq!(hidden(&trained.longformer), hidden(&exported));

    // The tokenizer knows the markers already (none added again), and the head is [1, hidden].
    let tokenizer = longformer_data::WikiHopTokenizer::from_dir(&to).unwrap();
    assert_eq!(tokenizer.added_tokens(), 0);
    assert_eq!(tokenizer.vocab_size(), config.vocab_size);
    let head = std::fs::read(to.join("wikihop_head.safetensors")).unwrap();
    let head = safetensors::SafeTensors::deserialize(&head).unwrap();
    assert_eq!(
        head.tensor("answer_score.weight").unwrap().shape(),
        [1, config.hidden_size]
    );

    let again = export(&[]);
    assert!(
        !again.status.success() && stderr(&again).contains("--force"),
        "{}",
        stderr(&again)
    );
    assert!(export(&["--force"]).status.success());
    std::fs::remove_dir_all(dir).unwrap();
}

/// SIGTERM (as Ctrl-C's SIGINT) stops training after the current step, with a checkpoint and
/// the command that continues the run.
#[test]
fn a_signal_stops_training_with_a_checkpoint() {
    signal_stops_training_with_a_checkpoint("signal", 1);
}

/// A SIGTERM to the process group reaches `longformer` directly and again through `cargo
/// xtask`, which passes it on: the two are one request, not "signal again to quit now".
#[test]
fn a_sigterm_delivered_twice_at_once_is_one_request() {
    signal_stops_training_with_a_checkpoint("signal-twice", 2);
}

/// Sends SIGTERM `times` times in a row once training has started; training must stop after
/// its step with a checkpoint.
fn signal_stops_training_with_a_checkpoint(tag: &str, times: usize) {
    let dir = temp_dir(tag);
    let data = small_wikihop(&dir, 6);
    let run = dir.join("run");
    // Steps enough to be still training when the signal arrives.
    let extra = [
        "--max-steps",
        "100000",
        "--epochs",
        "100000",
        "--log-every",
        "1",
    ];
    let args = short_run(data.to_str().unwrap(), run.to_str().unwrap(), &extra);
    let mut child = Command::new(env!("CARGO_BIN_EXE_longformer"))
        .current_dir(repo_root())
        .args(&args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        log.push_str(&line);
        log.push('\n');
        if line.starts_with("step") {
            break;
        }
    }
    for _ in 0..times {
        // SAFETY: signals our own child, which has not been waited for.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    }
    for line in lines {
        log.push_str(&line.unwrap());
        log.push('\n');
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{log}");
    assert!(
        log.contains(&format!("--resume {}", run.display())),
        "{log}"
    );
    let newest = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| !name.ends_with(".partial"))
        .max()
        .expect("a checkpoint");
    assert!(log.contains(&newest), "{newest} not in {log}");
    assert!(!run.join("summary.json").exists());
    std::fs::remove_dir_all(dir).unwrap();
}

/// An error whose text repeats its cause's is printed once.
#[test]
fn config_errors_are_printed_once() {
    let dir = temp_dir("config");
    let data = small_wikihop(&dir, 4);
    let mut config = json(&repo_root().join("assets/tiny-longformer/config.json"));
    config["attention_window"] = serde_json::json!([7, 8]);
    let path = dir.join("odd.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let run = dir.join("run");
    let extra = ["--config", path.to_str().unwrap()];
    let message = failure(&longformer(&short_run(
        data.to_str().unwrap(),
        run.to_str().unwrap(),
        &extra,
    )));
    assert_eq!(message.matches("attention_window").count(), 1, "{message}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// The `accuracy A over N examples ..., loss L` figures of `eval`'s output line.
fn eval_figures(out: &Output) -> (f64, usize, f64) {
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let after = |key: &str| -> &str {
        let start = line
            .find(key)
            .unwrap_or_else(|| panic!("no {key:?} in {line}"))
            + key.len();
        line[start..].split([' ', ',', ';']).next().unwrap()
    };
    (
        after("accuracy ").parse().unwrap(),
        after(" over ").parse().unwrap(),
        after("loss ").parse().unwrap(),
    )
}

/// Records without an answer (absent or null) are predicted, with the scores they get when the
/// answer is there (the answer does not reach the model's input), and left out of the accuracy
/// and loss, which for answered records are the training run's dev figures; a file without any
/// answer is predicted only.
#[test]
fn eval_predicts_records_without_an_answer() {
    let (dir, run) = trained_run("unlabeled", 6);
    let run_s = run.to_str().unwrap();
    let labeled = longformer(&["eval", "--run", run_s, "--weights", "final"]);
    assert!(labeled.status.success(), "{}", stderr(&labeled));
    let summary = json(&run.join("summary.json"));
    let (accuracy, n, loss) = eval_figures(&labeled);
    assert_eq!(n, 6);
    assert!((accuracy - summary["dev_accuracy"].as_f64().unwrap()).abs() < 1e-4);
    assert!(
        (loss - summary["dev_loss"].as_f64().unwrap()).abs() < 1e-3,
        "eval's loss {loss}, the run's {}",
        summary["dev_loss"]
    );
    let all = json(&run.join("predictions.json"));

    let mut records: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("small.json")).unwrap()).unwrap();
    for (i, record) in records.iter_mut().enumerate() {
        match i {
            1 | 3 => drop(record.as_object_mut().unwrap().remove("answer")),
            4 => record["answer"] = serde_json::Value::Null,
            _ => {}
        }
    }
    let partial = dir.join("partial.json");
    std::fs::write(&partial, serde_json::to_string(&records).unwrap()).unwrap();
    let out = dir.join("partial-predictions.json");
    let eval = longformer(&[
        "eval",
        "--run",
        run_s,
        "--weights",
        "final",
        "--data",
        partial.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(eval.status.success(), "{}", stderr(&eval));
    let stdout = String::from_utf8_lossy(&eval.stdout).into_owned();
    assert!(
        stdout.contains("3 more without answers, predicted"),
        "{stdout}"
    );
    let (_, n, _) = eval_figures(&eval);
    assert_eq!(n, 3);
    let partial_predictions = json(&out);
    for (i, record) in records.iter().enumerate() {
        let id = record["id"].as_str().unwrap();
        let (got, want) = (&partial_predictions[id], &all[id]);
        assert_eq!(got["scores"], want["scores"], "record {id}");
        assert_eq!(got["prediction"], want["prediction"], "record {id}");
        if [1, 3, 4].contains(&i) {
            assert!(got.get("correct").is_none(), "record {id}: {got}");
        } else {
            assert_eq!(got["correct"], want["correct"], "record {id}");
        }
    }

    for record in &mut records {
        record.as_object_mut().unwrap().remove("answer");
    }
    std::fs::write(&partial, serde_json::to_string(&records).unwrap()).unwrap();
    let eval = longformer(&["eval", "--run", run_s, "--data", partial.to_str().unwrap()]);
    assert!(eval.status.success(), "{}", stderr(&eval));
    let stdout = String::from_utf8_lossy(&eval.stdout).into_owned();
    assert!(
        stdout.contains("6 examples without answers, predicted"),
        "{stdout}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
