//! Shared test helpers: the committed sample set and its tokenizer.

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::tokenizer::WikiHopTokenizer;

/// `data/wikihop-sample` at the repository root.
///
/// Found from the run-time `CARGO_MANIFEST_DIR` that `cargo test` sets, not the compile-time
/// [`crate::SAMPLE_DIR`]: a test binary reused from a build of another checkout (a shared
/// target directory) still reads this checkout's sample.
pub(crate) fn sample_data_dir() -> PathBuf {
    match std::env::var_os("CARGO_MANIFEST_DIR") {
        Some(dir) => PathBuf::from(dir).join("../../data/wikihop-sample"),
        None => PathBuf::from(crate::SAMPLE_DIR),
    }
}

/// The committed sample tokenizer's directory.
pub(crate) fn sample_tokenizer_dir() -> PathBuf {
    sample_data_dir().join("tokenizer")
}

/// The committed sample tokenizer, loaded once.
pub(crate) fn sample_tokenizer() -> WikiHopTokenizer {
    static TOKENIZER: OnceLock<WikiHopTokenizer> = OnceLock::new();
    TOKENIZER
        .get_or_init(|| {
            WikiHopTokenizer::from_dir(&sample_tokenizer_dir()).expect("sample tokenizer")
        })
        .clone()
}
