//! Records without an answer, for `longformer eval` to predict.
//!
//! The data pipeline reads WikiHop files as training and evaluation need them: a record
//! without an `answer` is a bad record. To predict on new questions, `eval` gives each such
//! record a stand-in answer (its first candidate) before the file goes through the pipeline,
//! and leaves those records out of the accuracy and the loss. Without shuffling (evaluation
//! never shuffles) the chunks, and so the scores, do not depend on the answer.

use std::collections::BTreeSet;

use serde_json::Value;

/// A WikiHop file's bytes with a stand-in answer in every record that has none, and the ids of
/// those records.
pub struct FilledAnswers {
    /// The file with the stand-ins (JSON; formatting not kept).
    pub bytes: Vec<u8>,
    /// Ids of the records that had no answer.
    pub unlabeled: BTreeSet<String>,
}

/// Gives every record of `bytes` without an `answer` (absent or `null`) its first candidate as
/// one; `None` when no record lacks one, or when the file is not a JSON array of records (the
/// pipeline reports what is wrong with it). A record without a string id or a non-empty list
/// of candidates is left alone, for the pipeline to report as bad.
pub fn fill_missing_answers(bytes: &[u8]) -> Option<FilledAnswers> {
    // A first pass that keeps nothing of the supports: a file whose records all have an
    // answer (every training and dev file) costs a scan, not a copy of itself.
    let probes: Vec<AnswerProbe> = serde_json::from_slice(bytes).ok()?;
    if probes.iter().all(|p| !p.answer.is_null()) {
        return None;
    }
    let mut records: Vec<Value> = serde_json::from_slice(bytes).ok()?;
    let mut unlabeled = BTreeSet::new();
    for record in &mut records {
        let Some(fields) = record.as_object_mut() else {
            continue;
        };
        if !fields.get("answer").is_none_or(Value::is_null) {
            continue;
        }
        let id = fields.get("id").and_then(Value::as_str).map(str::to_owned);
        let first = fields
            .get("candidates")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
            .cloned();
        if let (Some(id), Some(first)) = (id, first) {
            fields.insert("answer".into(), first);
            unlabeled.insert(id);
        }
    }
    if unlabeled.is_empty() {
        return None;
    }
    let bytes = serde_json::to_vec(&records).expect("JSON values serialize");
    Some(FilledAnswers { bytes, unlabeled })
}

/// A record's `answer` alone (`null` when absent); the other fields are skipped unread.
#[derive(serde::Deserialize)]
struct AnswerProbe {
    #[serde(default)]
    answer: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_without_an_answer_get_their_first_candidate() {
        let file = br#"[
            {"id": "a", "query": "q", "answer": "y", "candidates": ["x", "y"], "supports": ["s"]},
            {"id": "b", "query": "q", "candidates": ["x", "y"], "supports": ["s"]},
            {"id": "c", "query": "q", "answer": null, "candidates": ["z"], "supports": ["s"]},
            {"id": "d", "query": "q", "candidates": [], "supports": ["s"]},
            {"query": "q", "candidates": ["x"], "supports": ["s"]}
        ]"#;
        let filled = fill_missing_answers(file).unwrap();
        assert_eq!(
            filled.unlabeled.iter().collect::<Vec<_>>(),
            ["b", "c"],
            "records without candidates or an id are left for the pipeline to report"
        );
        let records: Vec<Value> = serde_json::from_slice(&filled.bytes).unwrap();
        let answers: Vec<&Value> = records.iter().map(|r| &r["answer"]).collect();
        assert_eq!(
            answers,
            [
                &Value::from("y"),
                &Value::from("x"),
                &Value::from("z"),
                &Value::Null,
                &Value::Null
            ]
        );
    }

    #[test]
    fn labeled_and_malformed_files_are_left_to_the_pipeline() {
        let labeled = br#"[{"id": "a", "answer": "x", "candidates": ["x"]}]"#;
        assert!(fill_missing_answers(labeled).is_none());
        assert!(fill_missing_answers(b"[{\"id\": ").is_none());
        assert!(fill_missing_answers(b"{\"id\": \"a\"}").is_none());
    }
}
