//! The `longformer encode` command end to end on the bundled tiny model.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    // Run-time value first: a binary reused from another checkout's build still uses this one.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf())
        .join("../..")
}

fn encode(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_longformer"))
        .current_dir(repo_root())
        .arg("encode")
        .args(args)
        .output()
        .expect("run longformer")
}

/// Runs `encode` with `args` plus `--output`, and returns the shape of the F32 `last_hidden_state`.
fn encode_ok(tag: &str, args: &[&str]) -> Vec<usize> {
    let out_file =
        std::env::temp_dir().join(format!("lf-{tag}-{}.safetensors", std::process::id()));
    let mut all = args.to_vec();
    all.extend(["--output", out_file.to_str().unwrap()]);
    let out = encode(&all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&out_file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let hidden = st.tensor("last_hidden_state").unwrap();
    assert_eq!(hidden.dtype(), safetensors::Dtype::F32);
    hidden.shape().to_vec()
}

#[test]
fn encodes_the_bundled_example() {
    let shape = encode_ok(
        "example",
        &["--input", "assets/tiny-longformer/example.json"],
    );
    assert_eq!(shape, vec![2, 40, 32]);
}

#[test]
fn mask_rows_of_the_wrong_length_are_reported() {
    let input = std::env::temp_dir().join(format!("lf-bad-{}.json", std::process::id()));
    std::fs::write(
        &input,
        r#"{"input_ids": [[0, 5, 2]], "attention_mask": [[1, 1]]}"#,
    )
    .unwrap();
    let out = encode(&["--input", input.to_str().unwrap(), "--output", "/dev/null"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("attention_mask row 0 has 2 entries"), "{err}");
}

#[test]
fn malformed_json_names_the_file() {
    let input = std::env::temp_dir().join(format!("lf-malformed-{}.json", std::process::id()));
    std::fs::write(&input, "{\"input_ids\": [[0, 5").unwrap();
    let out = encode(&["--input", input.to_str().unwrap(), "--output", "/dev/null"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a valid input file") && err.contains("lf-malformed"),
        "{err}"
    );
}

#[test]
fn too_long_input_is_a_clear_error() {
    let input = std::env::temp_dir().join(format!("lf-long-{}.json", std::process::id()));
    let ids: Vec<String> = (0..200).map(|_| "5".to_string()).collect();
    std::fs::write(&input, format!("{{\"input_ids\": [[{}]]}}", ids.join(","))).unwrap();
    let out = encode(&["--input", input.to_str().unwrap(), "--output", "/dev/null"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exceeds the model's maximum of 128"), "{err}");
}

#[test]
fn encodes_text_with_the_model_directory_tokenizer() {
    let text = [
        "--model",
        "assets/tiny-longformer",
        "--text",
        "ada was born in paris.",
    ];
    let shape = encode_ok("text", &text);
    // <s> + at least one token per word + </s>
    assert_eq!((shape[0], shape[2]), (1, 32));
    assert!(shape[1] >= 7, "{shape:?}");
}
