//! Reading QAngaroo WikiHop files: a JSON array of `{id, query, answer, candidates, supports}`
//! records (`annotations` optional), checked record by record.
//!
//! Normalization follows the Longformer WikiHop preprocessing: the query's relation has
//! its `_` turned into spaces; query, candidates and answer are lower-cased (as the
//! dataset is); runs of whitespace become one space, and supports get the paper's
//! punctuation clean-up (`" ."` → `"."` and so on). Supports keep their case.
//!
//! A query or candidate left empty by this is a bad record ([`RecordProblem::EmptyText`]):
//! the question or entity would have no tokens. An empty support is kept, as `</s> </s>`,
//! as in that preprocessing.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::ops::Range;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{DataError, RecordProblem, SkippedRecord};
use crate::json_split::split_array;

/// One record exactly as stored in a WikiHop file (also what the sample generator writes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WikiHopRecord {
    /// Unique id, e.g. `WH_train_0`.
    pub id: String,
    /// `"relation subject"`, e.g. `country_of_citizenship john smith`.
    pub query: String,
    /// The correct candidate.
    pub answer: String,
    /// The candidate answers.
    pub candidates: Vec<String>,
    /// The support documents.
    pub supports: Vec<String>,
    /// Optional human annotations (dev set only); kept but unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Value>,
}

impl WikiHopRecord {
    /// Checks and normalizes the record as [`read_wikihop`] does a record of a file, for
    /// records built in memory (e.g. by [`crate::generate`]); `index` is its position in the
    /// set. Ids are not compared across records here.
    ///
    /// ```
    /// use longformer_data::{WikiHopRecord, RecordProblem};
    ///
    /// let record = WikiHopRecord {
    ///     id: "WH_dev_0".into(),
    ///     query: "country_of_citizenship Tomar Velik".into(),
    ///     answer: "Oskavia".into(),
    ///     candidates: vec!["belmoria".into(), "oskavia".into()],
    ///     supports: vec!["tomar velik was born in kessa .".into()],
    ///     annotations: None,
    /// };
    /// let example = record.check(0)?;
    /// assert_eq!(example.query, "country of citizenship tomar velik");
    /// assert_eq!(example.answer_index, 1);
    /// assert_eq!(example.supports, ["tomar velik was born in kessa."]);
    /// # Ok::<(), RecordProblem>(())
    /// ```
    pub fn check(&self, index: usize) -> Result<WikiHopExample, RecordProblem> {
        let value = serde_json::to_value(self).expect("a record of strings serializes");
        check_record(&value, index)
    }
}

/// A checked and normalized record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WikiHopExample {
    /// Position of the record in its file (0-based).
    pub index: usize,
    /// The record's `id`.
    pub id: String,
    /// Normalized query, e.g. `country of citizenship john smith`.
    pub query: String,
    /// Normalized, distinct candidates.
    pub candidates: Vec<String>,
    /// Index of the answer in `candidates`.
    pub answer_index: usize,
    /// Normalized support documents.
    pub supports: Vec<String>,
}

/// The readable examples of a file and the records skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOutcome {
    /// Records in the file.
    pub records: usize,
    /// Valid records, in file order.
    pub examples: Vec<WikiHopExample>,
    /// Invalid records, in file order.
    pub skipped: Vec<SkippedRecord>,
}

/// Reads and checks a WikiHop file.
///
/// Bad records are skipped and listed in [`ReadOutcome::skipped`]; under `strict` the
/// first one is returned as [`DataError::BadRecord`]. A file that is not a JSON array
/// of records is a [`DataError::MalformedFile`].
///
/// Ids must be unique, since an example's chunks are grouped by id downstream: a valid
/// record whose id an earlier valid record already has is a bad record too
/// ([`RecordProblem::DuplicateId`], naming the earlier one), so the first record with an id
/// is kept and the later ones are skipped (or, under `strict`, stop the run).
pub fn read_wikihop(path: &Path, strict: bool) -> Result<ReadOutcome, DataError> {
    let bytes = crate::bundled::read(path)?;
    parse_wikihop(&bytes, path, strict)
}

/// [`read_wikihop`] on bytes already read; `path` is only used in messages.
pub fn parse_wikihop(bytes: &[u8], path: &Path, strict: bool) -> Result<ReadOutcome, DataError> {
    let ranges = split_array(bytes).map_err(|e| DataError::MalformedFile {
        path: path.to_path_buf(),
        offset: e.offset,
        reason: e.reason,
    })?;
    let results: Vec<Result<Result<WikiHopExample, SkippedRecord>, DataError>> = ranges
        .par_iter()
        .enumerate()
        .map(|(index, range)| decode_record(bytes, range.clone(), index, path))
        .collect();
    let mut outcome = ReadOutcome {
        records: ranges.len(),
        examples: Vec::with_capacity(ranges.len()),
        skipped: Vec::new(),
    };
    // Index of the kept record with each id.
    let mut first_with_id = HashMap::new();
    for result in results {
        let checked = result?.and_then(|example| match first_with_id.entry(example.id.clone()) {
            Entry::Occupied(first) => Err(SkippedRecord {
                index: example.index,
                id: example.id,
                problem: RecordProblem::DuplicateId {
                    first: *first.get(),
                },
            }),
            Entry::Vacant(slot) => {
                slot.insert(example.index);
                Ok(example)
            }
        });
        match checked {
            Ok(example) => outcome.examples.push(example),
            Err(skipped) if strict => return Err(skipped.into_error(path.to_path_buf())),
            Err(skipped) => outcome.skipped.push(skipped),
        }
    }
    Ok(outcome)
}

/// Decodes one array element: `Err` for a broken file, `Ok(Err)` for a bad record.
fn decode_record(
    bytes: &[u8],
    range: Range<usize>,
    index: usize,
    path: &Path,
) -> Result<Result<WikiHopExample, SkippedRecord>, DataError> {
    let raw = &bytes[range.clone()];
    let text = match std::str::from_utf8(raw) {
        Ok(text) => text,
        Err(e) => {
            let lossy = String::from_utf8_lossy(raw);
            let id = serde_json::from_str::<Value>(&lossy)
                .ok()
                .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| "?".to_owned());
            return Ok(Err(SkippedRecord {
                index,
                id,
                problem: RecordProblem::InvalidUtf8 {
                    offset: range.start + e.valid_up_to(),
                },
            }));
        }
    };
    let value: Value = serde_json::from_str(text).map_err(|e| DataError::MalformedFile {
        path: PathBuf::from(path),
        offset: range.start + offset_of(text, e.line(), e.column()),
        reason: format!("record {index}: {e}"),
    })?;
    let id = value
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_owned();
    Ok(check_record(&value, index).map_err(|problem| SkippedRecord { index, id, problem }))
}

/// Byte offset of a 1-based line and column in `text`.
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    (line_start + column.saturating_sub(1)).min(text.len())
}

/// Checks one decoded record and normalizes it.
pub fn check_record(value: &Value, index: usize) -> Result<WikiHopExample, RecordProblem> {
    let object = value.as_object().ok_or(RecordProblem::NotAnObject)?;
    let missing: Vec<String> = ["id", "query", "answer", "candidates", "supports"]
        .iter()
        .filter(|field| object.get(**field).is_none_or(Value::is_null))
        .map(|field| field.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(RecordProblem::MissingFields(missing));
    }
    let id = string_field(value, "id")?.to_owned();
    let query = normalize_query(string_field(value, "query")?);
    let answer = normalize_entity(string_field(value, "answer")?);
    let candidates: Vec<String> = string_list(value, "candidates")?
        .into_iter()
        .map(normalize_entity)
        .collect();
    let supports: Vec<String> = string_list(value, "supports")?
        .into_iter()
        .map(normalize_text)
        .collect();
    if candidates.is_empty() {
        return Err(RecordProblem::EmptyCandidates);
    }
    if query.is_empty() {
        return Err(RecordProblem::EmptyText {
            field: "query".to_owned(),
        });
    }
    if let Some(i) = candidates.iter().position(String::is_empty) {
        return Err(RecordProblem::EmptyText {
            field: format!("candidates[{i}]"),
        });
    }
    if supports.is_empty() {
        return Err(RecordProblem::EmptySupports);
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(duplicate) = candidates.iter().find(|c| !seen.insert(c.as_str())) {
        return Err(RecordProblem::DuplicateCandidate(duplicate.clone()));
    }
    let answer_index =
        candidates
            .iter()
            .position(|c| *c == answer)
            .ok_or(RecordProblem::AnswerNotCandidate {
                answer,
                candidates: candidates.len(),
            })?;
    Ok(WikiHopExample {
        index,
        id,
        query,
        candidates,
        answer_index,
        supports,
    })
}

fn string_field<'a>(value: &'a Value, field: &str) -> Result<&'a str, RecordProblem> {
    value[field]
        .as_str()
        .ok_or_else(|| RecordProblem::WrongType {
            field: field.to_owned(),
            expected: "a string".to_owned(),
        })
}

fn string_list<'a>(value: &'a Value, field: &str) -> Result<Vec<&'a str>, RecordProblem> {
    let wrong = || RecordProblem::WrongType {
        field: field.to_owned(),
        expected: "an array of strings".to_owned(),
    };
    value[field]
        .as_array()
        .ok_or_else(wrong)?
        .iter()
        .map(|item| item.as_str().ok_or_else(wrong))
        .collect()
}

/// `country_of_citizenship John  Smith` → `country of citizenship john smith`: the relation,
/// up to the first whitespace (a space, a tab, ...), has its `_` turned into spaces.
pub fn normalize_query(query: &str) -> String {
    let query = query.trim();
    let (relation, subject) = query.split_once(char::is_whitespace).unwrap_or((query, ""));
    let joined = format!("{} {}", relation.replace('_', " "), subject);
    collapse_whitespace(&joined).to_lowercase()
}

/// Candidates and answers: lower-cased, whitespace collapsed.
pub fn normalize_entity(text: &str) -> String {
    collapse_whitespace(text).to_lowercase()
}

/// Supports: the Longformer preprocessing's punctuation clean-up, whitespace collapsed.
pub fn normalize_text(text: &str) -> String {
    let mut s = text.to_owned();
    for (from, to) in [
        (" .", "."),
        (" ,", ","),
        (" !", "!"),
        (" ?", "?"),
        ("( ", "("),
        (" )", ")"),
        (" 's", "'s"),
    ] {
        if s.contains(from) {
            s = s.replace(from, to);
        }
    }
    collapse_whitespace(&s)
}

fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &[u8], strict: bool) -> Result<ReadOutcome, DataError> {
        parse_wikihop(text, Path::new("train.json"), strict)
    }

    const GOOD: &str = r#"{"id": "WH_train_0", "query": "country_of_citizenship John Smith",
        "answer": "France", "candidates": ["germany", "france"],
        "supports": ["John Smith was born in Paris .", "Paris is in France ."]}"#;

    #[test]
    fn reads_and_normalizes_a_good_record() {
        let text = format!("[{GOOD}]");
        let outcome = parse(text.as_bytes(), true).unwrap();
        assert_eq!(outcome.records, 1);
        let ex = &outcome.examples[0];
        assert_eq!(ex.id, "WH_train_0");
        assert_eq!(ex.query, "country of citizenship john smith");
        assert_eq!(ex.candidates, vec!["germany", "france"]);
        assert_eq!(ex.answer_index, 1);
        assert_eq!(ex.supports[0], "John Smith was born in Paris.");
    }

    #[test]
    fn annotations_are_optional_and_accepted() {
        let with = GOOD.replace("\"id\"", "\"annotations\": [[\"follows\"]], \"id\"");
        let outcome = parse(format!("[{with}]").as_bytes(), true).unwrap();
        assert_eq!(outcome.examples.len(), 1);
    }

    fn problem_of(record: &str) -> RecordProblem {
        let text = format!("[{GOOD}, {record}]");
        let outcome = parse(text.as_bytes(), false).unwrap();
        assert_eq!(outcome.examples.len(), 1, "{record}");
        assert_eq!(outcome.skipped.len(), 1, "{record}");
        assert_eq!(outcome.skipped[0].index, 1);
        outcome.skipped[0].problem.clone()
    }

    #[test]
    fn each_bad_record_kind_is_reported_and_skipped() {
        let base = |f: &str| format!(r#"{{"id": "bad", {f}}}"#);
        let c = r#""candidates": ["a", "b"]"#;
        let s = r#""supports": ["x"]"#;
        assert_eq!(
            problem_of(&base(&format!(r#""query": "r x", {c}, {s}"#))),
            RecordProblem::MissingFields(vec!["answer".into()])
        );
        assert_eq!(
            problem_of(&base(&format!(
                r#""query": "r x", "answer": "z", {c}, {s}"#
            ))),
            RecordProblem::AnswerNotCandidate {
                answer: "z".into(),
                candidates: 2
            }
        );
        assert_eq!(
            problem_of(&base(&format!(
                r#""query": "r x", "answer": "a", "candidates": [], {s}"#
            ))),
            RecordProblem::EmptyCandidates
        );
        assert_eq!(
            problem_of(&base(&format!(
                r#""query": "r x", "answer": "a", {c}, "supports": []"#
            ))),
            RecordProblem::EmptySupports
        );
        assert_eq!(
            problem_of(&base(&format!(r#""query": " ", "answer": "a", {c}, {s}"#))),
            RecordProblem::EmptyText {
                field: "query".into()
            }
        );
        assert_eq!(
            problem_of(&base(&format!(
                r#""query": "r x", "answer": "a", "candidates": ["a", "\t"], {s}"#
            ))),
            RecordProblem::EmptyText {
                field: "candidates[1]".into()
            }
        );
        assert_eq!(
            problem_of(&base(&format!(
                r#""query": "r x", "answer": "a", "candidates": ["a", "b", "A"], {s}"#
            ))),
            RecordProblem::DuplicateCandidate("a".into())
        );
        assert!(matches!(
            problem_of(&base(&format!(r#""query": 3, "answer": "a", {c}, {s}"#))),
            RecordProblem::WrongType { field, .. } if field == "query"
        ));
        assert_eq!(problem_of("[1, 2]"), RecordProblem::NotAnObject);
    }

    #[test]
    fn a_duplicate_id_is_skipped_naming_the_first_record_and_fatal_under_strict() {
        let other = GOOD.replace("France", "Germany");
        let text = format!(
            "[{GOOD}, {}, {other}]",
            GOOD.replace("WH_train_0", "WH_train_1")
        );
        let outcome = parse(text.as_bytes(), false).unwrap();
        let ids: Vec<_> = outcome.examples.iter().map(|e| (e.index, &*e.id)).collect();
        assert_eq!(ids, [(0, "WH_train_0"), (1, "WH_train_1")]);
        assert_eq!(
            outcome.skipped,
            vec![SkippedRecord {
                index: 2,
                id: "WH_train_0".into(),
                problem: RecordProblem::DuplicateId { first: 0 }
            }]
        );

        let message = parse(text.as_bytes(), true).unwrap_err().to_string();
        assert_eq!(
            message,
            r#"train.json: record 2 (id "WH_train_0"): id already used by record 0"#
        );
    }

    #[test]
    fn a_skipped_record_does_not_claim_its_id() {
        let bad = r#"{"id": "WH_train_0", "query": "r x"}"#;
        let outcome = parse(format!("[{bad}, {GOOD}]").as_bytes(), false).unwrap();
        assert_eq!(outcome.examples.len(), 1);
        assert_eq!(outcome.examples[0].index, 1);
        assert_eq!(outcome.skipped[0].problem.kind(), "missing fields");
    }

    #[test]
    fn invalid_utf8_is_reported_with_id_and_offset() {
        let mut bytes = format!("[{GOOD}, ").into_bytes();
        let start = bytes.len();
        bytes.extend_from_slice(
            br#"{"id": "utf", "query": "r x", "answer": "a", "candidates": ["a"], "supports": [""#,
        );
        let bad_at = bytes.len();
        bytes.extend_from_slice(&[0xC3, 0x28]);
        bytes.extend_from_slice(b"\"]}]");
        let outcome = parse(&bytes, false).unwrap();
        assert!(start < bad_at);
        assert_eq!(
            outcome.skipped,
            vec![SkippedRecord {
                index: 1,
                id: "utf".into(),
                problem: RecordProblem::InvalidUtf8 { offset: bad_at }
            }]
        );
    }

    #[test]
    fn strict_makes_the_first_bad_record_fatal_with_file_index_and_id() {
        let text = format!(r#"[{GOOD}, {{"id": "WH_bad_7", "query": "r x"}}]"#);
        let err = parse(text.as_bytes(), true).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("train.json"), "{message}");
        assert!(message.contains("record 1"), "{message}");
        assert!(message.contains("WH_bad_7"), "{message}");
        assert!(message.contains("missing field"), "{message}");
    }

    #[test]
    fn malformed_files_are_errors_not_panics() {
        for text in [
            "",
            "{}",
            "[",
            &format!("[{GOOD}"),
            &format!("[{GOOD},]"),
            "[{\"id\": }]",
            "[{\"id\": \"x\",}]",
        ] {
            match parse(text.as_bytes(), false) {
                Err(DataError::MalformedFile { path, .. }) => {
                    assert_eq!(path, PathBuf::from("train.json"))
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn query_normalization() {
        assert_eq!(
            normalize_query(" place_of_birth  Ada  Lovelace "),
            "place of birth ada lovelace"
        );
        assert_eq!(normalize_query("occupation"), "occupation");
    }

    /// The relation ends at the first whitespace of any kind: a subject's own `_` stays, as it
    /// does after a space.
    #[test]
    fn query_relation_ends_at_any_whitespace() {
        let spaced = normalize_query("place_of_birth mary_ann lee");
        assert_eq!(spaced, "place of birth mary_ann lee");
        for separator in ["\t", "\n", "\u{a0}", "  "] {
            let query = format!("place_of_birth{separator}mary_ann lee");
            assert_eq!(normalize_query(&query), spaced, "{query:?}");
        }
    }

    #[test]
    fn an_in_memory_record_is_checked_as_one_read_from_a_file() {
        let from_file = &parse(format!("[{GOOD}]").as_bytes(), true)
            .unwrap()
            .examples[0];
        let record: WikiHopRecord = serde_json::from_str(GOOD).unwrap();
        assert_eq!(&record.check(0).unwrap(), from_file);
        let bad = WikiHopRecord {
            supports: vec![],
            ..record
        };
        assert_eq!(bad.check(3), Err(RecordProblem::EmptySupports));
    }
}
