//! Shared test helpers: the committed sample set and its tokenizer.

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::tokenizer::WikiHopTokenizer;

/// The committed sample tokenizer's directory.
pub(crate) fn sample_tokenizer_dir() -> PathBuf {
    crate::sample_dir().join("tokenizer")
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
