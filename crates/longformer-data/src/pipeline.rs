//! From a WikiHop file to chunks: read, tokenize and lay out in parallel, cached on disk.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use burn::data::dataset::InMemDataset;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cache;
use crate::error::{DataError, SkippedRecord};
use crate::layout::{
    LayoutConfig, TokenizedExample, WikiHopChunk, candidate_part, layout, support_part,
};
use crate::progress::{Progress, ProgressMode};
use crate::summary::Summary;
use crate::tokenizer::{WikiHopTokenizer, hex};
use crate::wikihop::{WikiHopExample, parse_wikihop};

/// Settings that change the prepared chunks (all part of the cache key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct PrepareConfig {
    /// Chunk length and truncation.
    pub layout: LayoutConfig,
    /// Stop at the first bad record instead of skipping it.
    pub strict: bool,
    /// Shuffle each example's candidates and supports with this seed.
    pub shuffle_seed: Option<u64>,
}

/// How to run [`prepare_file`].
#[derive(Debug, Clone, Default)]
pub struct PrepareOptions {
    /// What to produce.
    pub config: PrepareConfig,
    /// Directory of the cache; `None` disables it.
    pub cache_dir: Option<PathBuf>,
    /// Progress on stderr.
    pub progress: ProgressMode,
}

/// What happened with the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheStatus {
    /// No cache directory given.
    Disabled,
    /// Loaded from this file.
    Hit(PathBuf),
    /// Computed and saved to this file.
    Written(PathBuf),
    /// Computed; the cache file could not be used or written (the run still succeeded).
    Failed {
        /// The cache file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The chunks of a file, its summary and the cache outcome.
#[derive(Debug, Clone)]
pub struct PreparedSet {
    /// Chunks in file order (chunks of an example are consecutive).
    pub chunks: Vec<WikiHopChunk>,
    /// Counts and skipped records.
    pub summary: Summary,
    /// Cache outcome.
    pub cache: CacheStatus,
}

impl PreparedSet {
    /// The chunks as a Burn dataset, for `DataLoaderBuilder::new(WikiHopBatcher::new(pad_id))`.
    pub fn into_dataset(self) -> InMemDataset<WikiHopChunk> {
        InMemDataset::new(self.chunks)
    }
}

/// Reads a WikiHop file and turns it into chunks, using the cache when there is one.
pub fn prepare_file(
    path: &Path,
    tokenizer: &WikiHopTokenizer,
    options: &PrepareOptions,
) -> Result<PreparedSet, DataError> {
    check_settings(&options.config)?;
    let bytes = crate::bundled::read(path)?;
    let Some(dir) = &options.cache_dir else {
        let (chunks, summary) =
            prepare_bytes(&bytes, path, tokenizer, &options.config, options.progress)?;
        return Ok(PreparedSet {
            chunks,
            summary,
            cache: CacheStatus::Disabled,
        });
    };
    let key = cache_key(&bytes, tokenizer, &options.config)?;
    let cache_path = dir.join(format!("wikihop-{}.bin", &hex(&key)[..32]));
    let mut failure = None;
    match cache::load(&cache_path, &key) {
        Ok(Some((mut summary, chunks))) => {
            summary.file = path.to_path_buf();
            return Ok(PreparedSet {
                chunks,
                summary,
                cache: CacheStatus::Hit(cache_path),
            });
        }
        Ok(None) => {}
        Err(reason) => failure = Some(reason),
    }
    let (chunks, summary) =
        prepare_bytes(&bytes, path, tokenizer, &options.config, options.progress)?;
    let cache = match (failure, cache::save(&cache_path, &key, &summary, &chunks)) {
        (_, Err(e)) => CacheStatus::Failed {
            path: cache_path,
            reason: e.to_string(),
        },
        (Some(reason), Ok(())) => CacheStatus::Failed {
            path: cache_path,
            reason: format!("old cache unusable ({reason}), rewritten"),
        },
        (None, Ok(())) => CacheStatus::Written(cache_path),
    };
    Ok(PreparedSet {
        chunks,
        summary,
        cache,
    })
}

/// SHA-256 of (format version, file contents, tokenizer, settings).
fn cache_key(
    bytes: &[u8],
    tokenizer: &WikiHopTokenizer,
    config: &PrepareConfig,
) -> Result<[u8; 32], DataError> {
    let mut hasher = Sha256::new();
    hasher.update(cache::FORMAT_VERSION.to_le_bytes());
    hasher.update(Sha256::digest(bytes));
    hasher.update(tokenizer.fingerprint()?.as_bytes());
    hasher.update(serde_json::to_vec(config).expect("the config serializes"));
    Ok(hasher.finalize().into())
}

/// Settings no record could be prepared with: `max_len` 0.
fn check_settings(config: &PrepareConfig) -> Result<(), DataError> {
    if config.layout.max_len == 0 {
        return Err(DataError::Settings("max_len must be positive".into()));
    }
    Ok(())
}

/// [`prepare_file`] without the cache, on bytes already read (`path` names them in messages).
pub fn prepare_bytes(
    bytes: &[u8],
    path: &Path,
    tokenizer: &WikiHopTokenizer,
    config: &PrepareConfig,
    progress: ProgressMode,
) -> Result<(Vec<WikiHopChunk>, Summary), DataError> {
    check_settings(config)?;
    // Under `strict` the error names the first bad record in the file, whether the reader or
    // the tokenizer and layout reject it: the records before the first one the reader rejects
    // are prepared, and the first of them that fails comes before it.
    let read = parse_wikihop(bytes, path, false)?;
    let first_unreadable = read.skipped.first().filter(|_| config.strict);
    let examples = match first_unreadable {
        Some(bad) => &read.examples[..read.examples.partition_point(|e| e.index < bad.index)],
        None => &read.examples[..],
    };
    let progress = Progress::new(
        progress,
        &format!("prepare {}", path.display()),
        examples.len(),
    );
    let results: Vec<Result<Prepared, SkippedRecord>> = examples
        .par_iter()
        .map(|example| {
            let result = prepare_example(example, tokenizer, config);
            progress.inc();
            result
        })
        .collect();
    progress.finish();

    let mut summary = Summary {
        file: path.to_path_buf(),
        records: read.records,
        skipped: read.skipped,
        ..Summary::default()
    };
    let mut chunks = Vec::new();
    for result in results {
        match result {
            Ok(prepared) => {
                summary.examples += 1;
                summary.example_tokens += prepared.tokens;
                summary.long_examples += usize::from(prepared.long);
                summary.truncated_examples += usize::from(prepared.long && config.layout.truncate);
                chunks.extend(prepared.chunks);
            }
            Err(skipped) if config.strict => return Err(skipped.into_error(path.to_path_buf())),
            Err(skipped) => summary.skipped.push(skipped),
        }
    }
    if config.strict && !summary.skipped.is_empty() {
        return Err(summary.skipped.remove(0).into_error(path.to_path_buf()));
    }
    summary.skipped.sort_by_key(|s| s.index);
    summary.chunks = chunks.len();
    summary.longest_chunk = chunks.iter().map(|c| c.input_ids.len()).max().unwrap_or(0);
    Ok((chunks, summary))
}

/// One example's chunks and counts.
struct Prepared {
    chunks: Vec<WikiHopChunk>,
    tokens: usize,
    long: bool,
}

fn prepare_example(
    example: &WikiHopExample,
    tokenizer: &WikiHopTokenizer,
    config: &PrepareConfig,
) -> Result<Prepared, SkippedRecord> {
    let skipped = |problem| SkippedRecord {
        index: example.index,
        id: example.id.clone(),
        problem,
    };
    let mut tokenized = TokenizedExample::new(example, tokenizer).map_err(skipped)?;
    if let Some(seed) = config.shuffle_seed {
        tokenized.shuffle(seed);
    }
    let ids = tokenizer.special();
    let candidate_len = candidate_part(&tokenized, ids).0.len();
    let support_len = support_part(&tokenized, ids).len();
    let chunks = layout(&tokenized, ids, &config.layout).map_err(skipped)?;
    Ok(Prepared {
        chunks,
        tokens: candidate_len + support_len,
        long: candidate_len + support_len > config.layout.max_len,
    })
}

/// Creates (or truncates) `path` for buffered writing, creating its parent directory first.
pub(crate) fn create_output(path: &Path) -> Result<BufWriter<std::fs::File>, DataError> {
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    Ok(BufWriter::new(std::fs::File::create(path).map_err(io)?))
}

/// Writes one JSON line per chunk (see [`WikiHopChunk::to_json_line`]).
pub fn write_jsonl(chunks: &[WikiHopChunk], out: &Path) -> Result<(), DataError> {
    let io = |source| DataError::Io {
        path: out.to_path_buf(),
        source,
    };
    let mut writer = create_output(out)?;
    for chunk in chunks {
        writeln!(writer, "{}", chunk.to_json_line()).map_err(io)?;
    }
    writer.flush().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::RecordProblem;
    use crate::sample_dir;
    use crate::test_support::sample_tokenizer;

    /// [`prepare_bytes`] on `text`, named `t.json` in messages, without progress.
    fn prepare_text(
        text: &[u8],
        tok: &WikiHopTokenizer,
        config: &PrepareConfig,
    ) -> Result<(Vec<WikiHopChunk>, Summary), DataError> {
        prepare_bytes(text, Path::new("t.json"), tok, config, ProgressMode::Hidden)
    }

    fn options(cache_dir: Option<PathBuf>, config: PrepareConfig) -> PrepareOptions {
        PrepareOptions {
            config,
            cache_dir,
            progress: ProgressMode::Hidden,
        }
    }

    #[test]
    fn cache_hit_equals_fresh_run() {
        let tok = sample_tokenizer();
        let data = sample_dir().join("dev.json");
        let dir = tempfile::tempdir().unwrap();
        let config = PrepareConfig {
            shuffle_seed: Some(3),
            ..PrepareConfig::default()
        };
        let fresh = prepare_file(&data, &tok, &options(None, config)).unwrap();
        assert_eq!(fresh.cache, CacheStatus::Disabled);
        let first = prepare_file(&data, &tok, &options(Some(dir.path().into()), config)).unwrap();
        assert!(
            matches!(first.cache, CacheStatus::Written(_)),
            "{:?}",
            first.cache
        );
        let second = prepare_file(&data, &tok, &options(Some(dir.path().into()), config)).unwrap();
        assert!(
            matches!(second.cache, CacheStatus::Hit(_)),
            "{:?}",
            second.cache
        );
        assert_eq!(second.chunks, fresh.chunks);
        assert_eq!(second.summary, fresh.summary);
        assert!(fresh.summary.examples > 0);
        // Other settings miss.
        let other = PrepareConfig {
            shuffle_seed: Some(4),
            ..config
        };
        let third = prepare_file(&data, &tok, &options(Some(dir.path().into()), other)).unwrap();
        assert!(
            matches!(third.cache, CacheStatus::Written(_)),
            "{:?}",
            third.cache
        );
        assert_ne!(third.chunks, fresh.chunks);
    }

    #[test]
    fn corrupt_cache_is_rebuilt() {
        let tok = sample_tokenizer();
        let data = sample_dir().join("dev.json");
        let dir = tempfile::tempdir().unwrap();
        let opts = options(Some(dir.path().into()), PrepareConfig::default());
        let first = prepare_file(&data, &tok, &opts).unwrap();
        let CacheStatus::Written(path) = &first.cache else {
            panic!("{:?}", first.cache)
        };
        std::fs::write(path, b"LFWH garbage").unwrap();
        let second = prepare_file(&data, &tok, &opts).unwrap();
        assert!(
            matches!(second.cache, CacheStatus::Failed { .. }),
            "{:?}",
            second.cache
        );
        assert_eq!(second.chunks, first.chunks);
        let third = prepare_file(&data, &tok, &opts).unwrap();
        assert!(matches!(third.cache, CacheStatus::Hit(_)));
    }

    #[test]
    fn skipped_records_are_counted_and_strict_fails() {
        let tok = sample_tokenizer();
        let text = br#"[
            {"id": "ok", "query": "r x", "answer": "a", "candidates": ["a", "b"], "supports": ["a b."]},
            {"id": "no_supports", "query": "r x", "answer": "a", "candidates": ["a"], "supports": []},
            {"id": "long", "query": "r x", "answer": "a", "candidates": ["a", "a a a a a a a a a a a a a a a a a a a a"], "supports": ["x"]}
        ]"#;
        let mut config = PrepareConfig {
            layout: LayoutConfig {
                max_len: 16,
                truncate: false,
            },
            ..PrepareConfig::default()
        };
        let (chunks, summary) = prepare_text(text, &tok, &config).unwrap();
        assert_eq!(summary.examples, 1);
        assert_eq!(
            chunks.iter().map(|c| c.id.as_str()).collect::<Vec<_>>()[0],
            "ok"
        );
        let ids: Vec<&str> = summary.skipped.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["no_supports", "long"]);
        assert!(matches!(
            summary.skipped[1].problem,
            RecordProblem::CandidatePartTooLong { .. }
        ));
        config.strict = true;
        let err = prepare_text(text, &tok, &config).unwrap_err().to_string();
        assert!(
            err.contains("t.json: record 1 (id \"no_supports\"): no supports"),
            "{err}"
        );
    }

    #[test]
    fn jsonl_has_one_line_per_chunk() {
        let tok = sample_tokenizer();
        let data = sample_dir().join("dev.json");
        let prepared = prepare_file(&data, &tok, &options(None, PrepareConfig::default())).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("sub/dev.jsonl");
        write_jsonl(&prepared.chunks, &out).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(text.lines().count(), prepared.chunks.len());
        let n = prepared.chunks.len();
        assert_eq!(
            burn::data::dataset::Dataset::len(&prepared.clone().into_dataset()),
            n
        );
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        for key in [
            "id",
            "chunk",
            "input_ids",
            "global_attention_mask",
            "predicted_indices",
            "answer_index",
        ] {
            assert!(first.get(key).is_some(), "{key}");
        }
    }

    /// `max_len` 0 is refused as a setting by `prepare_bytes` too, not blamed on every record.
    #[test]
    fn max_len_zero_is_a_settings_error_for_bytes_too() {
        let text = br#"[{"id": "ok", "query": "r x", "answer": "a", "candidates": ["a"], "supports": ["a."]}]"#;
        let config = PrepareConfig {
            layout: LayoutConfig {
                max_len: 0,
                truncate: false,
            },
            ..PrepareConfig::default()
        };
        let tok = sample_tokenizer();
        let err = prepare_text(text, &tok, &config).unwrap_err();
        assert!(matches!(err, DataError::Settings(_)), "{err}");
    }

    /// Under `strict` the error names the first bad record of the file, even when the reader
    /// accepts it and only the layout rejects it while a later record is unreadable.
    #[test]
    fn strict_names_the_first_bad_record_whatever_rejects_it() {
        let tok = sample_tokenizer();
        let text = br#"[
            {"id": "ok", "query": "r x", "answer": "a", "candidates": ["a", "b"], "supports": ["a b."]},
            {"id": "long", "query": "r x", "answer": "a", "candidates": ["a", "a a a a a a a a a a a a a a a a a a a a"], "supports": ["x"]},
            {"id": "no_supports", "query": "r x", "answer": "a", "candidates": ["a"], "supports": []}
        ]"#;
        let config = PrepareConfig {
            layout: LayoutConfig {
                max_len: 16,
                truncate: false,
            },
            strict: true,
            ..PrepareConfig::default()
        };
        let prepare = |text: &[u8]| prepare_text(text, &tok, &config).unwrap_err().to_string();
        let err = prepare(text);
        assert!(
            err.starts_with("t.json: record 1 (id \"long\"): candidate part"),
            "{err}"
        );
        // Without the long record, the unreadable one is reported.
        let text = std::str::from_utf8(text).unwrap();
        let start = text.find(r#"{"id": "long""#).unwrap();
        let end = start + text[start..].find('\n').unwrap();
        let err = prepare(format!("{}{}", &text[..start], &text[end + 1..]).as_bytes());
        assert!(
            err.starts_with("t.json: record 1 (id \"no_supports\"): no supports"),
            "{err}"
        );
    }
}
