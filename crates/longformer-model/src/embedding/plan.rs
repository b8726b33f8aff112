//! [`RowSumPlan`]: which output-gradient rows sum into which table row of an embedding, planned
//! on the host from the token ids, so that the device sums every table row in parallel.
//!
//! Burn's embedding backward is one `select_assign` of the output gradient into a zero table:
//! on the CubeCL backends a kernel with one unit per column (768) that walks all `n` tokens in
//! turn, a read and a write of global memory per token. The plan groups the tokens by id instead
//! (the ids are on the host already: the model reads them for its input checks), and
//! [`EmbeddingLookupOps::segment_row_sums`] runs one unit per (table row, column).
//!
//! A table row read by many tokens (the token-type row, read by all of them; a frequent word)
//! would make one unit walk them all again, so rows read more than [`CHUNK_ROWS`] times are
//! summed in two levels: chunks of about `√L` tokens (`L` the most tokens of any row), then the
//! chunks of each row. With at most [`CHUNK_ROWS`] tokens per row there is one level, whose sums
//! add each row's tokens in token order, as Burn's `select_assign` does, bit for bit.
//!
//! [`EmbeddingLookupOps::segment_row_sums`]: super::ops::EmbeddingLookupOps::segment_row_sums

/// Most tokens one table row may take in a single level of sums.
pub(crate) const CHUNK_ROWS: usize = 64;

/// The two levels of sums that turn an output gradient `[n, d]` into a table gradient.
///
/// Level one: chunk `c` sums the gradient rows `order[chunk_starts[c]..chunk_starts[c + 1]]`.
/// Level two: table row `targets[s]` sums chunks `segment_starts[s]..segment_starts[s + 1]`.
/// With one chunk per segment ([`single_level`](Self::single_level)) the chunks are the table
/// rows' sums already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RowSumPlan {
    /// Tokens (indices into the flattened ids) that pass a gradient, grouped by id, each group
    /// in token order.
    pub order: Vec<i64>,
    /// Chunk boundaries in `order`: `chunks + 1` entries, from 0 to `order.len()`.
    pub chunk_starts: Vec<i64>,
    /// Segment boundaries in the chunks: `targets.len() + 1` entries, from 0 to `chunks`.
    pub segment_starts: Vec<i64>,
    /// The table row of each segment, distinct and ascending.
    pub targets: Vec<i64>,
}

impl RowSumPlan {
    /// The plan for `ids` (flattened, row-major); tokens whose id is `frozen` pass no gradient
    /// (PyTorch's `padding_idx`).
    pub fn new(ids: &[i64], frozen: Option<i64>) -> Self {
        let mut order: Vec<i64> = (0..ids.len() as i64)
            .filter(|&t| Some(ids[t as usize]) != frozen)
            .collect();
        // Stable: each id's tokens stay in token order.
        order.sort_by_key(|&t| ids[t as usize]);
        let mut runs: Vec<(i64, usize)> = Vec::new();
        for &t in &order {
            let id = ids[t as usize];
            match runs.last_mut() {
                Some((last, count)) if *last == id => *count += 1,
                _ => runs.push((id, 1)),
            }
        }
        let longest = runs.iter().map(|&(_, count)| count).max().unwrap_or(0);
        let chunk = if longest <= CHUNK_ROWS {
            longest.max(1)
        } else {
            longest.isqrt() + usize::from(longest.isqrt().pow(2) < longest)
        };
        let mut chunk_starts = vec![0i64];
        let mut segment_starts = vec![0i64];
        let mut targets = Vec::with_capacity(runs.len());
        let mut start = 0usize;
        for (id, count) in runs {
            let end = start + count;
            let mut at = start;
            while at < end {
                at = (at + chunk).min(end);
                chunk_starts.push(at as i64);
            }
            segment_starts.push(chunk_starts.len() as i64 - 1);
            targets.push(id);
            start = end;
        }
        Self {
            order,
            chunk_starts,
            segment_starts,
            targets,
        }
    }

    /// Chunks of level one.
    pub fn chunks(&self) -> usize {
        self.chunk_starts.len() - 1
    }

    /// Whether every table row is one chunk (no second level).
    #[cfg(test)]
    pub fn single_level(&self) -> bool {
        self.chunks() == self.targets.len()
    }

    /// Whether no token passes a gradient.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sums of each table row by the plan, in the plan's order, from per-token values.
    fn sums(plan: &RowSumPlan, values: &[f64], rows: usize) -> Vec<f64> {
        let chunks: Vec<f64> = plan
            .chunk_starts
            .windows(2)
            .map(|w| {
                (w[0]..w[1])
                    .map(|j| values[plan.order[j as usize] as usize])
                    .sum()
            })
            .collect();
        let mut table = vec![0.0; rows];
        for (s, w) in plan.segment_starts.windows(2).enumerate() {
            table[plan.targets[s] as usize] = (w[0]..w[1]).map(|c| chunks[c as usize]).sum();
        }
        table
    }

    #[test]
    fn groups_tokens_by_id_in_token_order_and_skips_the_frozen_id() {
        let ids = [3, 1, 3, 0, 1, 1, 2, 3];
        let plan = RowSumPlan::new(&ids, Some(0));
        assert_eq!(plan.order, vec![1, 4, 5, 6, 0, 2, 7]);
        assert_eq!(plan.targets, vec![1, 2, 3]);
        assert_eq!(plan.chunk_starts, vec![0, 3, 4, 7]);
        assert_eq!(plan.segment_starts, vec![0, 1, 2, 3]);
        assert!(plan.single_level());
        let values: Vec<f64> = (0..ids.len()).map(|t| 10f64.powi(t as i32)).collect();
        assert_eq!(
            sums(&plan, &values, 4),
            vec![0.0, 1e1 + 1e4 + 1e5, 1e6, 1.0 + 1e2 + 1e7]
        );
    }

    #[test]
    fn rows_read_often_are_summed_in_chunks_of_about_the_square_root() {
        // Row 7 read 1,000 times, row 2 65 times, row 5 once: chunks of 32 tokens.
        let mut ids = vec![7i64; 1000];
        ids.extend([2; 65]);
        ids.push(5);
        let plan = RowSumPlan::new(&ids, None);
        assert!(!plan.single_level());
        assert_eq!(plan.targets, vec![2, 5, 7]);
        let sizes: Vec<i64> = plan.chunk_starts.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(sizes.iter().all(|&s| (1..=32).contains(&s)), "{sizes:?}");
        // 65 = 32 + 32 + 1; 1; 1,000 = 31 · 32 + 8.
        assert_eq!(plan.segment_starts, vec![0, 3, 4, 36]);
        assert_eq!(plan.chunks(), 36);
        let values: Vec<f64> = (0..ids.len()).map(|t| t as f64).collect();
        let table = sums(&plan, &values, 8);
        assert_eq!(table[7], (0..1000).sum::<i64>() as f64);
        assert_eq!(table[2], (1000..1065).sum::<i64>() as f64);
        assert_eq!(table[5], 1065.0);
    }

    #[test]
    fn at_most_chunk_rows_per_row_is_one_level() {
        let ids: Vec<i64> = (0..CHUNK_ROWS as i64 * 3).map(|t| t % 3).collect();
        assert!(RowSumPlan::new(&ids, None).single_level());
        let mut ids = ids;
        ids.push(0);
        assert!(!RowSumPlan::new(&ids, None).single_level());
    }

    #[test]
    fn only_frozen_tokens_leave_an_empty_plan() {
        let plan = RowSumPlan::new(&[1, 1, 1], Some(1));
        assert!(plan.is_empty());
        assert_eq!(plan.chunks(), 0);
        assert_eq!(plan.targets, Vec::<i64>::new());
    }
}
