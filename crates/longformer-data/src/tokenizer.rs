//! Loading a model directory's tokenizer as HF does: as is for plain text ([`TextTokenizer`]),
//! or with the WikiHop markers `[question] [/question] [ent] [/ent]` added ([`WikiHopTokenizer`]).

use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use crate::bundled::{SAMPLE_DIR, missing_sample};
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
    /// Loads the tokenizer of `dir` as HF does (see [`load_tokenizer`]) and adds the markers;
    /// `dir` may also be the path of a `tokenizer.json` file itself.
    pub fn from_dir(dir: &Path) -> Result<Self, DataError> {
        Self::new(load_tokenizer(dir)?, dir)
    }

    /// Wraps an already built tokenizer (e.g. from [`crate::train_tokenizer`]) and adds the
    /// markers; `source` is only used in messages. Its padding and truncation are turned off:
    /// the layout places and cuts segments itself.
    pub fn new(tokenizer: Tokenizer, source: &Path) -> Result<Self, DataError> {
        let path = source.to_path_buf();
        // Segments are laid out by hand: no truncation or padding inside the tokenizer.
        let mut tokenizer = without_truncation_or_padding(tokenizer, source)?;
        let before = tokenizer.get_vocab_size(true);
        let markers: Vec<AddedToken> = WIKIHOP_MARKERS
            .iter()
            .map(|m| AddedToken::from(*m, true))
            .collect();
        tokenizer.add_special_tokens(&markers);
        let added = tokenizer.get_vocab_size(true) - before;
        let find = |role, names: &[&'static str]| special_id(&tokenizer, &path, role, names);
        let special = SpecialIds {
            start: find("start", START)?,
            separator: find("separator", SEPARATOR)?,
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

    /// Vocabulary size including the added markers: the rows the word embeddings need, the
    /// largest id plus one (a `tokenizer.json` may leave ids unused, so not the count of tokens).
    pub fn vocab_size(&self) -> usize {
        self.tokenizer
            .get_vocab(true)
            .into_values()
            .max()
            .map_or(0, |largest| largest as usize + 1)
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
    /// tokenized the same whether it starts a segment or not, whatever the tokenizer's own
    /// `add_prefix_space`.
    ///
    /// As in that preprocessing, empty text has no tokens (no lone space token), and the text of
    /// a special token or marker, e.g. `</s>` or `[ent]`, becomes that token (HF's tokenizers
    /// split special and added tokens out of any text).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, RecordProblem> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
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

/// A model directory's tokenizer as HF loads it, without the WikiHop markers: plain text in,
/// HF's `tokenizer(text)["input_ids"]` out (`longformer encode --text`).
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    tokenizer: Tokenizer,
    start: u32,
    separator: u32,
    source: PathBuf,
}

impl TextTokenizer {
    /// Loads the tokenizer of `dir` as HF does (see [`load_tokenizer`]); `dir` may also be the
    /// path of a `tokenizer.json` file itself.
    pub fn from_dir(dir: &Path) -> Result<Self, DataError> {
        Self::new(load_tokenizer(dir)?, dir)
    }

    /// Wraps an already built tokenizer; `source` is only used in messages.
    ///
    /// Padding and truncation set in the tokenizer (a `tokenizer.json`'s `"padding"` and
    /// `"truncation"`) are turned off, as HF's `tokenizer(text)` does when not asked for them:
    /// [`encode`](Self::encode) gives every token of the text, and no padding.
    pub fn new(tokenizer: Tokenizer, source: &Path) -> Result<Self, DataError> {
        let tokenizer = without_truncation_or_padding(tokenizer, source)?;
        let find = |role, names: &[&'static str]| special_id(&tokenizer, source, role, names);
        Ok(Self {
            start: find("start", START)?,
            separator: find("separator", SEPARATOR)?,
            tokenizer,
            source: source.to_path_buf(),
        })
    }

    /// `<s> text </s>` (or `[CLS] text [SEP]`) as ids, as HF's tokenizer gives them for one
    /// sequence: the text as typed (HF's `add_prefix_space` applies), special-token text
    /// such as `<mask>` becoming that token.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, DataError> {
        let encoding =
            self.tokenizer
                .encode_fast(text, false)
                .map_err(|e| DataError::Tokenizer {
                    path: self.source.clone(),
                    reason: e.to_string(),
                })?;
        let mut ids = Vec::with_capacity(encoding.len() + 2);
        ids.push(self.start);
        ids.extend_from_slice(encoding.get_ids());
        ids.push(self.separator);
        Ok(ids)
    }

    /// The id of `token`, if the tokenizer has it.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.tokenizer.token_to_id(token)
    }

    /// The text of one token (`" paris"` rather than the byte-level `"Ġparis"`).
    pub fn token_text(&self, id: u32) -> String {
        self.tokenizer
            .decode(&[id], false)
            .ok()
            .or_else(|| self.tokenizer.id_to_token(id))
            .unwrap_or_else(|| format!("<{id}?>"))
    }

    /// The text of a run of ids, special tokens included, as HF's `tokenizer.decode(ids)` gives
    /// it; ids the tokenizer does not know are shown as `<id?>`.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.tokenizer
            .decode(ids, false)
            .unwrap_or_else(|_| ids.iter().map(|&id| self.token_text(id)).collect())
    }

    /// Where the tokenizer was loaded from.
    pub fn source(&self) -> &Path {
        &self.source
    }
}

/// `tokenizer` with its truncation and padding turned off (`source` names it in messages).
fn without_truncation_or_padding(
    mut tokenizer: Tokenizer,
    source: &Path,
) -> Result<Tokenizer, DataError> {
    tokenizer
        .with_truncation(None)
        .map_err(|e| DataError::Tokenizer {
            path: source.to_path_buf(),
            reason: e.to_string(),
        })?;
    tokenizer.with_padding(None);
    Ok(tokenizer)
}

/// The spellings of the first token of a sequence.
const START: &[&str] = &["<s>", "[CLS]"];
/// The spellings of the token that ends a sequence.
const SEPARATOR: &[&str] = &["</s>", "[SEP]"];

/// The id of the first of `names` that `tokenizer` has.
fn special_id(
    tokenizer: &Tokenizer,
    source: &Path,
    role: &'static str,
    names: &[&'static str],
) -> Result<u32, DataError> {
    names
        .iter()
        .find_map(|name| tokenizer.token_to_id(name))
        .ok_or_else(|| DataError::MissingSpecialToken {
            path: source.to_path_buf(),
            role,
            looked_for: names.to_vec(),
        })
}

/// HF's tokenizer classes that are RoBERTa's byte-level BPE (Longformer's tokenizer).
const ROBERTA_CLASSES: [&str; 4] = [
    "RobertaTokenizer",
    "RobertaTokenizerFast",
    "LongformerTokenizer",
    "LongformerTokenizerFast",
];

/// Loads the tokenizer of `dir` as HF's `AutoTokenizer.from_pretrained(dir)` builds it:
///
/// - `dir/tokenizer.json` as written, except for RoBERTa's tokenizer class (Longformer's), which
///   sets the byte-level pre-tokenizer's `add_prefix_space` from `tokenizer_config.json`, `false`
///   when absent, whatever the file says. HF takes the class from `tokenizer_config.json`'s
///   `tokenizer_class`, or else from `config.json`'s `model_type` (`longformer` and `roberta`
///   mean RoBERTa's);
/// - or else the RoBERTa pair `dir/vocab.json` + `dir/merges.txt`, built as that class builds
///   it (byte-level BPE, `add_prefix_space` as above).
///
/// `dir` may also be the path of a `tokenizer.json` file, taken as written.
pub fn load_tokenizer(dir: &Path) -> Result<Tokenizer, DataError> {
    if dir.is_file() {
        return tokenizer_from_file(dir);
    }
    // A missing directory is named as such, not by the first file looked for inside it.
    if !has_tokenizer_files(dir) {
        return Err(missing_sample(Path::new(SAMPLE_DIR), dir).unwrap_or(
            DataError::TokenizerNotFound {
                dir: dir.to_path_buf(),
            },
        ));
    }
    let tokenizer_json = dir.join("tokenizer.json");
    let (vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
    let tokenizer_config = read_json(&dir.join("tokenizer_config.json"))?;
    let add_prefix_space = tokenizer_config["add_prefix_space"]
        .as_bool()
        .unwrap_or(false);
    if tokenizer_json.is_file() {
        let mut tokenizer = tokenizer_from_file(&tokenizer_json)?;
        let roberta = match tokenizer_config["tokenizer_class"].as_str() {
            Some(class) => ROBERTA_CLASSES.contains(&class),
            None => {
                let model_config = read_json(&dir.join("config.json"))?;
                matches!(
                    model_config["model_type"].as_str(),
                    Some("longformer" | "roberta")
                )
            }
        };
        if roberta
            && let Some(PreTokenizerWrapper::ByteLevel(byte_level)) = tokenizer.get_pre_tokenizer()
        {
            let byte_level = byte_level.add_prefix_space(add_prefix_space);
            tokenizer.with_pre_tokenizer(Some(byte_level));
        }
        Ok(tokenizer)
    } else {
        roberta_from_vocab_merges(&vocab, &merges, add_prefix_space)
    }
}

/// Whether directory `dir` holds the files [`load_tokenizer`] reads: `tokenizer.json`, or
/// `vocab.json` with `merges.txt`.
pub fn has_tokenizer_files(dir: &Path) -> bool {
    dir.join("tokenizer.json").is_file()
        || (dir.join("vocab.json").is_file() && dir.join("merges.txt").is_file())
}

fn tokenizer_from_file(path: &Path) -> Result<Tokenizer, DataError> {
    Tokenizer::from_file(path).map_err(|e| DataError::Tokenizer {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The JSON in `path`, or `Value::Null` when there is no such file.
fn read_json(path: &Path) -> Result<Value, DataError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Value::Null),
        Err(source) => {
            return Err(DataError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| DataError::Tokenizer {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// A RoBERTa byte-level BPE tokenizer from `vocab.json` + `merges.txt`, as HF's
/// `RobertaTokenizer` builds it.
fn roberta_from_vocab_merges(
    vocab: &Path,
    merges: &Path,
    add_prefix_space: bool,
) -> Result<Tokenizer, DataError> {
    let bpe = BPE::from_file(&vocab.to_string_lossy(), &merges.to_string_lossy())
        .build()
        .map_err(|e| DataError::Tokenizer {
            path: vocab.to_path_buf(),
            reason: e.to_string(),
        })?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(
        ByteLevel::default().add_prefix_space(add_prefix_space),
    ));
    tokenizer.with_decoder(Some(ByteLevel::default()));
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
    use tokenizers::Model;

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

    /// A directory with a ten-token RoBERTa pair (`vocab.json` + `merges.txt`) in which " ab"
    /// has id `ab_id`, and its tokenizer.
    fn tiny_bpe(ab_id: u32) -> (tempfile::TempDir, WikiHopTokenizer) {
        let dir = tempfile::tempdir().unwrap();
        let vocab = format!(
            r#"{{"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "Ġ": 4, "a": 5, "b": 6, "Ġa": 7, "Ġab": {ab_id}, "<mask>": 9}}"#
        );
        std::fs::write(dir.path().join("vocab.json"), vocab).unwrap();
        std::fs::write(dir.path().join("merges.txt"), "#version: 0.2\nĠ a\nĠa b\n").unwrap();
        let tok = WikiHopTokenizer::from_dir(dir.path()).unwrap();
        (dir, tok)
    }

    #[test]
    fn loads_a_vocab_merges_pair() {
        let (_dir, tok) = tiny_bpe(8);
        assert_eq!(tok.vocab_size(), 14);
        assert_eq!(tok.encode("ab").unwrap(), vec![8]);
        assert_eq!(tok.special().entity, 12);
    }

    #[test]
    fn tokenizer_files_are_tokenizer_json_or_the_vocab_merges_pair() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!has_tokenizer_files(dir.path()));
        std::fs::write(dir.path().join("vocab.json"), "{}").unwrap();
        assert!(!has_tokenizer_files(dir.path()), "vocab.json alone");
        std::fs::write(dir.path().join("merges.txt"), "").unwrap();
        assert!(has_tokenizer_files(dir.path()));
        assert!(has_tokenizer_files(&sample_tokenizer_dir()));
    }

    /// A vocabulary with unused ids: the embedding needs a row for its largest id, not one per
    /// token.
    #[test]
    fn vocab_size_covers_the_largest_id() {
        let (_dir, tok) = tiny_bpe(30);
        assert_eq!(tok.encode("ab").unwrap(), vec![30]);
        let largest = tok.inner().get_vocab(true).into_values().max().unwrap();
        assert!(largest >= 30);
        assert_eq!(tok.vocab_size(), largest as usize + 1);
    }

    /// A directory with the sample tokenizer as `tokenizer.json` (`json`) or as `vocab.json` +
    /// `merges.txt`, and the `files` given as (name, contents).
    fn sample_as(json: bool, files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let source = sample_tokenizer_dir().join("tokenizer.json");
        if json {
            std::fs::copy(&source, dir.path().join("tokenizer.json")).unwrap();
        } else {
            let tokenizer = Tokenizer::from_file(&source).unwrap();
            tokenizer.get_model().save(dir.path(), None).unwrap();
        }
        for (name, contents) in files {
            std::fs::write(dir.path().join(name), contents).unwrap();
        }
        dir
    }

    const LONGFORMER: (&str, &str) = ("config.json", r#"{"model_type": "longformer"}"#);
    const PREFIX_SPACE: (&str, &str) = ("tokenizer_config.json", r#"{"add_prefix_space": true}"#);
    const LONGFORMER_CLASS: (&str, &str) = (
        "tokenizer_config.json",
        r#"{"tokenizer_class": "LongformerTokenizerFast"}"#,
    );
    const GENERIC_CLASS: (&str, &str) = (
        "tokenizer_config.json",
        r#"{"tokenizer_class": "PreTrainedTokenizerFast"}"#,
    );

    /// Text with and without leading spaces, non-ASCII, `<mask>`, nothing, and WikiHop markers.
    const TEXTS: [&str; 6] = [
        "Hello world",
        "  two leading",
        "café Zürich 東京 🙂",
        "x <mask> y",
        "",
        "a [ent] b [/question]",
    ];

    /// HF's `AutoTokenizer.from_pretrained(dir)(text)["input_ids"]` (transformers 5.24) for
    /// [`TEXTS`], `dir` holding the sample tokenizer and a Longformer `config.json`: RoBERTa's
    /// class, which has no prefix space whatever `tokenizer.json` says. The markers are plain
    /// text to it.
    const HF_IDS: [&[u32]; 6] = [
        &[0, 44, 335, 80, 83, 285, 264, 80, 72, 2],
        &[0, 225, 265, 91, 83, 784, 435, 303, 75, 2],
        &[
            0, 71, 514, 132, 107, 225, 62, 132, 125, 287, 71, 76, 225, 167, 256, 114, 165, 123,
            110, 225, 177, 258, 252, 229, 2,
        ],
        &[0, 92, 225, 4, 225, 93, 2],
        &[0, 2],
        &[
            0, 69, 225, 63, 316, 88, 65, 270, 225, 63, 19, 85, 89, 589, 396, 65, 2,
        ],
    ];

    /// The same with `"add_prefix_space": true` in `tokenizer_config.json`, or for
    /// `tokenizer.json` alone or with another `tokenizer_class` (HF then uses the file as
    /// written, and the sample's says `true`).
    const HF_IDS_PREFIX_SPACE: [&[u32]; 6] = [
        &[0, 225, 44, 335, 80, 83, 285, 264, 80, 72, 2],
        &[0, 225, 265, 91, 83, 784, 435, 303, 75, 2],
        &[
            0, 280, 514, 132, 107, 225, 62, 132, 125, 287, 71, 76, 225, 167, 256, 114, 165, 123,
            110, 225, 177, 258, 252, 229, 2,
        ],
        &[0, 225, 92, 225, 4, 225, 93, 2],
        &[0, 2],
        &[
            0, 271, 225, 63, 316, 88, 65, 270, 225, 63, 19, 85, 89, 589, 396, 65, 2,
        ],
    ];

    #[test]
    fn plain_text_is_tokenized_as_hf_does() {
        for (json, files, expected) in [
            (true, &[LONGFORMER][..], HF_IDS),
            (true, &[LONGFORMER_CLASS], HF_IDS),
            (false, &[LONGFORMER], HF_IDS),
            // No class given: HF cannot load it, and RoBERTa's is the only one built here.
            (false, &[], HF_IDS),
            (true, &[LONGFORMER, PREFIX_SPACE], HF_IDS_PREFIX_SPACE),
            (false, &[LONGFORMER, PREFIX_SPACE], HF_IDS_PREFIX_SPACE),
            (true, &[], HF_IDS_PREFIX_SPACE),
            (true, &[LONGFORMER, GENERIC_CLASS], HF_IDS_PREFIX_SPACE),
        ] {
            let dir = sample_as(json, files);
            let tok = TextTokenizer::from_dir(dir.path()).unwrap();
            for (text, ids) in TEXTS.iter().zip(expected) {
                assert_eq!(tok.encode(text).unwrap(), ids, "{text:?}, {json} {files:?}");
            }
        }
    }

    #[test]
    fn the_wikihop_layout_adds_its_own_prefix_space() {
        let dir = sample_as(false, &[LONGFORMER]);
        let tok = WikiHopTokenizer::from_dir(dir.path()).unwrap();
        for text in TEXTS {
            assert_eq!(
                tok.encode(text),
                sample_tokenizer().encode(text),
                "{text:?}"
            );
        }
    }

    #[test]
    fn missing_tokenizer_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = WikiHopTokenizer::from_dir(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::TokenizerNotFound { .. }), "{err}");
        // A directory that does not exist is named, not the first file looked for in it.
        let gone = dir.path().join("moved-away");
        let err = WikiHopTokenizer::from_dir(&gone).unwrap_err();
        assert!(
            matches!(&err, DataError::TokenizerNotFound { dir } if dir == &gone),
            "{err}"
        );
        std::fs::write(dir.path().join("tokenizer.json"), "{ not json").unwrap();
        let err = WikiHopTokenizer::from_dir(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::Tokenizer { .. }), "{err}");
    }

    #[test]
    fn empty_text_has_no_tokens() {
        assert_eq!(sample_tokenizer().encode(""), Ok(vec![]));
    }

    #[test]
    fn special_token_text_becomes_the_token_as_in_the_original_preprocessing() {
        let tok = sample_tokenizer();
        let s = tok.special();
        let ids = tok.encode("see [ent] and </s> here").unwrap();
        assert!(
            ids.contains(&s.entity) && ids.contains(&s.separator),
            "{ids:?}"
        );
    }

    #[test]
    fn a_segment_is_tokenized_as_if_it_followed_a_space() {
        let tok = sample_tokenizer();
        let alone = tok.encode("born in").unwrap();
        let inside = tok.encode("kessa born in").unwrap();
        assert!(inside.ends_with(&alone), "{alone:?} vs {inside:?}");
        assert_eq!(tok.tokens(&alone), ["Ġborn", "Ġin"]);
    }

    /// A `tokenizer.json` that pads to 12 tokens and truncates to 6 (as some exported
    /// tokenizers do): HF's `tokenizer(text)` turns both off unless asked, and so do we.
    #[test]
    fn padding_and_truncation_in_tokenizer_json_are_ignored() {
        let source = sample_tokenizer_dir().join("tokenizer.json");
        let mut json: Value = serde_json::from_slice(&std::fs::read(source).unwrap()).unwrap();
        json["padding"] = serde_json::json!({"strategy": {"Fixed": 12}, "direction": "Right",
            "pad_to_multiple_of": null, "pad_id": 1, "pad_type_id": 0, "pad_token": "<pad>"});
        json["truncation"] = serde_json::json!({"direction": "Right", "max_length": 6,
            "strategy": "LongestFirst", "stride": 0});
        let dir = sample_as(true, &[LONGFORMER]);
        std::fs::write(dir.path().join("tokenizer.json"), json.to_string()).unwrap();
        let tok = TextTokenizer::from_dir(dir.path()).unwrap();
        let plain = TextTokenizer::from_dir(sample_as(true, &[LONGFORMER]).path()).unwrap();
        for text in ["hi", "a sentence of more than six tokens, and then some"] {
            let ids = tok.encode(text).unwrap();
            assert_eq!(ids, plain.encode(text).unwrap(), "{text:?}");
            assert!(!ids.contains(&1), "no padding: {ids:?}");
        }
        let wikihop = WikiHopTokenizer::from_dir(dir.path()).unwrap();
        let text = "a sentence of more than six tokens";
        assert_eq!(wikihop.encode(text), sample_tokenizer().encode(text));
    }

    #[test]
    fn a_text_tokenizer_wraps_a_tokenizer_built_in_memory() {
        let raw = Tokenizer::from_file(sample_tokenizer_dir().join("tokenizer.json")).unwrap();
        let tok = TextTokenizer::new(raw, Path::new("memory")).unwrap();
        assert_eq!(tok.source(), Path::new("memory"));
        let ids = tok.encode("kessa").unwrap();
        assert_eq!((ids[0], *ids.last().unwrap()), (0, 2));
    }
}
