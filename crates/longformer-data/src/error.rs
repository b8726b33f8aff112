//! Errors: [`DataError`] stops a run, [`RecordProblem`] explains why one record was skipped.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything that stops the data pipeline. Each variant names the file (and record) concerned.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a JSON array of records (broken syntax, not an array, cut short).
    #[error("{path}: malformed WikiHop file at byte {offset}: {reason}")]
    MalformedFile {
        /// The file.
        path: PathBuf,
        /// Byte offset of the problem in the file.
        offset: usize,
        /// What is wrong there.
        reason: String,
    },
    /// A bad record under `strict`: the first one, by position in the file.
    #[error("{path}: record {index} (id {id:?}): {problem}")]
    BadRecord {
        /// The file.
        path: PathBuf,
        /// Position of the record in the file's array (0-based).
        index: usize,
        /// The record's `id`, or `"?"` when it has none.
        id: String,
        /// What is wrong with it.
        problem: RecordProblem,
    },
    /// A file of the bundled sample set is missing because the sample set was not found: the
    /// binary runs outside a checkout, and the one it was built in is gone.
    #[error(
        "{path}: the bundled sample set (data/wikihop-sample) was not found under the current \
         directory, its parents, or where this binary was built; run from a longformer-burn \
         checkout, or give the data and tokenizer paths"
    )]
    SampleNotFound {
        /// The missing file or directory, in the folder where this crate was compiled.
        path: PathBuf,
    },
    /// No tokenizer files in the given directory, or no such directory.
    #[error(
        "{dir}: no tokenizer found (expected a directory with tokenizer.json, or vocab.json + \
         merges.txt, or a tokenizer.json file)"
    )]
    TokenizerNotFound {
        /// The directory searched.
        dir: PathBuf,
    },
    /// The tokenizer files exist but could not be loaded or used.
    #[error("tokenizer {path}: {reason}")]
    Tokenizer {
        /// The tokenizer file or directory.
        path: PathBuf,
        /// The `tokenizers` crate's message.
        reason: String,
    },
    /// The tokenizer lacks a token the layout needs.
    #[error("tokenizer {path}: no {role} token (looked for {looked_for:?})")]
    MissingSpecialToken {
        /// The tokenizer file or directory.
        path: PathBuf,
        /// The token's role (`start`, `separator`, `padding`).
        role: &'static str,
        /// The spellings tried.
        looked_for: Vec<&'static str>,
    },
    /// Invalid settings (e.g. `max_len` 0).
    #[error("invalid settings: {0}")]
    Settings(String),
    /// A batch of no chunks.
    #[error("no chunks to batch")]
    EmptyBatch,
    /// A chunk whose parts do not fit together (as a hand-built one can be, never one of
    /// [`layout`](crate::layout())): its answer is not among its candidates, or a candidate
    /// position or its global part lies beyond its tokens.
    #[error("chunk {chunk} of example {id:?}: {problem}")]
    BadChunk {
        /// The chunk's example id.
        id: String,
        /// The chunk's number within its example.
        chunk: usize,
        /// What is wrong with it.
        problem: String,
    },
}

/// Why one record was skipped (or, under `strict`, why the run stopped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum RecordProblem {
    /// The record is not a JSON object.
    #[error("not a JSON object")]
    NotAnObject,
    /// Required fields are absent.
    #[error("missing field(s) {0:?}")]
    MissingFields(Vec<String>),
    /// A field has the wrong JSON type.
    #[error("field `{field}` should be {expected}")]
    WrongType {
        /// The field.
        field: String,
        /// What it should be.
        expected: String,
    },
    /// `candidates` is empty.
    #[error("no candidates")]
    EmptyCandidates,
    /// The query, or a candidate, has no text (after whitespace is collapsed).
    #[error("{field} is empty")]
    EmptyText {
        /// `query`, or `candidates[i]`.
        field: String,
    },
    /// `supports` is empty.
    #[error("no supports")]
    EmptySupports,
    /// A candidate appears twice (after lower-casing).
    #[error("candidate {0:?} appears more than once")]
    DuplicateCandidate(String),
    /// The answer is not one of the candidates.
    #[error("answer {answer:?} is not among the {candidates} candidates")]
    AnswerNotCandidate {
        /// The (lower-cased) answer.
        answer: String,
        /// How many candidates there are.
        candidates: usize,
    },
    /// An earlier record (kept) has the same `id`. Downstream code groups an example's chunks
    /// by id, so a second record with it would be merged into the first.
    #[error("id already used by record {first}")]
    DuplicateId {
        /// Position in the file of the record that has the id first.
        first: usize,
    },
    /// The record's bytes are not valid UTF-8.
    #[error("invalid UTF-8 at byte {offset} of the file")]
    InvalidUtf8 {
        /// Byte offset in the file of the first invalid byte.
        offset: usize,
    },
    /// The candidate part alone does not leave room for supports.
    #[error(
        "candidate part is {len} tokens, leaving no room for supports within max_len {max_len}"
    )]
    CandidatePartTooLong {
        /// Tokens in `<s> [question] q [/question] [ent] c1 [/ent] ...`.
        len: usize,
        /// The configured maximum.
        max_len: usize,
    },
    /// The tokenizer failed on this record's text.
    #[error("tokenizer failed: {0}")]
    Tokenize(String),
    /// The query, or a candidate, has text but no tokens: the tokenizer drops all of it (e.g. a
    /// lone combining accent under a normalizer that strips accents).
    #[error("{field} has no tokens (the tokenizer drops all of its text)")]
    NoTokens {
        /// `query`, or `candidates[i]`.
        field: String,
    },
    /// Two candidates have the same tokens, so the model cannot tell them apart (e.g. `café` and
    /// `cafe` under a tokenizer that strips accents, or two names made of unknown characters).
    #[error("candidates[{first}] and candidates[{second}] have the same tokens")]
    SameTokens {
        /// The first of the two candidates.
        first: usize,
        /// The candidate with the same tokens as `first`.
        second: usize,
    },
    /// `answer_index` is not the index of a candidate (a hand-built [`crate::TokenizedExample`]).
    #[error("answer_index {answer_index} is out of range for {candidates} candidates")]
    AnswerIndexOutOfRange {
        /// The index given.
        answer_index: usize,
        /// How many candidates there are.
        candidates: usize,
    },
}

impl RecordProblem {
    /// A short name of the kind of problem, used to count skipped records by reason.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotAnObject => "not an object",
            Self::MissingFields(_) => "missing fields",
            Self::WrongType { .. } => "wrong field type",
            Self::EmptyCandidates => "empty candidates",
            Self::EmptyText { .. } => "empty text",
            Self::EmptySupports => "empty supports",
            Self::DuplicateCandidate(_) => "duplicate candidates",
            Self::AnswerNotCandidate { .. } => "answer not among candidates",
            Self::DuplicateId { .. } => "duplicate id",
            Self::InvalidUtf8 { .. } => "invalid UTF-8",
            Self::CandidatePartTooLong { .. } => "candidate part too long",
            Self::Tokenize(_) => "tokenizer failure",
            Self::NoTokens { .. } => "no tokens",
            Self::SameTokens { .. } => "candidates with the same tokens",
            Self::AnswerIndexOutOfRange { .. } => "answer index out of range",
        }
    }
}

/// A record that was skipped, with its position, id and reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedRecord {
    /// Position in the file's array (0-based).
    pub index: usize,
    /// The record's `id`, or `"?"`.
    pub id: String,
    /// Why it was skipped.
    pub problem: RecordProblem,
}

impl SkippedRecord {
    /// The fatal form of this problem, for `strict` runs.
    pub fn into_error(self, path: PathBuf) -> DataError {
        DataError::BadRecord {
            path,
            index: self.index,
            id: self.id,
            problem: self.problem,
        }
    }
}
