//! What a preprocessing run produced and skipped, printed by `longformer prepare`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::SkippedRecord;

/// How many skipped records are listed one by one in the printed summary.
const LISTED_SKIPPED: usize = 10;

/// Counts of one preprocessing run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The WikiHop file.
    pub file: PathBuf,
    /// Records in the file.
    pub records: usize,
    /// Records turned into chunks.
    pub examples: usize,
    /// Chunks written.
    pub chunks: usize,
    /// Examples that needed more than one chunk (before `truncate`).
    pub long_examples: usize,
    /// Examples that lost support tokens to `truncate`.
    pub truncated_examples: usize,
    /// Tokens of all examples laid out unchunked (candidate part + support part).
    pub example_tokens: usize,
    /// Longest chunk, in tokens.
    pub longest_chunk: usize,
    /// Skipped records, in file order.
    pub skipped: Vec<SkippedRecord>,
}

impl Summary {
    /// Skipped records counted by [`crate::RecordProblem::kind`].
    pub fn skipped_by_kind(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for record in &self.skipped {
            *counts.entry(record.problem.kind()).or_insert(0) += 1;
        }
        counts
    }

    /// [`skipped_by_kind`](Self::skipped_by_kind) as text: `2 empty supports, 1 duplicate id`.
    pub fn skipped_kinds(&self) -> String {
        let kinds: Vec<String> = self
            .skipped_by_kind()
            .into_iter()
            .map(|(kind, n)| format!("{n} {kind}"))
            .collect();
        kinds.join(", ")
    }

    /// Mean tokens per example before chunking.
    pub fn mean_example_tokens(&self) -> f64 {
        self.example_tokens as f64 / self.examples.max(1) as f64
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} records, {} examples, {} chunks ({} examples longer than max_len, {} truncated), \
             {:.0} tokens per example on average, longest chunk {} tokens",
            self.file.display(),
            self.records,
            self.examples,
            self.chunks,
            self.long_examples,
            self.truncated_examples,
            self.mean_example_tokens(),
            self.longest_chunk,
        )?;
        if self.skipped.is_empty() {
            return write!(f, "skipped 0 records");
        }
        write!(
            f,
            "skipped {} records: {}",
            self.skipped.len(),
            self.skipped_kinds()
        )?;
        for record in self.skipped.iter().take(LISTED_SKIPPED) {
            write!(
                f,
                "\n  record {} (id {:?}): {}",
                record.index, record.id, record.problem
            )?;
        }
        if self.skipped.len() > LISTED_SKIPPED {
            write!(
                f,
                "\n  ... and {} more",
                self.skipped.len() - LISTED_SKIPPED
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::RecordProblem;

    #[test]
    fn display_counts_skipped_by_reason() {
        let skipped = |index, problem| SkippedRecord {
            index,
            id: format!("WH_{index}"),
            problem,
        };
        let summary = Summary {
            file: "dev.json".into(),
            records: 5,
            examples: 2,
            chunks: 3,
            example_tokens: 100,
            skipped: vec![
                skipped(1, RecordProblem::EmptySupports),
                skipped(3, RecordProblem::EmptySupports),
                skipped(4, RecordProblem::InvalidUtf8 { offset: 9 }),
            ],
            ..Summary::default()
        };
        let text = summary.to_string();
        assert!(
            text.contains("dev.json: 5 records, 2 examples, 3 chunks"),
            "{text}"
        );
        assert!(text.contains("50 tokens per example"), "{text}");
        assert!(
            text.contains("skipped 3 records: 2 empty supports, 1 invalid UTF-8"),
            "{text}"
        );
        assert!(
            text.contains("record 4 (id \"WH_4\"): invalid UTF-8 at byte 9"),
            "{text}"
        );
    }
}
