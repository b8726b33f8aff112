//! Shared test helpers: the committed sample set and its tokenizer.

use std::path::{Path, PathBuf};
use std::str::FromStr;
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

/// A lossy BERT-style tokenizer (`[CLS]`, `[SEP]`, `[PAD]`; WordPiece over `a`, `b`, `cafe`, `x`
/// and `[UNK]`) whose normalizer lower-cases and strips accents: `café` and `cafe` have the same
/// tokens, a lone combining accent none, and every unknown word is `[UNK]`.
pub(crate) fn lossy_tokenizer() -> WikiHopTokenizer {
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
            "strip_accents": true, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100,
            "vocab": {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "[PAD]": 3, "a": 4, "b": 5, "cafe": 6,
                "x": 7, "r": 8}}
    });
    let tokenizer = tokenizers::Tokenizer::from_str(&json.to_string()).expect("a valid tokenizer");
    WikiHopTokenizer::new(tokenizer, Path::new("lossy")).expect("has [CLS], [SEP] and [PAD]")
}
