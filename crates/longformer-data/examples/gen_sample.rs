//! Regenerates the bundled sample set (deterministic):
//!
//! ```text
//! cargo run -p longformer-data --example gen_sample -- [--out data/wikihop-sample]
//!     [--train 3000] [--dev 300] [--vocab 2048] [--max-filler 8] [--noise 1]
//!     [--min-candidates 2] [--max-candidates 8] [--no-tokenizer]
//! ```
//!
//! Writes `train.json`, `dev.json` and (unless `--no-tokenizer`) `tokenizer/tokenizer.json`,
//! trained on the train split.

use std::path::PathBuf;

use longformer_data::{SampleConfig, generate, train_tokenizer, write_records};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut out = PathBuf::from(longformer_data::SAMPLE_DIR);
    let (mut train, mut dev) = (SampleConfig::train(), SampleConfig::dev());
    let mut vocab = 2048;
    let mut with_tokenizer = true;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value =
            || -> Result<String, String> { args.next().ok_or(format!("{flag} needs a value")) };
        match flag.as_str() {
            "--out" => out = PathBuf::from(value()?),
            "--train" => train.examples = value()?.parse()?,
            "--dev" => dev.examples = value()?.parse()?,
            "--vocab" => vocab = value()?.parse()?,
            "--max-filler" => {
                train.max_filler = value()?.parse()?;
                dev.max_filler = train.max_filler;
            }
            "--noise" => {
                train.noise_documents = value()?.parse()?;
                dev.noise_documents = train.noise_documents;
            }
            "--min-candidates" => {
                train.min_candidates = value()?.parse()?;
                dev.min_candidates = train.min_candidates;
            }
            "--max-candidates" => {
                train.max_candidates = value()?.parse()?;
                dev.max_candidates = train.max_candidates;
            }
            "--no-tokenizer" => with_tokenizer = false,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let train_records = generate(&train);
    write_records(&train_records, &out.join("train.json"))?;
    write_records(&generate(&dev), &out.join("dev.json"))?;
    eprintln!(
        "wrote {} train and {} dev records to {}",
        train.examples,
        dev.examples,
        out.display()
    );
    if with_tokenizer {
        let tokenizer = train_tokenizer(&train_records, vocab)?;
        let dir = out.join("tokenizer");
        std::fs::create_dir_all(&dir)?;
        tokenizer
            .save(dir.join("tokenizer.json"), false)
            .map_err(|e| e.to_string())?;
        eprintln!(
            "wrote {} (vocabulary {})",
            dir.join("tokenizer.json").display(),
            tokenizer.get_vocab_size(true)
        );
    }
    Ok(())
}
