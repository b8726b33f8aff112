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
    std::fs::remove_file(&out_file).unwrap();
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
fn encodes_in_half_precision_on_flex_and_refuses_it_on_ndarray() {
    for dtype in ["bf16", "f16"] {
        let shape = encode_ok(
            dtype,
            &[
                "--input",
                "assets/tiny-longformer/example.json",
                "--dtype",
                dtype,
            ],
        );
        assert_eq!(shape, vec![2, 40, 32]);
    }
    let out = encode(&[
        "--input",
        "assets/tiny-longformer/example.json",
        "--dtype",
        "bf16",
        "--backend",
        "ndarray",
        "--output",
        "/dev/null",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot compute in BF16"), "{err}");
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
    std::fs::remove_file(&input).unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("attention_mask row 0 has 2 entries"), "{err}");
}

/// Values the model cannot take faithfully are errors naming the file, not panics: a mask value
/// HF would read differently, an id past the device's integers.
#[test]
fn mask_values_and_ids_out_of_range_are_reported() {
    for (tag, json, expected) in [
        (
            "mask2",
            r#"{"input_ids": [[0, 5, 2]], "global_attention_mask": [[2, 0, 0]]}"#,
            "global_attention_mask",
        ),
        (
            "bigid",
            r#"{"input_ids": [[0, 2147483648, 2]]}"#,
            "2147483648",
        ),
    ] {
        let input = std::env::temp_dir().join(format!("lf-{tag}-{}.json", std::process::id()));
        std::fs::write(&input, json).unwrap();
        let out = encode(&["--input", input.to_str().unwrap(), "--output", "/dev/null"]);
        std::fs::remove_file(&input).unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{tag}: {err}");
        assert!(
            err.contains(expected) && err.contains(&format!("lf-{tag}")),
            "{tag}: {err}"
        );
    }
}

#[test]
fn num_choices_without_the_multiple_choice_head_is_refused() {
    let out = encode(&[
        "--input",
        "assets/tiny-longformer/example.json",
        "--num-choices",
        "2",
        "--output",
        "/dev/null",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--num-choices only applies"), "{err}");
}

#[test]
fn top_k_of_zero_is_refused() {
    let out = encode(&["--head", "mlm", "--text", "a <mask>", "--top-k", "0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--top-k"), "{err}");
}

#[test]
fn malformed_json_names_the_file() {
    let input = std::env::temp_dir().join(format!("lf-malformed-{}.json", std::process::id()));
    std::fs::write(&input, "{\"input_ids\": [[0, 5").unwrap();
    let out = encode(&["--input", input.to_str().unwrap(), "--output", "/dev/null"]);
    std::fs::remove_file(&input).unwrap();
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
    std::fs::remove_file(&input).unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("exceeds the model's maximum of 128") && err.contains("lf-long-"),
        "the error names the limit and the input file: {err}"
    );
}

/// `--truncate` cuts a row over the limit (128 for the tiny model) instead of refusing it,
/// and says so.
#[test]
fn truncate_cuts_rows_the_model_cannot_take() {
    let input = std::env::temp_dir().join(format!("lf-trunc-{}.json", std::process::id()));
    let ids: Vec<String> = (0..200).map(|_| "5".to_string()).collect();
    std::fs::write(&input, format!("{{\"input_ids\": [[{}]]}}", ids.join(","))).unwrap();
    let shape = encode_ok("trunc", &["--input", input.to_str().unwrap(), "--truncate"]);
    assert_eq!(shape, vec![1, 128, 32]);
    let long_text = "word ".repeat(300);
    let shape = encode_ok("trunc-text", &["--text", &long_text, "--truncate"]);
    assert_eq!(shape, vec![1, 128, 32]);
    std::fs::remove_file(input).unwrap();
}

/// `token_type_ids`, as a HF tokenizer writes them next to the ids, are taken: zeros give what
/// no token types give, a type outside `type_vocab_size` (1 for the tiny model) and a row of the
/// wrong length are errors naming the file.
#[test]
fn token_type_ids_in_the_input_file_are_used_and_checked() {
    let file = |tag: &str, json: &str| {
        let path = std::env::temp_dir().join(format!("lf-types-{tag}-{}.json", std::process::id()));
        std::fs::write(&path, json).unwrap();
        path
    };
    let read = |path: &Path| std::fs::read(path).unwrap();
    let plain = file("plain", r#"{"input_ids": [[0, 5, 6, 2], [0, 7, 2]]}"#);
    let zeros = file(
        "zeros",
        r#"{"input_ids": [[0, 5, 6, 2], [0, 7, 2]], "token_type_ids": [[0, 0, 0, 0], [0, 0, 0]]}"#,
    );
    let outputs: Vec<PathBuf> = ["plain", "zeros"]
        .iter()
        .map(|tag| std::env::temp_dir().join(format!("lf-types-{tag}-{}.st", std::process::id())))
        .collect();
    for (input, output) in [&plain, &zeros].iter().zip(&outputs) {
        let out = encode(&[
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(read(&outputs[0]), read(&outputs[1]));
    for path in outputs.iter().chain([&plain, &zeros]) {
        std::fs::remove_file(path).unwrap();
    }

    for (tag, json, expected) in [
        (
            "one",
            r#"{"input_ids": [[0, 5, 2]], "token_type_ids": [[0, 1, 0]]}"#,
            "type_vocab_size",
        ),
        (
            "short",
            r#"{"input_ids": [[0, 5, 2]], "token_type_ids": [[0, 0]]}"#,
            "token_type_ids row 0 has 2 entries",
        ),
        (
            "huge",
            r#"{"input_ids": [[0, 5, 2]], "token_type_ids": [[0, 2147483648, 0]]}"#,
            "token_type_ids row 0 column 1 is 2147483648",
        ),
    ] {
        let input = file(tag, json);
        let out = encode(&["--input", input.to_str().unwrap(), "--output", "/dev/null"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{tag}: {err}");
        assert!(
            err.contains(expected) && err.contains(&format!("lf-types-{tag}")),
            "{tag}: {err}"
        );
        std::fs::remove_file(input).unwrap();
    }
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

/// Repeated `--text`s are one batch, a row per text, the shorter padded: each row holds what
/// the text encodes alone, at its own positions.
#[test]
fn repeated_texts_are_a_batch_of_what_each_encodes_alone() {
    let dir = std::env::temp_dir().join(format!("lf-texts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let texts = [
        "ada was born in paris.",
        "she wrote the first program for the engine.",
    ];
    let run = |tag: &str, texts: &[&str]| {
        let out_file = dir.join(format!("{tag}.safetensors"));
        let mut args = vec!["--output", out_file.to_str().unwrap()];
        for t in texts {
            args.extend(["--text", t]);
        }
        let out = encode(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        read_tensors(&out_file).remove("last_hidden_state").unwrap()
    };
    let (shape, batch) = run("both", &texts);
    for (row, text) in texts.iter().enumerate() {
        let (alone_shape, alone) = run(&format!("row{row}"), &[text]);
        assert_eq!((alone_shape[0], alone_shape[2]), (1, 32));
        let len = alone_shape[1];
        let width = shape[1] * 32;
        let got = &batch[row * width..row * width + len * 32];
        let most = max_diff(got, &alone);
        assert!(
            most < 1e-5,
            "row {row} differs from its text alone by {most}"
        );
    }
    assert_eq!(shape[0], 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--text-file` encodes a file's content exactly as `--text` encodes the same string (the same
/// output tensors, bit for bit), from a path or from standard input (`-`), and repeated, a batch
/// as repeated `--text`s; a missing file and one that is not UTF-8 are errors naming it.
#[test]
fn text_file_encodes_what_text_encodes() {
    let dir = std::env::temp_dir().join(format!("lf-text-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = "ada was born in paris.\nshe wrote the first program.\n";
    let doc = dir.join("doc.txt");
    std::fs::write(&doc, text).unwrap();
    let run = |tag: &str, source: &[&str], stdin: Option<&str>| {
        let out_file = dir.join(format!("{tag}.safetensors"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_longformer"))
            .current_dir(repo_root())
            .arg("encode")
            .args(source)
            .args(["--output", out_file.to_str().unwrap()])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        // The tensors: the header's metadata names the files the rows came from.
        let tensors = out_file.exists().then(|| {
            let mut all: Vec<_> = read_tensors(&out_file).into_iter().collect();
            all.sort_by(|a, b| a.0.cmp(&b.0));
            all
        });
        (out.status.success(), err, tensors)
    };
    let (ok, err, from_text) = run("text", &["--text", text], None);
    assert!(ok, "{err}");
    let (ok, err, from_file) = run("file", &["--text-file", doc.to_str().unwrap()], None);
    assert!(ok, "{err}");
    assert_eq!(from_file, from_text);
    let (ok, err, from_stdin) = run("stdin", &["--text-file", "-"], Some(text));
    assert!(ok, "{err}");
    assert_eq!(from_stdin, from_text);
    let other = dir.join("other.txt");
    std::fs::write(&other, "a second, longer document about engines.").unwrap();
    let (ok, err, two_texts) = run(
        "two-texts",
        &[
            "--text",
            text,
            "--text",
            "a second, longer document about engines.",
        ],
        None,
    );
    assert!(ok, "{err}");
    let (ok, err, two_files) = run(
        "two-files",
        &[
            "--text-file",
            doc.to_str().unwrap(),
            "--text-file",
            other.to_str().unwrap(),
        ],
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(two_files, two_texts);

    let (ok, err, _) = run(
        "stdin-twice",
        &["--text-file", "-", "--text-file", "-"],
        Some(text),
    );
    assert!(!ok && err.contains("can be given once"), "{err}");

    let missing = dir.join("missing.txt");
    let (ok, err, _) = run("missing", &["--text-file", missing.to_str().unwrap()], None);
    assert!(!ok && err.contains("missing.txt"), "{err}");
    let binary = dir.join("binary.txt");
    std::fs::write(&binary, [b'a', 0xff, b'b']).unwrap();
    let (ok, err, _) = run("binary", &["--text-file", binary.to_str().unwrap()], None);
    assert!(
        !ok && err.contains("binary.txt is not UTF-8 text (invalid byte at offset 1)"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `tests/fixtures/head_mlm_text`: an HF `LongformerForMaskedLM` with the sample tokenizer, the
/// text, and HF's logits at its two `<mask>` positions.
fn mlm_fixture() -> PathBuf {
    repo_root().join("tests/fixtures/head_mlm_text")
}

/// The tensors of a safetensors file as (shape, f64 values); F32 and I64 only.
/// Tensors by name: (shape, values).
type Tensors = std::collections::HashMap<String, (Vec<usize>, Vec<f64>)>;

fn read_tensors(path: &Path) -> Tensors {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = match view.dtype() {
                safetensors::Dtype::F32 => view
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                    .collect(),
                safetensors::Dtype::I64 => view
                    .data()
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
                    .collect(),
                other => panic!("{name}: unexpected dtype {other:?}"),
            };
            (name, (view.shape().to_vec(), values))
        })
        .collect()
}

#[test]
fn mlm_head_fills_every_mask_as_hf_does() {
    let dir = mlm_fixture();
    let text = std::fs::read_to_string(dir.join("text.txt")).unwrap();
    let expected = read_tensors(&dir.join("expected.safetensors"));
    let out_file = std::env::temp_dir().join(format!("lf-mlm-{}.safetensors", std::process::id()));
    let out = encode(&[
        "--model",
        dir.to_str().unwrap(),
        "--head",
        "mlm",
        "--text",
        &text,
        "--output",
        out_file.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Where HF's tokenizer put the masks, and HF's logits there.
    let (ids_shape, ids) = &expected["input_ids"];
    let mask_id = expected["mask_token_id"].1[0];
    let positions: Vec<usize> = (0..ids.len()).filter(|&i| ids[i] == mask_id).collect();
    let (logits_shape, hf_logits) = &expected["mask_logits"];
    let vocab = logits_shape[1];
    assert_eq!(positions.len(), 2);

    // The printed fills: one line per mask, at HF's positions, HF's five best ids in order (the
    // fixture's top-6 logits are at least 0.009 apart, far above the 1e-4 parity tolerance).
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("<mask>")).collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for (n, (line, &position)) in lines.iter().zip(&positions).enumerate() {
        assert!(
            line.contains(&format!("(row 0, position {position})")),
            "{line}"
        );
        let printed: Vec<usize> = line
            .split("(id ")
            .skip(1)
            .map(|s| s.split(')').next().unwrap().parse().unwrap())
            .collect();
        let row = &hf_logits[n * vocab..(n + 1) * vocab];
        let mut order: Vec<usize> = (0..vocab).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        assert_eq!(printed, order[..5].to_vec(), "{line}");
    }

    // The written logits: [1, seq, vocab], HF's values at the masks.
    let written = read_tensors(&out_file);
    std::fs::remove_file(&out_file).unwrap();
    let (shape, logits) = &written["logits"];
    assert_eq!(shape, &vec![1, ids_shape[1], vocab]);
    for (n, &position) in positions.iter().enumerate() {
        let ours = &logits[position * vocab..(position + 1) * vocab];
        let hf = &hf_logits[n * vocab..(n + 1) * vocab];
        let diff = max_diff(ours, hf);
        assert!(diff <= 1e-4, "mask {n}: logits differ from HF by {diff}");
    }
}

#[test]
fn mlm_head_without_a_mask_in_the_text_is_a_clear_error() {
    let dir = mlm_fixture();
    let out = encode(&[
        "--model",
        dir.to_str().unwrap(),
        "--head",
        "mlm",
        "--text",
        "ada was born in paris.",
        "--output",
        "/dev/null",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the text has no <mask> token"), "{err}");
}

#[test]
fn a_head_on_a_base_checkpoint_names_the_missing_head_weights() {
    let out = encode(&[
        "--model",
        "assets/tiny-longformer",
        "--head",
        "sequence-classification",
        "--input",
        "assets/tiny-longformer/example.json",
        "--output",
        "/dev/null",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("LongformerForSequenceClassification")
            && err.contains("classifier.out_proj.weight"),
        "{err}"
    );
}

/// A result the device cannot produce is an error naming the output, not a panic: here the
/// global rows' `[batch, heads, global, seq]` scores of a row whose 6,000 tokens are all global
/// (144 MB) exceed the software GPU's largest buffer (128 MiB on OpenGL), and the failure
/// surfaces only when `last_hidden_state` is read back. (Where wgpu finds a GPU with larger
/// buffers, the encoding succeeds, and the test has nothing to check.)
#[test]
fn a_device_failure_is_an_error_not_a_panic() {
    use burn::tensor::Device;
    use longformer_model::{AttentionWindow, LongformerConfig, save_pretrained};

    let n = 6000;
    let dir = std::env::temp_dir().join(format!("lf-device-failure-{}", std::process::id()));
    let config = LongformerConfig::new()
        .with_vocab_size(8)
        .with_hidden_size(2)
        .with_num_attention_heads(1)
        .with_intermediate_size(2)
        .with_num_hidden_layers(1)
        .with_max_position_embeddings(n + 2)
        .with_attention_window(AttentionWindow::Uniform(4));
    let model = config.init(&Device::flex());
    save_pretrained(&model, &config, &dir).unwrap();
    let input = dir.join("ids.json");
    let row = |v: &str| vec![v; n].join(",");
    std::fs::write(
        &input,
        format!(
            "{{\"input_ids\": [[{}]], \"global_attention_mask\": [[{}]]}}",
            row("5"),
            row("1")
        ),
    )
    .unwrap();
    let out = encode(&[
        "--backend",
        "wgpu",
        "--model",
        dir.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        dir.join("out.safetensors").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    std::fs::remove_dir_all(&dir).unwrap();
    if out.status.success() {
        return; // a GPU with larger buffers than the software GPU's computed it
    }
    assert!(
        err.contains("the device failed computing `last_hidden_state` [1, 6000, 2]")
            && !err.contains("panicked"),
        "a clear error, not a panic: {err}"
    );
}

/// Runs `encode` with `flags` on the inputs of the fixture `case` (its `expected.safetensors`
/// ids and masks, written as an `--input` file; `[examples, choices, seq]` ones as consecutive
/// rows), and returns the fixture's tensors, the
/// output's, and the input file (in a fresh `dir` the caller removes).
fn encode_fixture(case: &str, dir: &Path, flags: &[&str]) -> (Tensors, Tensors, PathBuf) {
    let fixture = repo_root().join("tests/fixtures").join(case);
    let expected = read_tensors(&fixture.join("expected.safetensors"));
    std::fs::create_dir_all(dir).unwrap();
    let rows = |name: &str| -> Vec<Vec<i64>> {
        let (shape, values) = &expected[name];
        values
            .chunks(shape[shape.len() - 1])
            .map(|row| row.iter().map(|&v| v as i64).collect())
            .collect()
    };
    let input = dir.join("ids.json");
    std::fs::write(
        &input,
        format!(
            "{{\"input_ids\": {:?}, \"attention_mask\": {:?}, \"global_attention_mask\": {:?}}}",
            rows("input_ids"),
            rows("attention_mask"),
            rows("global_attention_mask")
        ),
    )
    .unwrap();
    let output = dir.join("out.safetensors");
    let mut args = vec![
        "--model",
        fixture.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ];
    args.extend_from_slice(flags);
    let out = encode(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (expected, read_tensors(&output), input)
}

/// The largest difference between two tensors' values.
fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

/// Asserts that `got` has `want`'s shape and its values within `tolerance`; `what` names it.
fn assert_close(
    got: &(Vec<usize>, Vec<f64>),
    want: &(Vec<usize>, Vec<f64>),
    tolerance: f64,
    what: &str,
) {
    assert_eq!(got.0, want.0, "{what}: shape");
    let most = max_diff(&got.1, &want.1);
    assert!(most < tolerance, "{what} differs from HF's by {most}");
}

/// `--hidden-states` writes HF's `hidden_states` next to `last_hidden_state`, and a checkpoint
/// with a pooler gets `pooler_output`: all as HF computed them for
/// `tests/fixtures/hidden_states` (ragged rows, global tokens), within 1e-4. Not with `--head`.
#[test]
fn hidden_states_and_the_pooler_output_are_hf_s() {
    let dir = std::env::temp_dir().join(format!("lf-hidden-states-{}", std::process::id()));
    let (expected, got, input) = encode_fixture("hidden_states", &dir, &["--hidden-states"]);
    let layers = 3;
    let mut names: Vec<String> = (0..=layers).map(|i| format!("hidden_state_{i}")).collect();
    names.extend(["last_hidden_state".into(), "pooler_output".into()]);
    assert_eq!(got.len(), names.len(), "{:?}", got.keys());
    for name in &names {
        assert_close(&got[name], &expected[name], 1e-4, name);
    }
    let with_head = encode(&[
        "--input",
        input.to_str().unwrap(),
        "--head",
        "mlm",
        "--hidden-states",
    ]);
    assert!(!with_head.status.success());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--attentions` writes each layer's local attentions as HF computed them for
/// `tests/fixtures/ragged_padding` (within 1e-4), and its global attentions,
/// `[batch, heads, seq, global]`.
#[test]
fn attentions_are_hf_s() {
    let dir = std::env::temp_dir().join(format!("lf-attentions-{}", std::process::id()));
    let (expected, got, _) = encode_fixture("ragged_padding", &dir, &["--attentions"]);
    std::fs::remove_dir_all(&dir).unwrap();
    let (batch, seq) = (expected["input_ids"].0[0], expected["input_ids"].0[1]);
    for layer in 0..2 {
        let name = format!("attentions_{layer}");
        assert_close(
            &got[&name],
            &expected[&format!("local_{layer}")],
            1e-4,
            &name,
        );
        let (global_shape, _) = &got[&format!("global_attentions_{layer}")];
        assert_eq!(global_shape[..3], [batch, 4, seq], "layer {layer}");
    }
}

/// `--batch-size` (and `--max-tokens`, a budget of padded tokens) encodes a few rows (or, for
/// multiple choice, examples) at a time, and every output is still HF's for the whole batch
/// (within 1e-4): the base model with its hidden states and the heads, batch by batch;
/// `--attentions` wants all rows in one batch.
#[test]
fn batches_of_rows_give_what_one_batch_gives() {
    let cases: [(&str, &[&str], &[&str]); 7] = [
        (
            "hidden_states",
            &["--hidden-states", "--max-tokens", "1"],
            &["last_hidden_state", "hidden_state_3"],
        ),
        (
            "head_sequence_classification",
            &["--head", "sequence-classification", "--max-tokens", "1"],
            &["logits"],
        ),
        (
            "head_multiple_choice",
            &[
                "--head",
                "multiple-choice",
                "--num-choices",
                "3",
                "--max-tokens",
                "1",
            ],
            &["logits"],
        ),
        (
            "hidden_states",
            &["--hidden-states", "--batch-size", "2"],
            &[
                "last_hidden_state",
                "pooler_output",
                "hidden_state_0",
                "hidden_state_3",
            ],
        ),
        (
            "head_sequence_classification",
            &["--head", "sequence-classification", "--batch-size", "1"],
            &["logits"],
        ),
        (
            "head_question_answering",
            &["--head", "question-answering", "--batch-size", "2"],
            &["start_logits", "end_logits"],
        ),
        (
            "head_multiple_choice",
            &[
                "--head",
                "multiple-choice",
                "--num-choices",
                "3",
                "--batch-size",
                "1",
            ],
            &["logits"],
        ),
    ];
    for (case, flags, names) in cases {
        let dir = std::env::temp_dir().join(format!("lf-batches-{case}-{}", std::process::id()));
        let (expected, got, _) = encode_fixture(case, &dir, flags);
        std::fs::remove_dir_all(&dir).unwrap();
        for name in names {
            assert_close(
                &got[*name],
                &expected[*name],
                1e-4,
                &format!("{case}: {name}"),
            );
        }
    }
    let input = repo_root().join("assets/tiny-longformer/example.json");
    let out = encode(&[
        "--input",
        input.to_str().unwrap(),
        "--attentions",
        "--batch-size",
        "1",
        "--output",
        "/dev/null",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("2 rows need --batch-size 2"),
        "{err}"
    );
    for flags in [
        &["--max-tokens", "0"][..],
        &["--attentions", "--max-tokens", "9"],
    ] {
        let out = encode(&[&["--input", input.to_str().unwrap()], flags].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("--max-tokens"),
            "{err}"
        );
    }
}

/// An input of several batches reports its progress on stderr (a line at each tenth of the way,
/// with the time left, when stderr is not a terminal, as here); one batch reports none.
#[test]
fn progress_is_reported_batch_by_batch() {
    let output = std::env::temp_dir().join(format!("lf-progress-{}.st", std::process::id()));
    let stderr_of = |flags: &[&str]| {
        let input = ["--input", "assets/tiny-longformer/example.json"];
        let out = encode(&[&input, &["--output", output.to_str().unwrap()], flags].concat());
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        err
    };
    let err = stderr_of(&["--batch-size", "1"]);
    assert!(
        err.contains("encoded 1/2 rows (")
            && err.contains(" s left)")
            && err.contains("encoded 2/2 rows ("),
        "{err}"
    );
    let err = stderr_of(&["--pool", "mean", "--batch-size", "1"]);
    assert!(err.contains("encoded 2/2 rows ("), "{err}");
    let err = stderr_of(&[]);
    assert!(!err.contains("encoded "), "{err}");
    std::fs::remove_file(&output).unwrap();
}

/// `--pool mean` writes the mean of HF's last hidden states over each row's real tokens, and
/// `--pool first` its hidden state at position 0, `[batch, hidden]` each, batch by batch, in
/// place of `last_hidden_state`; in f32 (within 1e-4), and from a bf16 model (F32 values within
/// bf16's error of HF's f32 ones).
#[test]
fn pooled_rows_are_the_mean_or_the_first_of_hf_s_hidden_states() {
    for (pool, dtype, tolerance) in [
        ("mean", "f32", 1e-4),
        ("first", "f32", 1e-4),
        ("mean", "bf16", 5e-2),
    ] {
        let dir =
            std::env::temp_dir().join(format!("lf-pool-{pool}-{dtype}-{}", std::process::id()));
        let flags = [
            "--pool",
            pool,
            "--batch-size",
            "2",
            // Rows of 27, 22 and 13 tokens: the first alone, then two in 2 × 22 = 44.
            "--max-tokens",
            "50",
            "--dtype",
            dtype,
        ];
        let (expected, got, _) = encode_fixture("hidden_states", &dir, &flags);
        std::fs::remove_dir_all(&dir).unwrap();
        let (shape, hidden) = &expected["last_hidden_state"];
        let (_, real) = &expected["attention_mask"];
        let [rows, seq, width] = [shape[0], shape[1], shape[2]];
        let mut want = vec![0.0; rows * width];
        for r in 0..rows {
            let tokens: Vec<usize> = match pool {
                "mean" => (0..seq).filter(|&t| real[r * seq + t] > 0.5).collect(),
                _ => vec![0],
            };
            for &t in &tokens {
                for c in 0..width {
                    want[r * width + c] += hidden[(r * seq + t) * width + c] / tokens.len() as f64;
                }
            }
        }
        let name = if pool == "mean" {
            "mean_pooled"
        } else {
            "first_token"
        };
        assert!(!got.contains_key("last_hidden_state"), "{pool}");
        let what = format!("{name} in {dtype}");
        assert_close(&got[name], &(vec![rows, width], want), tolerance, &what);
    }
}

/// `--text-file DIR` encodes the directory's files (not hidden ones, not sub-directories) in
/// name order, as the same files given one by one do, and the output's metadata `rows` names
/// each row's file; an empty directory is an error naming it.
#[test]
fn a_text_file_directory_is_its_files_in_name_order() {
    let dir = std::env::temp_dir().join(format!("lf-text-dir-{}", std::process::id()));
    let docs = dir.join("docs");
    std::fs::create_dir_all(docs.join("nested")).unwrap();
    std::fs::write(docs.join("b.txt"), "she wrote the first program.").unwrap();
    std::fs::write(docs.join("a.txt"), "ada was born in paris.").unwrap();
    std::fs::write(docs.join(".hidden"), "not a document").unwrap();
    std::fs::write(docs.join("nested/c.txt"), "not this one either").unwrap();
    let run = |tag: &str, sources: &[&Path]| {
        let out_file = dir.join(format!("{tag}.safetensors"));
        let mut args = vec!["--output".to_string(), out_file.display().to_string()];
        for source in sources {
            args.extend(["--text-file".to_string(), source.display().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = encode(&args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), err, std::fs::read(&out_file).ok())
    };
    let (ok, err, from_dir) = run("dir", &[&docs]);
    assert!(ok, "{err}");
    let (ok, err, one_by_one) = run("files", &[&docs.join("a.txt"), &docs.join("b.txt")]);
    assert!(ok, "{err}");
    assert_eq!(from_dir, one_by_one);
    let bytes = from_dir.unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let rows: Vec<String> =
        serde_json::from_str(&header.metadata().as_ref().unwrap()["rows"]).unwrap();
    let names: Vec<&str> = rows.iter().map(|r| &r[r.len() - 5..]).collect();
    assert_eq!(names, ["a.txt", "b.txt"]);

    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (ok, err, _) = run("empty", &[&empty]);
    assert!(
        !ok && err.contains("empty is a directory without files"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// With text, the question-answering summary quotes its best span's text, and the
/// token-classification summary puts each tag after its token: heads made from the bundled
/// model (new, random) with its tokenizer.
#[test]
fn head_summaries_of_text_quote_the_tokens() {
    use burn::tensor::Device;
    use longformer_model::{
        LongformerForQuestionAnswering, LongformerForTokenClassification, LongformerHeadConfig,
        load_with_new_head, save_head,
    };

    let tiny = repo_root().join("assets/tiny-longformer");
    let dir = std::env::temp_dir().join(format!("lf-head-text-{}", std::process::id()));
    let config = LongformerHeadConfig::from_json_file(tiny.join("config.json")).unwrap();
    let device = Device::flex();
    let qa_dir = dir.join("qa");
    let qa: LongformerForQuestionAnswering = load_with_new_head(&tiny, &device).unwrap();
    save_head(&qa, &config, &qa_dir).unwrap();
    let tags_dir = dir.join("tags");
    let tags: LongformerForTokenClassification = load_with_new_head(&tiny, &device).unwrap();
    save_head(&tags, &config, &tags_dir).unwrap();
    for head_dir in [&qa_dir, &tags_dir] {
        std::fs::copy(tiny.join("tokenizer.json"), head_dir.join("tokenizer.json")).unwrap();
    }
    let tokenizer = longformer_data::TextTokenizer::from_dir(&tiny).unwrap();
    let run = |model: &Path, head: &str, text: &str| {
        let out = encode(&[
            "--model",
            model.to_str().unwrap(),
            "--head",
            head,
            "--text",
            text,
            "--output",
            dir.join("out.safetensors").to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    let text = "who was born in paris? </s></s> ada was born in paris.";
    let ids = tokenizer.encode(text).unwrap();
    let line = run(&qa_dir, "question-answering", text);
    // "row 0: best span S..=E: \"...\""
    let span = line.trim().strip_prefix("row 0: best span ").unwrap();
    let (range, quoted) = span.split_once(": ").unwrap();
    let (start, end) = range.split_once("..=").unwrap();
    let (start, end): (usize, usize) = (start.parse().unwrap(), end.parse().unwrap());
    assert_eq!(quoted, format!("{:?}", tokenizer.decode(&ids[start..=end])));

    let text = "ada was born in paris.";
    let ids = tokenizer.encode(text).unwrap();
    let line = run(&tags_dir, "token-classification", text);
    // Each token quoted, then its tag (LABEL_0 or LABEL_1), the pairs separated by spaces.
    let mut rest = line.trim().strip_prefix("row 0: ").unwrap();
    for &id in &ids {
        let token = format!("{:?}/LABEL_", tokenizer.token_text(id));
        rest = rest
            .strip_prefix(&token)
            .unwrap_or_else(|| panic!("{token} expected at {rest:?} in {line}"));
        rest = rest[1..].strip_prefix(' ').unwrap_or(&rest[1..]);
    }
    assert!(rest.is_empty(), "{line}");
    std::fs::remove_dir_all(&dir).unwrap();
}
