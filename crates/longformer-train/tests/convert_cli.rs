//! `longformer convert` end to end on the RoBERTa fixture (`tests/fixtures/roberta_source`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo_root() -> PathBuf {
    // Run-time value first: a binary reused from another checkout's build still uses this one.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf())
        .join("../..")
}

fn convert(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_longformer"))
        .current_dir(repo_root())
        .arg("convert")
        .args(args)
        .output()
        .expect("run longformer")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn out_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lf-convert-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn converts_the_fixture_and_reports_progress() {
    let out = out_dir("ok");
    let run = convert(&[
        "--from",
        "tests/fixtures/roberta_source",
        "--to",
        out.to_str().unwrap(),
        "--max-pos",
        "40",
        "--window",
        "8",
    ]);
    let log = stderr(&run);
    assert!(run.status.success(), "{log}");
    assert!(
        log.contains("reading tests/fixtures/roberta_source/model.safetensors")
            && log.contains("18 → 42 rows")
            && log.contains("dropped buffer roberta.embeddings.position_ids")
            && log.contains("model_max_length 40"),
        "{log}"
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["max_position_embeddings"], 42);
    assert_eq!(config["attention_window"], serde_json::json!([8, 8]));
    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(
        st.tensor("longformer.embeddings.position_embeddings.weight")
            .unwrap()
            .shape(),
        [42, 32]
    );
    assert!(
        st.tensor("longformer.encoder.layer.1.attention.self.value_global.bias")
            .is_ok()
    );

    // A second run into the same directory is refused without --force.
    let again = convert(&[
        "--from",
        "tests/fixtures/roberta_source",
        "--to",
        out.to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("pass --force"),
        "{}",
        stderr(&again)
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn odd_window_is_an_error_not_a_panic() {
    let out = out_dir("odd");
    let run = convert(&[
        "--from",
        "tests/fixtures/roberta_source",
        "--to",
        out.to_str().unwrap(),
        "--window",
        "511",
    ]);
    let log = stderr(&run);
    assert_eq!(run.status.code(), Some(1), "{log}");
    assert!(
        log.contains("--window 511 must be even") && !log.contains("panicked"),
        "{log}"
    );
    assert!(!out.exists());
}
