//! `longformer prepare`: a WikiHop (QAngaroo) JSON file → one JSON line per chunk.
//!
//! All the work is in `longformer_data`; this file maps flags to its options and prints.

use std::path::PathBuf;

use crate::progress::note;
use clap::Args;
use longformer_data::{
    CacheStatus, DEFAULT_MAX_LEN, LayoutConfig, PrepareConfig, PrepareOptions, ProgressMode,
    WikiHopTokenizer, prepare_file, write_jsonl,
};

/// Flags of `longformer prepare`.
#[derive(Args, Debug)]
pub struct PrepareArgs {
    /// WikiHop file (`train.json` or `dev.json`: a JSON array of records).
    #[arg(long, value_name = "FILE.json")]
    pub data: PathBuf,
    /// Tokenizer directory (`tokenizer.json`, or `vocab.json` + `merges.txt`) or a `tokenizer.json` file.
    #[arg(long, value_name = "DIR")]
    pub tokenizer: PathBuf,
    /// Longest chunk in tokens; longer examples are split into several chunks.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_LEN)]
    pub max_len: usize,
    /// Keep only the first chunk of examples longer than --max-len.
    #[arg(long)]
    pub truncate: bool,
    /// Stop at the first bad record (non-zero exit) instead of skipping it.
    #[arg(long)]
    pub strict: bool,
    /// Shuffle each example's candidates and supports with this seed (answer index follows).
    #[arg(long, value_name = "SEED")]
    pub shuffle_seed: Option<u64>,
    /// Cache directory (keyed by file contents, tokenizer and settings).
    #[arg(long, value_name = "DIR", default_value = "target/longformer-cache")]
    pub cache_dir: PathBuf,
    /// Do not read or write the cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Output file, one JSON line per chunk:
    /// {"id","chunk","input_ids","global_attention_mask","predicted_indices","answer_index"}.
    #[arg(long, value_name = "FILE.jsonl")]
    pub out: PathBuf,
}

/// Runs `longformer prepare`.
pub fn run(args: PrepareArgs) -> anyhow::Result<()> {
    let tokenizer = WikiHopTokenizer::from_dir(&args.tokenizer)?;
    note(&format!(
        "tokenizer {}: vocabulary {} ({} WikiHop markers added)",
        args.tokenizer.display(),
        tokenizer.vocab_size(),
        tokenizer.added_tokens()
    ));
    let options = PrepareOptions {
        config: PrepareConfig {
            layout: LayoutConfig {
                max_len: args.max_len,
                truncate: args.truncate,
            },
            strict: args.strict,
            shuffle_seed: args.shuffle_seed,
        },
        cache_dir: (!args.no_cache).then_some(args.cache_dir),
        progress: ProgressMode::Auto,
    };
    let prepared = prepare_file(&args.data, &tokenizer, &options)?;
    match &prepared.cache {
        CacheStatus::Disabled => {}
        CacheStatus::Hit(path) => note(&format!("cache hit: {}", path.display())),
        CacheStatus::Written(path) => note(&format!("cache written: {}", path.display())),
        CacheStatus::Failed { path, reason } => {
            note(&format!("warning: cache {}: {reason}", path.display()))
        }
    }
    if prepared.chunks.is_empty() {
        anyhow::bail!(
            "{}: no record could be used ({}); nothing written to {}",
            args.data.display(),
            prepared.summary,
            args.out.display()
        );
    }
    write_jsonl(&prepared.chunks, &args.out)?;
    note(&prepared.summary.to_string());
    note(&format!(
        "wrote {} chunks to {}",
        prepared.chunks.len(),
        args.out.display()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: PrepareArgs,
    }

    fn parse(args: &[&str]) -> PrepareArgs {
        Cli::try_parse_from(std::iter::once("prepare").chain(args.iter().copied()))
            .unwrap()
            .args
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("longformer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A file of this checkout's sample set.
    fn sample(file: &str) -> String {
        longformer_data::sample_dir()
            .join(file)
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn defaults() {
        let args = parse(&["--data", "d.json", "--tokenizer", "t", "--out", "o.jsonl"]);
        assert_eq!(args.max_len, 4096);
        assert!(!args.truncate && !args.strict && !args.no_cache);
        assert_eq!(args.shuffle_seed, None);
    }

    #[test]
    fn prepares_the_sample_dev_set_and_reuses_the_cache() {
        let dir = scratch("prepare");
        let out = dir.join("dev.jsonl");
        let (data, tokenizer) = (sample("dev.json"), sample("tokenizer"));
        let cache = dir.join("cache");
        let flags = [
            "--data",
            &data,
            "--tokenizer",
            &tokenizer,
            "--max-len",
            "128",
            "--cache-dir",
            cache.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        run(parse(&flags)).unwrap();
        let first = std::fs::read_to_string(&out).unwrap();
        let lines: Vec<serde_json::Value> = first
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        // 300 examples, some split in several chunks at 128 tokens.
        assert!(lines.len() > 300, "{}", lines.len());
        for line in &lines {
            let ids = line["input_ids"].as_array().unwrap();
            assert!(ids.len() <= 128);
            assert_eq!(
                line["global_attention_mask"].as_array().unwrap().len(),
                ids.len()
            );
            assert!(line["id"].is_string() && line["chunk"].is_u64());
            assert!(
                line["answer_index"].as_u64().unwrap()
                    < line["predicted_indices"].as_array().unwrap().len() as u64
            );
        }
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);
        run(parse(&flags)).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), first);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn strict_error_names_file_and_record() {
        let dir = scratch("prepare-strict");
        let data = dir.join("bad.json");
        std::fs::write(
            &data,
            r#"[{"id": "WH_x_0", "query": "r a", "answer": "z", "candidates": ["a"], "supports": ["s"]}]"#,
        )
        .unwrap();
        let out = dir.join("out.jsonl");
        let tokenizer = sample("tokenizer");
        let flags = [
            "--data",
            data.to_str().unwrap(),
            "--tokenizer",
            &tokenizer,
            "--strict",
            "--no-cache",
            "--out",
            out.to_str().unwrap(),
        ];
        let message = run(parse(&flags)).unwrap_err().to_string();
        assert!(
            message.contains("bad.json") && message.contains("record 0"),
            "{message}"
        );
        assert!(
            message.contains("WH_x_0") && message.contains("not among"),
            "{message}"
        );

        // Without --strict the bad record is skipped; with none left, nothing is written and
        // the command fails (train and eval would refuse the empty file later).
        let lenient: Vec<&str> = flags.iter().copied().filter(|f| *f != "--strict").collect();
        let message = run(parse(&lenient)).unwrap_err().to_string();
        assert!(
            message.contains("bad.json") && message.contains("no record could be used"),
            "{message}"
        );
        assert!(!out.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
