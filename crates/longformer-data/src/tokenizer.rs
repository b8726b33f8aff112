//! Loading the tokenizer and adding the WikiHop markers `[question] [/question] [ent] [/ent]`.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{DataError, RecordProblem};

/// The markers added to the vocabulary, in the order their ids are assigned.
pub const WIKIHOP_MARKERS: [&str; 4] = ["[question]", "[/question]", "[ent]", "[/ent]"];

/// Ids of the tokens the layout inserts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpecialIds {
    /// `<s>` (or `[CLS]`): first token of every chunk.
    pub start: u32,
    /// `</s>` (or `[SEP]`): around every support document.
    pub separator: u32,
    /// `<pad>` (or `[PAD]`): padding in batches.
    pub pad: u32,
    /// `[question]`.
    pub question: u32,
    /// `[/question]`.
    pub question_end: u32,
    /// `[ent]`: its positions are the `predicted_indices`.
    pub entity: u32,
    /// `[/ent]`.
    pub entity_end: u32,
}

/// A Hugging Face tokenizer with the WikiHop markers added.
#[derive(Debug, Clone)]
pub struct WikiHopTokenizer {
    tokenizer: Tokenizer,
    special: SpecialIds,
    added: usize,
    source: PathBuf,
}

impl WikiHopTokenizer {
    /// Loads `dir/tokenizer.json`, or else the RoBERTa pair `dir/vocab.json` + `dir/merges.txt`
    /// (byte-level BPE); `dir` may also be the path of a `tokenizer.json` file itself.
    pub fn from_dir(dir: &Path) -> Result<Self, DataError> {
        let tokenizer_json = if dir.is_file() {
            dir.to_path_buf()
        } else {
            dir.join("tokenizer.json")
        };
        let (vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
        let tokenizer = if tokenizer_json.is_file() {
            Tokenizer::from_file(&tokenizer_json).map_err(|e| DataError::Tokenizer {
                path: tokenizer_json.clone(),
                reason: e.to_string(),
            })?
        } else if vocab.is_file() && merges.is_file() {
            roberta_from_vocab_merges(&vocab, &merges)?
        } else {
            return Err(DataError::TokenizerNotFound {
                dir: dir.to_path_buf(),
            });
        };
        Self::new(tokenizer, dir)
    }

    /// Wraps an already built tokenizer; `source` is only used in messages.
    pub fn new(mut tokenizer: Tokenizer, source: &Path) -> Result<Self, DataError> {
        let path = source.to_path_buf();
        // Segments are laid out by hand: no truncation or padding inside the tokenizer.
        tokenizer
            .with_truncation(None)
            .map_err(|e| DataError::Tokenizer {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        tokenizer.with_padding(None);
        let before = tokenizer.get_vocab_size(true);
        let markers: Vec<AddedToken> = WIKIHOP_MARKERS
            .iter()
            .map(|m| AddedToken::from(*m, true))
            .collect();
        tokenizer.add_special_tokens(&markers);
        let added = tokenizer.get_vocab_size(true) - before;
        let find = |role: &'static str, names: &[&'static str]| {
            names
                .iter()
                .find_map(|name| tokenizer.token_to_id(name))
                .ok_or_else(|| DataError::MissingSpecialToken {
                    path: path.clone(),
                    role,
                    looked_for: names.to_vec(),
                })
        };
        let special = SpecialIds {
            start: find("start", &["<s>", "[CLS]"])?,
            separator: find("separator", &["</s>", "[SEP]"])?,
            pad: find("padding", &["<pad>", "[PAD]"])?,
            question: find("question", &["[question]"])?,
            question_end: find("question end", &["[/question]"])?,
            entity: find("entity", &["[ent]"])?,
            entity_end: find("entity end", &["[/ent]"])?,
        };
        Ok(Self {
            tokenizer,
            special,
            added,
            source: path,
        })
    }

    /// Vocabulary size including the added markers: the rows the word embeddings need.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// How many of the four markers were new to the tokenizer (0 to 4).
    pub fn added_tokens(&self) -> usize {
        self.added
    }

    /// Ids of the tokens the layout inserts.
    pub fn special(&self) -> &SpecialIds {
        &self.special
    }

    /// The padding id.
    pub fn pad_id(&self) -> u32 {
        self.special.pad
    }

    /// Where the tokenizer was loaded from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The underlying Hugging Face tokenizer (markers included).
    pub fn inner(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Token ids of one piece of text, without special tokens. A space is prepended,
    /// as the Longformer preprocessing does (`add_prefix_space=True`), so a word is
    /// tokenized the same whether it starts a segment or not.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, RecordProblem> {
        let spaced = format!(" {text}");
        self.tokenizer
            .encode_fast(spaced.as_str(), false)
            .map(|encoding| encoding.get_ids().to_vec())
            .map_err(|e| RecordProblem::Tokenize(e.to_string()))
    }

    /// The tokens of `ids`, for tests and debugging.
    pub fn tokens(&self, ids: &[u32]) -> Vec<String> {
        ids.iter()
            .map(|id| {
                self.tokenizer
                    .id_to_token(*id)
                    .unwrap_or_else(|| format!("<{id}?>"))
            })
            .collect()
    }

    /// SHA-256 (hex) of the tokenizer's JSON form, markers included: part of the cache key.
    pub fn fingerprint(&self) -> Result<String, DataError> {
        let json = self
            .tokenizer
            .to_string(false)
            .map_err(|e| DataError::Tokenizer {
                path: self.source.clone(),
                reason: e.to_string(),
            })?;
        Ok(hex(&Sha256::digest(json.as_bytes())))
    }
}

/// A RoBERTa byte-level BPE tokenizer from `vocab.json` + `merges.txt`.
fn roberta_from_vocab_merges(vocab: &Path, merges: &Path) -> Result<Tokenizer, DataError> {
    let bpe = BPE::from_file(&vocab.to_string_lossy(), &merges.to_string_lossy())
        .build()
        .map_err(|e| DataError::Tokenizer {
            path: vocab.to_path_buf(),
            reason: e.to_string(),
        })?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(true, true, true)));
    tokenizer.with_decoder(Some(ByteLevel::new(true, true, true)));
    let specials: Vec<AddedToken> = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        .iter()
        .filter(|t| tokenizer.token_to_id(t).is_some())
        .map(|t| AddedToken::from(*t, true))
        .collect();
    tokenizer.add_special_tokens(&specials);
    Ok(tokenizer)
}

/// Lower-case hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{sample_tokenizer, sample_tokenizer_dir};

    #[test]
    fn loads_the_sample_tokenizer_and_adds_four_markers() {
        let tok = sample_tokenizer();
        assert_eq!(tok.added_tokens(), 4);
        let raw = Tokenizer::from_file(sample_tokenizer_dir().join("tokenizer.json")).unwrap();
        assert_eq!(tok.vocab_size(), raw.get_vocab_size(true) + 4);
        let s = tok.special();
        assert_eq!((s.start, s.pad, s.separator), (0, 1, 2));
        assert_eq!(
            tok.tokens(&[s.question, s.question_end, s.entity, s.entity_end]),
            WIKIHOP_MARKERS
        );
        // The markers are the last rows of the embedding table.
        assert_eq!(s.entity_end as usize, tok.vocab_size() - 1);
    }

    #[test]
    fn loading_twice_adds_nothing_new() {
        let tok = sample_tokenizer();
        let again = WikiHopTokenizer::new(tok.inner().clone(), Path::new("x")).unwrap();
        assert_eq!(again.added_tokens(), 0);
        assert_eq!(again.special(), tok.special());
    }

    #[test]
    fn loads_a_vocab_merges_pair() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("vocab.json"),
            r#"{"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "Ġ": 4, "a": 5, "b": 6, "Ġa": 7, "Ġab": 8, "<mask>": 9}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("merges.txt"), "#version: 0.2\nĠ a\nĠa b\n").unwrap();
        let tok = WikiHopTokenizer::from_dir(dir.path()).unwrap();
        assert_eq!(tok.vocab_size(), 14);
        assert_eq!(tok.encode("ab").unwrap(), vec![8]);
        assert_eq!(tok.special().entity, 12);
    }

    #[test]
    fn missing_tokenizer_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = WikiHopTokenizer::from_dir(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::TokenizerNotFound { .. }), "{err}");
        std::fs::write(dir.path().join("tokenizer.json"), "{ not json").unwrap();
        let err = WikiHopTokenizer::from_dir(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::Tokenizer { .. }), "{err}");
    }

    #[test]
    fn a_segment_is_tokenized_as_if_it_followed_a_space() {
        let tok = sample_tokenizer();
        let alone = tok.encode("born in").unwrap();
        let inside = tok.encode("kessa born in").unwrap();
        assert!(inside.ends_with(&alone), "{alone:?} vs {inside:?}");
        assert_eq!(tok.tokens(&alone), ["Ġborn", "Ġin"]);
    }
}
