//! Preprocessing throughput (examples/s), not a timed test:
//!
//! ```text
//! # the committed sample set
//! cargo run -p longformer-data --example bench_prepare
//! # a WikiHop-sized synthetic train set (43,738 examples of ~1,300 tokens)
//! cargo run -p longformer-data --example bench_prepare -- --synthetic 43738
//! # any WikiHop file
//! cargo run -p longformer-data --example bench_prepare -- --data train.json --tokenizer DIR
//! ```
//!
//! Flags: `--max-len N` (4096); `--cache-dir DIR` (an empty directory: the run writes
//! the cache there, then a second run is timed loading it); `--max-filler N` (filler
//! sentences per synthetic example, uniform in 0..=N, default 300); `--noise N`
//! (default 8). The first run's time includes reading, checking,
//! tokenizing and laying out, on all cores rayon finds (set `RAYON_NUM_THREADS`).

use std::path::PathBuf;
use std::time::Instant;

use longformer_data::{
    LayoutConfig, PrepareConfig, PrepareOptions, ProgressMode, SampleConfig, WikiHopTokenizer,
    generate, prepare_file, write_records,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sample = longformer_data::sample_dir();
    let mut data = sample.join("train.json");
    let mut tokenizer_dir = sample.join("tokenizer");
    let mut synthetic: Option<usize> = None;
    let mut cache_dir: Option<PathBuf> = None;
    let mut max_len = 4096;
    let (mut max_filler, mut noise) = (300, 8);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value =
            || -> Result<String, String> { args.next().ok_or(format!("{flag} needs a value")) };
        match flag.as_str() {
            "--data" => data = PathBuf::from(value()?),
            "--tokenizer" => tokenizer_dir = PathBuf::from(value()?),
            "--synthetic" => synthetic = Some(value()?.parse()?),
            "--max-len" => max_len = value()?.parse()?,
            "--max-filler" => max_filler = value()?.parse()?,
            "--noise" => noise = value()?.parse()?,
            "--cache-dir" => cache_dir = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let _keep = if let Some(examples) = synthetic {
        let dir = tempfile::tempdir()?;
        data = dir.path().join("synthetic.json");
        let config = SampleConfig {
            split: "bench".into(),
            seed: 7,
            examples,
            max_filler,
            noise_documents: noise,
            ..SampleConfig::train()
        };
        let start = Instant::now();
        write_records(&generate(&config), &data)?;
        let size = std::fs::metadata(&data)?.len();
        eprintln!(
            "generated {examples} synthetic examples ({:.1} MB) in {:.1} s",
            size as f64 / 1e6,
            start.elapsed().as_secs_f64()
        );
        Some(dir)
    } else {
        None
    };
    let tokenizer = WikiHopTokenizer::from_dir(&tokenizer_dir)?;
    let options = PrepareOptions {
        config: PrepareConfig {
            layout: LayoutConfig {
                max_len,
                truncate: false,
            },
            ..PrepareConfig::default()
        },
        cache_dir: cache_dir.clone(),
        progress: ProgressMode::Auto,
    };
    let start = Instant::now();
    let prepared = prepare_file(&data, &tokenizer, &options)?;
    let seconds = start.elapsed().as_secs_f64();
    let summary = &prepared.summary;
    eprintln!("{summary}");
    println!(
        "{} examples ({:.0} tokens each on average, {} chunks) in {:.2} s: {:.0} examples/s, {:.0} tokens/s on {} threads",
        summary.examples,
        summary.mean_example_tokens(),
        summary.chunks,
        seconds,
        summary.examples as f64 / seconds,
        summary.example_tokens as f64 / seconds,
        rayon::current_num_threads(),
    );
    if cache_dir.is_some() {
        let start = Instant::now();
        let again = prepare_file(&data, &tokenizer, &options)?;
        println!(
            "second run: {:?} in {:.2} s ({} chunks, identical: {})",
            again.cache,
            start.elapsed().as_secs_f64(),
            again.chunks.len(),
            again.chunks == prepared.chunks
        );
    }
    Ok(())
}
