//! The Longformer WikiHop layout (Beltagy et al., 2020, §6.2 and appendix):
//!
//! ```text
//! candidate part: <s> [question] q [/question] [ent] c1 [/ent] [ent] c2 [/ent] ...
//! support part:   </s> d1 </s> </s> d2 </s> ... </s> dM </s>
//! ```
//!
//! Global attention covers the whole candidate part; `predicted_indices` are the
//! positions of every `[ent]`. An example longer than `max_len` is cut into chunks:
//! the support part is split into consecutive pieces of `max_len - candidate_len`
//! tokens, each prefixed with the candidate part, so every support token appears in
//! exactly one chunk (`truncate` keeps only the first piece).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::RecordProblem;
use crate::rng::SplitMix64;
use crate::tokenizer::{SpecialIds, WikiHopTokenizer};
use crate::wikihop::WikiHopExample;

/// The model's default maximum sequence length.
pub const DEFAULT_MAX_LEN: usize = 4096;

/// How examples become chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LayoutConfig {
    /// Longest chunk in tokens ([`DEFAULT_MAX_LEN`] by default).
    pub max_len: usize,
    /// Keep only the first chunk of long examples.
    pub truncate: bool,
}

impl Default for LayoutConfig {
    fn default() -> Self {
        Self {
            max_len: DEFAULT_MAX_LEN,
            truncate: false,
        }
    }
}

/// An example as token ids: query, candidates and supports tokenized separately.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedExample {
    /// The record's `id`.
    pub id: String,
    /// Query tokens.
    pub query: Vec<u32>,
    /// Tokens of each candidate.
    pub candidates: Vec<Vec<u32>>,
    /// Tokens of each support document.
    pub supports: Vec<Vec<u32>>,
    /// Index of the answer in `candidates`.
    pub answer_index: usize,
}

impl TokenizedExample {
    /// Tokenizes a checked example.
    ///
    /// Fails with [`RecordProblem::NoTokens`] when the query or a candidate has no tokens, and
    /// with [`RecordProblem::SameTokens`] when two candidates have the same tokens: a lossy
    /// tokenizer (one that strips accents, or maps unknown characters to one token) can do
    /// both to texts [`check_record`](crate::wikihop::check_record) accepts, and the model
    /// could not tell such candidates apart. RoBERTa's byte-level BPE does neither.
    pub fn new(
        example: &WikiHopExample,
        tokenizer: &WikiHopTokenizer,
    ) -> Result<Self, RecordProblem> {
        let encode_all = |texts: &[String]| -> Result<Vec<Vec<u32>>, RecordProblem> {
            texts.iter().map(|t| tokenizer.encode(t)).collect()
        };
        let tokenized = Self {
            id: example.id.clone(),
            query: tokenizer.encode(&example.query)?,
            candidates: encode_all(&example.candidates)?,
            supports: encode_all(&example.supports)?,
            answer_index: example.answer_index,
        };
        tokenized.check_tokens()?;
        Ok(tokenized)
    }

    /// The query and every candidate have tokens, and no two candidates the same ones.
    fn check_tokens(&self) -> Result<(), RecordProblem> {
        let no_tokens = |field: String| Err(RecordProblem::NoTokens { field });
        if self.query.is_empty() {
            return no_tokens("query".to_owned());
        }
        if let Some(i) = self.candidates.iter().position(Vec::is_empty) {
            return no_tokens(format!("candidates[{i}]"));
        }
        let mut first_with = HashMap::with_capacity(self.candidates.len());
        for (second, tokens) in self.candidates.iter().enumerate() {
            if let Some(&first) = first_with.get(tokens.as_slice()) {
                return Err(RecordProblem::SameTokens { first, second });
            }
            first_with.insert(tokens.as_slice(), second);
        }
        Ok(())
    }

    /// What [`layout`] needs of an example: candidates, supports, and an `answer_index` among
    /// the candidates (a hand-built example may lack them).
    fn check_shape(&self) -> Result<(), RecordProblem> {
        if self.candidates.is_empty() {
            return Err(RecordProblem::EmptyCandidates);
        }
        if self.supports.is_empty() {
            return Err(RecordProblem::EmptySupports);
        }
        if self.answer_index >= self.candidates.len() {
            return Err(RecordProblem::AnswerIndexOutOfRange {
                answer_index: self.answer_index,
                candidates: self.candidates.len(),
            });
        }
        Ok(())
    }

    /// Shuffles candidates and supports with a stream seeded by `(seed, id)`, so the
    /// result does not depend on processing order; `answer_index` follows the answer.
    pub fn shuffle(&mut self, seed: u64) {
        let mut rng = SplitMix64::for_key(seed, &self.id);
        let order = rng.permutation(self.candidates.len());
        let answer = self.answer_index;
        let mut candidates = Vec::with_capacity(order.len());
        for (new_index, &old_index) in order.iter().enumerate() {
            if old_index == answer {
                self.answer_index = new_index;
            }
            candidates.push(std::mem::take(&mut self.candidates[old_index]));
        }
        self.candidates = candidates;
        rng.shuffle(&mut self.supports);
    }
}

/// One model input: the candidate part followed by one piece of the support part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WikiHopChunk {
    /// The example's `id` (shared by all its chunks).
    pub id: String,
    /// Position of this chunk in its example (0-based).
    pub chunk: usize,
    /// Chunks of the example (after `truncate`).
    pub num_chunks: usize,
    /// Token ids, `[seq_length]`, `seq_length <= max_len`.
    pub input_ids: Vec<u32>,
    /// Length of the candidate part: tokens `0..global_len` get global attention.
    pub global_len: usize,
    /// Positions of the `[ent]` tokens, one per candidate, in candidate order.
    pub predicted_indices: Vec<u32>,
    /// Index of the answer among the candidates.
    pub answer_index: usize,
}

impl WikiHopChunk {
    /// `1` on the candidate part, `0` on supports: `[seq_length]`.
    pub fn global_attention_mask(&self) -> Vec<u8> {
        (0..self.input_ids.len())
            .map(|i| u8::from(i < self.global_len))
            .collect()
    }

    /// The chunk as one JSON line: `{"id","chunk","input_ids","global_attention_mask",
    /// "predicted_indices","answer_index"}` (no trailing newline).
    pub fn to_json_line(&self) -> String {
        /// The JSONL record, fields in the documented order.
        #[derive(Serialize)]
        struct Line<'a> {
            id: &'a str,
            chunk: usize,
            input_ids: &'a [u32],
            global_attention_mask: Vec<u8>,
            predicted_indices: &'a [u32],
            answer_index: usize,
        }
        serde_json::to_string(&Line {
            id: &self.id,
            chunk: self.chunk,
            input_ids: &self.input_ids,
            global_attention_mask: self.global_attention_mask(),
            predicted_indices: &self.predicted_indices,
            answer_index: self.answer_index,
        })
        .expect("a struct of strings and integers always serializes")
    }
}

/// `<s> [question] q [/question] [ent] c1 [/ent] ...` and the positions of the `[ent]`s.
pub fn candidate_part(example: &TokenizedExample, ids: &SpecialIds) -> (Vec<u32>, Vec<u32>) {
    let mut part = vec![ids.start, ids.question];
    part.extend_from_slice(&example.query);
    part.push(ids.question_end);
    let mut entity_positions = Vec::with_capacity(example.candidates.len());
    for candidate in &example.candidates {
        entity_positions.push(part.len() as u32);
        part.push(ids.entity);
        part.extend_from_slice(candidate);
        part.push(ids.entity_end);
    }
    (part, entity_positions)
}

/// `</s> d1 </s> </s> d2 </s> ... </s> dM </s>`.
pub fn support_part(example: &TokenizedExample, ids: &SpecialIds) -> Vec<u32> {
    let total: usize = example.supports.iter().map(|s| s.len() + 2).sum();
    let mut part = Vec::with_capacity(total);
    for support in &example.supports {
        part.push(ids.separator);
        part.extend_from_slice(support);
        part.push(ids.separator);
    }
    part
}

/// Lays an example out as one or more chunks of at most `config.max_len` tokens.
///
/// Fails with [`RecordProblem::CandidatePartTooLong`] when the candidate part leaves
/// no room for supports, and, for a hand-built example, with
/// [`RecordProblem::EmptyCandidates`], [`RecordProblem::EmptySupports`] or
/// [`RecordProblem::AnswerIndexOutOfRange`] (an example with no supports would have no
/// chunk, one with no candidates nothing to predict).
pub fn layout(
    example: &TokenizedExample,
    ids: &SpecialIds,
    config: &LayoutConfig,
) -> Result<Vec<WikiHopChunk>, RecordProblem> {
    example.check_shape()?;
    let (candidates, predicted_indices) = candidate_part(example, ids);
    let supports = support_part(example, ids);
    let global_len = candidates.len();
    if global_len >= config.max_len {
        return Err(RecordProblem::CandidatePartTooLong {
            len: global_len,
            max_len: config.max_len,
        });
    }
    let room = config.max_len - global_len;
    let mut pieces: Vec<&[u32]> = supports.chunks(room).collect();
    if config.truncate {
        pieces.truncate(1);
    }
    let num_chunks = pieces.len();
    Ok(pieces
        .into_iter()
        .enumerate()
        .map(|(chunk, piece)| {
            let mut input_ids = Vec::with_capacity(global_len + piece.len());
            input_ids.extend_from_slice(&candidates);
            input_ids.extend_from_slice(piece);
            WikiHopChunk {
                id: example.id.clone(),
                chunk,
                num_chunks,
                input_ids,
                global_len,
                predicted_indices: predicted_indices.clone(),
                answer_index: example.answer_index,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{lossy_tokenizer, sample_tokenizer};
    use crate::wikihop::check_record;

    fn example(tok: &WikiHopTokenizer, supports: &[&str]) -> TokenizedExample {
        let record = serde_json::json!({
            "id": "hand_0",
            "query": "country_of_citizenship tomar velik",
            "answer": "oskavia",
            "candidates": ["belmoria", "oskavia"],
            "supports": supports,
        });
        TokenizedExample::new(&check_record(&record, 0).unwrap(), tok).unwrap()
    }

    fn text(tok: &WikiHopTokenizer, ids: &[u32]) -> String {
        tok.inner().decode(ids, false).unwrap()
    }

    #[test]
    fn layout_tokens_and_predicted_indices() {
        let tok = sample_tokenizer();
        let ex = example(
            &tok,
            &[
                "tomar velik was born in kessa.",
                "kessa is a city in oskavia.",
            ],
        );
        let chunks = layout(&ex, tok.special(), &LayoutConfig::default()).unwrap();
        assert_eq!(chunks.len(), 1);
        let chunk = &chunks[0];
        let expected = "<s>[question] country of citizenship tomar velik[/question]\
            [ent] belmoria[/ent][ent] oskavia[/ent]\
            </s> tomar velik was born in kessa.</s></s> kessa is a city in oskavia.</s>";
        assert_eq!(text(&tok, &chunk.input_ids), expected);
        // Every predicted index is an [ent] and every [ent] is predicted.
        let ents: Vec<u32> = (0..chunk.input_ids.len() as u32)
            .filter(|&i| chunk.input_ids[i as usize] == tok.special().entity)
            .collect();
        assert_eq!(chunk.predicted_indices, ents);
        assert_eq!(chunk.predicted_indices.len(), 2);
        // The token after the second [ent] starts "oskavia", the answer.
        let after = chunk.predicted_indices[chunk.answer_index] as usize + 1;
        assert!(text(&tok, &chunk.input_ids[after..after + 3]).starts_with(" osk"));
        // Global attention: exactly the candidate part, which ends with [/ent].
        let mask = chunk.global_attention_mask();
        assert_eq!(mask.iter().filter(|&&m| m == 1).count(), chunk.global_len);
        assert_eq!(
            chunk.input_ids[chunk.global_len - 1],
            tok.special().entity_end
        );
        assert_eq!(chunk.input_ids[chunk.global_len], tok.special().separator);
        assert_eq!(*chunk.input_ids.last().unwrap(), tok.special().separator);
    }

    #[test]
    fn long_example_is_chunked_with_the_candidate_part_in_front() {
        let tok = sample_tokenizer();
        let docs: Vec<String> = (0..40)
            .map(|i| format!("document {i} says that kessa is a city in oskavia."))
            .collect();
        let docs: Vec<&str> = docs.iter().map(String::as_str).collect();
        let ex = example(&tok, &docs);
        let (candidates, _) = candidate_part(&ex, tok.special());
        let supports = support_part(&ex, tok.special());
        let config = LayoutConfig {
            max_len: candidates.len() + 50,
            truncate: false,
        };
        let chunks = layout(&ex, tok.special(), &config).unwrap();
        assert_eq!(chunks.len(), supports.len().div_ceil(50));
        let mut covered = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            assert!(chunk.input_ids.len() <= config.max_len);
            assert_eq!(chunk.input_ids[..candidates.len()], candidates[..]);
            assert_eq!((chunk.chunk, chunk.num_chunks), (i, chunks.len()));
            assert_eq!(chunk.global_len, candidates.len());
            covered.extend_from_slice(&chunk.input_ids[candidates.len()..]);
        }
        // The supports are covered exactly once, in order.
        assert_eq!(covered, supports);

        let truncated = layout(
            &ex,
            tok.special(),
            &LayoutConfig {
                truncate: true,
                ..config
            },
        )
        .unwrap();
        assert_eq!(truncated.len(), 1);
        assert_eq!(truncated[0].input_ids, chunks[0].input_ids);
        assert_eq!(truncated[0].num_chunks, 1);
    }

    #[test]
    fn candidate_part_longer_than_max_len_is_a_record_problem() {
        let tok = sample_tokenizer();
        let ex = example(&tok, &["a."]);
        let (candidates, _) = candidate_part(&ex, tok.special());
        let config = LayoutConfig {
            max_len: candidates.len(),
            truncate: false,
        };
        assert_eq!(
            layout(&ex, tok.special(), &config).unwrap_err(),
            RecordProblem::CandidatePartTooLong {
                len: candidates.len(),
                max_len: candidates.len()
            }
        );
    }

    #[test]
    fn shuffle_moves_the_answer_index_with_the_answer() {
        let tok = sample_tokenizer();
        let mut ex = example(&tok, &["one.", "two.", "three."]);
        ex.candidates = (0..8).map(|i| vec![i]).collect();
        ex.answer_index = 5;
        let before = ex.clone();
        let mut seen_other_position = false;
        for seed in 0..10 {
            let mut shuffled = before.clone();
            shuffled.shuffle(seed);
            assert_eq!(shuffled.candidates[shuffled.answer_index], vec![5]);
            seen_other_position |= shuffled.answer_index != 5;
            let mut again = before.clone();
            again.shuffle(seed);
            assert_eq!(again, shuffled, "same seed, same order");
        }
        assert!(seen_other_position);
        ex.shuffle(1);
        let mut supports = ex.supports.clone();
        supports.sort();
        let mut original = before.supports.clone();
        original.sort();
        assert_eq!(supports, original);
    }

    #[test]
    fn json_line_has_the_documented_keys() {
        let chunk = WikiHopChunk {
            id: "x".into(),
            chunk: 0,
            num_chunks: 1,
            input_ids: vec![0, 5, 6, 2],
            global_len: 2,
            predicted_indices: vec![1],
            answer_index: 0,
        };
        assert_eq!(
            chunk.to_json_line(),
            r#"{"id":"x","chunk":0,"input_ids":[0,5,6,2],"global_attention_mask":[1,1,0,0],"predicted_indices":[1],"answer_index":0}"#
        );
    }

    /// An example of `candidates` (the first is the answer) with one support, tokenized by `tok`.
    fn tokenize(
        tok: &WikiHopTokenizer,
        candidates: &[&str],
    ) -> Result<TokenizedExample, RecordProblem> {
        let record = serde_json::json!({
            "id": "lossy", "query": "r x", "answer": candidates[0],
            "candidates": candidates, "supports": ["a b."],
        });
        TokenizedExample::new(&check_record(&record, 0).unwrap(), tok)
    }

    #[test]
    fn candidates_a_lossy_tokenizer_empties_or_merges_are_record_problems() {
        let tok = lossy_tokenizer();
        assert_eq!(
            tokenize(&tok, &["café", "b", "cafe"]).unwrap_err(),
            RecordProblem::SameTokens {
                first: 0,
                second: 2
            }
        );
        // Two words of unknown characters are both `[UNK]`.
        assert_eq!(
            tokenize(&tok, &["東京", "大阪"]).unwrap_err(),
            RecordProblem::SameTokens {
                first: 0,
                second: 1
            }
        );
        assert_eq!(
            tokenize(&tok, &["a", "\u{301}"]).unwrap_err(),
            RecordProblem::NoTokens {
                field: "candidates[1]".into()
            }
        );
        let record = serde_json::json!({
            "id": "q", "query": "\u{301}", "answer": "a", "candidates": ["a"], "supports": ["x"],
        });
        assert_eq!(
            TokenizedExample::new(&check_record(&record, 0).unwrap(), &tok).unwrap_err(),
            RecordProblem::NoTokens {
                field: "query".into()
            }
        );
        // Distinct tokens pass, and the sample (byte-level) tokenizer keeps distinct text apart.
        assert!(tokenize(&tok, &["a", "b", "cafe"]).is_ok());
        assert!(tokenize(&sample_tokenizer(), &["café", "cafe", "東京", "大阪"]).is_ok());
    }

    #[test]
    fn hand_built_examples_without_supports_candidates_or_answer_are_refused() {
        let tok = sample_tokenizer();
        let good = example(&tok, &["one."]);
        let config = LayoutConfig::default();
        let refused = |ex: TokenizedExample| layout(&ex, tok.special(), &config).unwrap_err();
        // Without supports there would be no chunk at all: the example would vanish.
        assert_eq!(
            refused(TokenizedExample {
                supports: vec![],
                ..good.clone()
            }),
            RecordProblem::EmptySupports
        );
        assert_eq!(
            refused(TokenizedExample {
                candidates: vec![],
                answer_index: 0,
                ..good.clone()
            }),
            RecordProblem::EmptyCandidates
        );
        assert_eq!(
            refused(TokenizedExample {
                answer_index: 2,
                ..good.clone()
            }),
            RecordProblem::AnswerIndexOutOfRange {
                answer_index: 2,
                candidates: 2
            }
        );
        assert_eq!(layout(&good, tok.special(), &config).unwrap().len(), 1);
    }
}
