//! What `longformer encode` reads: an ids file (`--input`), or texts (`--text`, `--text-file`)
//! tokenized with the model directory's tokenizer, cut to the model's length with `--truncate`.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Int, Tensor, TensorData};
use longformer_data::TextTokenizer;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InputJson {
    pub(super) input_ids: Vec<Vec<i64>>,
    pub(super) attention_mask: Option<Vec<Vec<i64>>>,
    pub(super) global_attention_mask: Option<Vec<Vec<i64>>>,
    pub(super) token_type_ids: Option<Vec<Vec<i64>>>,
}

impl InputJson {
    /// Each row's tokens before its trailing padding: up to its last real token (attention mask
    /// 1), at least one; the whole row without a mask. What the row's outputs at its real
    /// tokens depend on.
    pub(super) fn real_lengths(&self) -> Vec<usize> {
        match &self.attention_mask {
            None => self.input_ids.iter().map(Vec::len).collect(),
            Some(mask) => mask
                .iter()
                .map(|row| row.iter().rposition(|&m| m != 0).map_or(1, |last| last + 1))
                .collect(),
        }
    }
}

pub(super) fn read_input(path: &Path) -> Result<InputJson> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let input: InputJson = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a valid input file", path.display()))?;
    if input.input_ids.is_empty() || input.input_ids.iter().any(Vec::is_empty) {
        bail!(
            "{}: input_ids must hold at least one non-empty row",
            path.display()
        );
    }
    for (name, mask) in [
        ("attention_mask", &input.attention_mask),
        ("global_attention_mask", &input.global_attention_mask),
        ("token_type_ids", &input.token_type_ids),
    ] {
        let Some(mask) = mask else { continue };
        if mask.len() != input.input_ids.len() {
            bail!(
                "{}: {name} has {} rows but input_ids has {}",
                path.display(),
                mask.len(),
                input.input_ids.len()
            );
        }
        for (row, (m, ids)) in mask.iter().zip(&input.input_ids).enumerate() {
            if m.len() != ids.len() {
                bail!(
                    "{}: {name} row {row} has {} entries but input_ids row {row} has {}",
                    path.display(),
                    m.len(),
                    ids.len()
                );
            }
        }
    }
    // The device's integers are i32; a type past them would not reach the model's own check.
    for (row, types) in input.token_type_ids.iter().flatten().enumerate() {
        if let Some(col) = types
            .iter()
            .position(|t| !(0..=i32::MAX as i64).contains(t))
        {
            bail!(
                "{}: token_type_ids row {row} column {col} is {}, not a token type",
                path.display(),
                types[col]
            );
        }
    }
    Ok(input)
}

/// The files `--text-file` names, a directory standing for its files (not hidden, not in
/// sub-directories) in name order; an empty directory is an error.
pub(super) fn text_files(given: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in given {
        if !path.is_dir() {
            files.push(path.clone());
            continue;
        }
        let listing = || format!("listing --text-file {}", path.display());
        let mut inside = Vec::new();
        for entry in std::fs::read_dir(path).with_context(listing)? {
            let file = entry.with_context(listing)?.path();
            let hidden = file
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if file.is_file() && !hidden {
                inside.push(file);
            }
        }
        if inside.is_empty() {
            bail!(
                "--text-file {} is a directory without files",
                path.display()
            );
        }
        inside.sort();
        files.extend(inside);
    }
    Ok(files)
}

/// The whole content of `path` (`-`: standard input) as text, or an error naming the file.
pub(super) fn read_text_file(path: &Path) -> Result<String> {
    let bytes = if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading --text-file - (standard input)")?;
        bytes
    } else {
        std::fs::read(path).with_context(|| format!("reading --text-file {}", path.display()))?
    };
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "--text-file {} is not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

/// `<s> text </s>` for each text (a row each) with the model directory's tokenizer, as HF
/// tokenizes it; global attention on `<s>` when `global_first`, else no global mask (the head's
/// default applies).
pub(super) fn tokenize(
    model_dir: &Path,
    texts: &[String],
    global_first: bool,
) -> Result<(InputJson, TextTokenizer)> {
    let tokenizer = TextTokenizer::from_dir(model_dir)?;
    let rows: Vec<Vec<i64>> = texts
        .iter()
        .enumerate()
        .map(|(row, text)| {
            let ids = tokenizer
                .encode(text)
                .with_context(|| format!("tokenizing text {row}"))?;
            Ok(ids.into_iter().map(i64::from).collect())
        })
        .collect::<Result<_>>()?;
    let global = global_first.then(|| {
        rows.iter()
            .map(|ids| {
                let mut global = vec![0; ids.len()];
                global[0] = 1;
                global
            })
            .collect()
    });
    Ok((
        InputJson {
            input_ids: rows,
            attention_mask: None,
            global_attention_mask: global,
            token_type_ids: None,
        },
        tokenizer,
    ))
}

/// Cuts every row of `rows` holding more than `limit` ids other than `pad` to its first `limit`
/// such ids (explicit padding among them kept), with its masks and token types; with
/// `keep_last`, the row's last id (a text's `</s>`) ends the cut row. Returns
/// `(row, length before, length after)` of the rows cut.
pub(super) fn truncate_rows(
    rows: &mut InputJson,
    limit: usize,
    pad: i64,
    keep_last: bool,
) -> Vec<(usize, usize, usize)> {
    let mut cut = Vec::new();
    for row in 0..rows.input_ids.len() {
        let ids = &rows.input_ids[row];
        let real = ids.iter().filter(|&&id| id != pad).count();
        if real <= limit || limit == 0 {
            continue;
        }
        let wanted = if keep_last { limit - 1 } else { limit };
        // The length of the prefix holding `wanted` non-pad ids.
        let mut seen = 0;
        let end = ids
            .iter()
            .position(|&id| {
                seen += usize::from(id != pad);
                seen > wanted
            })
            .unwrap_or(ids.len());
        let before = ids.len();
        for list in [
            Some(&mut rows.input_ids),
            rows.attention_mask.as_mut(),
            rows.global_attention_mask.as_mut(),
            rows.token_type_ids.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            let kept_last = *list[row].last().expect("checked as long as the ids");
            list[row].truncate(end);
            if keep_last {
                list[row].push(kept_last);
            }
        }
        cut.push((row, before, rows.input_ids[row].len()));
    }
    cut
}

/// `[batch, seq]` token types from `rows` (ragged as `input_ids`; the padding gets type 0).
/// [`read_input`] has checked their shape.
pub(super) fn token_types(
    rows: &[Vec<i64>],
    [batch, seq]: [usize; 2],
    device: &Device,
) -> Tensor<2, Int> {
    let mut flat = vec![0i64; batch * seq];
    for (row, types) in rows.iter().enumerate() {
        flat[row * seq..row * seq + types.len()].copy_from_slice(types);
    }
    Tensor::from_data(TensorData::new(flat, [batch, seq]), device)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use burn::tensor::Device;

    use super::*;

    /// A row's real length ends at its last real token: trailing padding is not counted, padding
    /// inside (left padding, masked-out tokens) is; a row of padding alone counts one.
    #[test]
    fn real_lengths_end_at_the_last_real_token() {
        let mut rows = InputJson {
            input_ids: vec![
                vec![0, 5, 2, 1],
                vec![1, 0, 5, 2],
                vec![0, 1, 2],
                vec![1, 1],
            ],
            attention_mask: Some(vec![
                vec![1, 1, 1, 0],
                vec![0, 1, 1, 1],
                vec![1, 0, 1],
                vec![0, 0],
            ]),
            global_attention_mask: None,
            token_type_ids: None,
        };
        assert_eq!(rows.real_lengths(), [3, 4, 3, 1]);
        rows.attention_mask = None;
        assert_eq!(rows.real_lengths(), [4, 4, 3, 2]);
    }

    /// Rows over the limit keep their first `limit` ids other than padding (and their closing
    /// id with `keep_last`), masks alike; shorter rows and explicit padding are untouched.
    #[test]
    fn truncation_keeps_the_first_tokens_and_optionally_the_last() {
        let mut rows = InputJson {
            input_ids: vec![vec![0, 5, 6, 7, 8, 2], vec![0, 5, 1, 1, 2]],
            attention_mask: Some(vec![vec![1; 6], vec![1, 1, 0, 0, 1]]),
            global_attention_mask: None,
            token_type_ids: None,
        };
        let mut text = InputJson {
            input_ids: rows.input_ids.clone(),
            attention_mask: rows.attention_mask.clone(),
            global_attention_mask: None,
            token_type_ids: None,
        };
        // Pad id 1: the second row holds 3 real ids, under the limit of 4.
        assert_eq!(truncate_rows(&mut rows, 4, 1, false), [(0, 6, 4)]);
        assert_eq!(rows.input_ids, [vec![0, 5, 6, 7], vec![0, 5, 1, 1, 2]]);
        assert_eq!(rows.attention_mask.unwrap()[0], [1, 1, 1, 1]);
        assert_eq!(truncate_rows(&mut text, 4, 1, true), [(0, 6, 4)]);
        assert_eq!(text.input_ids[0], [0, 5, 6, 2]);
    }

    /// Token types of ragged rows are laid out on the padded grid, padding typed 0.
    #[test]
    fn token_types_pad_ragged_rows_with_zero() {
        let device = Device::flex();
        let types = token_types(&[vec![1, 1, 1], vec![1]], [2, 3], &device);
        let values: Vec<i64> = types.into_data().iter::<i64>().collect();
        assert_eq!(values, [1, 1, 1, 1, 0, 0]);
    }

    /// The bundled tiny model: a Longformer `config.json` and a `tokenizer.json` that says
    /// `add_prefix_space: true`, which HF's tokenizer class for Longformer overrides.
    fn tiny_model() -> PathBuf {
        let manifest = std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test");
        Path::new(&manifest).join("../../assets/tiny-longformer")
    }

    #[test]
    fn text_gets_the_ids_hf_gives_it() {
        // HF: AutoTokenizer.from_pretrained("assets/tiny-longformer")(text)["input_ids"]
        // (transformers 5.24). No prefix space, and the WikiHop markers are plain text.
        for (text, hf) in [
            (
                "Hello world",
                &[0, 44, 335, 80, 83, 285, 264, 80, 72, 2][..],
            ),
            (
                "a [ent] b [/question]",
                &[
                    0, 69, 225, 63, 316, 88, 65, 270, 225, 63, 19, 85, 89, 589, 396, 65, 2,
                ],
            ),
        ] {
            let (input, _) = tokenize(&tiny_model(), &[text.to_string()], true).unwrap();
            assert_eq!(input.input_ids, [hf], "{text:?}");
            let global = input.global_attention_mask.unwrap();
            assert_eq!(global[0].iter().sum::<i64>(), 1);
            assert_eq!(global[0][0], 1);
        }
    }
}
