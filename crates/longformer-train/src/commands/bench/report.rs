//! [`BenchRow`]: one measured shape, as JSON (ours and `scripts/bench_hf.py` share the schema),
//! and the Markdown table of a run.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// One sequence length of one benchmark run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchRow {
    /// `flex`, `ndarray`, `wgpu`, `vulkan`, or `hf-pytorch`.
    pub backend: String,
    /// `fwd` or `train`.
    pub mode: String,
    /// Tokens per row.
    pub seq: usize,
    /// Rows per batch.
    pub batch: usize,
    /// Median over the timed repeats, milliseconds.
    pub median_ms: f64,
    /// `batch · seq / median`.
    pub tokens_per_s: f64,
    /// Peak resident memory of the measuring process, bytes (absent where the OS does not say).
    pub peak_bytes: Option<u64>,
    /// CPU threads the measuring process used.
    pub threads: usize,
    /// A window other than HF's plain one, e.g. `dilation 2, causal` (absent for the plain window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Whether the training step ran with gradient checkpointing (absent when it did not).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gradient_checkpointing: bool,
    /// HF PyTorch's median on the same shape, when compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hf_median_ms: Option<f64>,
    /// HF PyTorch's peak memory on the same shape, when compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hf_peak_bytes: Option<u64>,
    /// `median_ms / hf_median_ms`: below 1 means we are faster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
}

impl BenchRow {
    /// Adds HF's measurement of the same shape.
    pub fn compared_with(mut self, hf: &BenchRow) -> Self {
        self.hf_median_ms = Some(hf.median_ms);
        self.hf_peak_bytes = hf.peak_bytes;
        self.ratio = Some(self.median_ms / hf.median_ms);
        self
    }

    /// The mode with what sets this run apart, e.g. `train (dilation 2, gradient checkpointing)`.
    pub fn mode_label(&self) -> String {
        let notes: Vec<&str> = self
            .pattern
            .as_deref()
            .into_iter()
            .chain(
                self.gradient_checkpointing
                    .then_some("gradient checkpointing"),
            )
            .collect();
        if notes.is_empty() {
            self.mode.clone()
        } else {
            format!("{} ({})", self.mode, notes.join(", "))
        }
    }

    /// The row from the last JSON line of a benchmark process's output.
    pub fn from_output(stdout: &str, what: &str) -> Result<Self> {
        let line = stdout
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('{'))
            .with_context(|| format!("{what} printed no JSON row; its output was:\n{stdout}"))?;
        serde_json::from_str(line).with_context(|| format!("{what} printed a bad row: {line}"))
    }
}

/// The rows as a Markdown table; HF columns appear when any row was compared.
pub fn markdown_table(rows: &[BenchRow]) -> String {
    let compared = rows.iter().any(|r| r.ratio.is_some());
    let mut out = String::from(
        "| backend | mode | seq | batch | threads | median ms | tokens/s | peak MiB |",
    );
    if compared {
        out.push_str(" HF median ms | HF peak MiB | ours / HF |");
    }
    out.push('\n');
    let columns = if compared { 11 } else { 8 };
    out.push_str(&"|---".repeat(columns));
    out.push_str("|\n");
    let mib = |b: Option<u64>| b.map_or("-".into(), |b| format!("{:.0}", b as f64 / 1048576.0));
    for r in rows {
        let _ = write!(
            out,
            "| {} | {} | {} | {} | {} | {:.1} | {:.0} | {} |",
            r.backend,
            r.mode_label(),
            r.seq,
            r.batch,
            r.threads,
            r.median_ms,
            r.tokens_per_s,
            mib(r.peak_bytes)
        );
        if compared {
            let _ = write!(
                out,
                " {} | {} | {} |",
                r.hf_median_ms.map_or("-".into(), |m| format!("{m:.1}")),
                mib(r.hf_peak_bytes),
                r.ratio.map_or("-".into(), |x| format!("{x:.2}"))
            );
        }
        out.push('\n');
    }
    out
}

/// Writes the rows as a JSON array.
pub fn write_rows(path: &Path, rows: &[BenchRow]) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let json = serde_json::to_string_pretty(rows)?;
    std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(backend: &str, median_ms: f64) -> BenchRow {
        BenchRow {
            backend: backend.into(),
            mode: "fwd".into(),
            seq: 4096,
            batch: 1,
            median_ms,
            tokens_per_s: 4096.0 / (median_ms / 1e3),
            peak_bytes: Some(3 << 30),
            threads: 2,
            pattern: None,
            gradient_checkpointing: false,
            hf_median_ms: None,
            hf_peak_bytes: None,
            ratio: None,
        }
    }

    #[test]
    fn hf_rows_parse_and_compare() {
        let hf_line = r#"{"backend": "hf-pytorch", "mode": "fwd", "seq": 4096, "batch": 1, "median_ms": 200.0, "tokens_per_s": 20480.0, "peak_bytes": 1048576, "threads": 2}"#;
        let hf = BenchRow::from_output(&format!("warming up\n{hf_line}\n"), "HF").unwrap();
        let ours = row("flex", 100.0).compared_with(&hf);
        assert_eq!(ours.ratio, Some(0.5));
        assert_eq!(ours.hf_peak_bytes, Some(1048576));
        let table = markdown_table(&[ours]);
        assert!(
            table.contains(
                "| flex | fwd | 4096 | 1 | 2 | 100.0 | 40960 | 3072 | 200.0 | 1 | 0.50 |"
            ),
            "{table}"
        );
    }

    #[test]
    fn checkpointed_rows_say_so_in_json_and_table() {
        let mut plain = row("flex", 100.0);
        plain.mode = "train".into();
        assert!(
            !serde_json::to_string(&plain)
                .unwrap()
                .contains("checkpointing")
        );
        let checkpointed = BenchRow {
            gradient_checkpointing: true,
            pattern: Some("dilation 2".into()),
            ..plain.clone()
        };
        let json = serde_json::to_string(&checkpointed).unwrap();
        assert!(json.contains(r#""gradient_checkpointing":true"#), "{json}");
        let table = markdown_table(&[plain, checkpointed]);
        assert!(table.contains("| flex | train | 4096 |"), "{table}");
        assert!(
            table.contains("| flex | train (dilation 2, gradient checkpointing) | 4096 |"),
            "{table}"
        );
    }

    #[test]
    fn output_without_a_row_is_an_error() {
        let err = BenchRow::from_output("Traceback ...", "HF")
            .unwrap_err()
            .to_string();
        assert!(err.contains("HF printed no JSON row"), "{err}");
    }

    #[test]
    fn uncompared_table_has_no_hf_columns() {
        let table = markdown_table(&[row("ndarray", 12.0)]);
        assert!(!table.contains("HF"), "{table}");
        assert_eq!(table.lines().count(), 3);
    }
}
