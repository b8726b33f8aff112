//! Batching sequences of mixed lengths with little padding: the longest first, neighbours in
//! length together, so each batch is padded only to its own longest item; and how many items a
//! batch may hold ([`BatchLimit`]: rows, and optionally tokens counting padding, which bounds a
//! batch's memory).
//!
//! # Example
//! Encoding a corpus of mixed lengths in batches of at most 8 rows and 8,192 padded tokens, each
//! cut to its longest row ([`LongformerInput::select_rows`](crate::LongformerInput::select_rows)):
//! ```
//! use burn::tensor::Device;
//! use longformer_model::LongformerInput;
//! use longformer_model::batching::{BatchLimit, ItemSize, longest_first};
//!
//! let device = Device::flex();
//! let lengths = [4000, 120, 600, 4000, 350];
//! let rows: Vec<Vec<i64>> = lengths.iter().map(|&n| vec![5; n]).collect();
//! let input = LongformerInput::from_rows(&rows, None, None, 1, &device);
//! let limit = BatchLimit::items(8).with_tokens(Some(8192));
//! let batches = longest_first(&ItemSize::rows_of(&lengths), limit);
//! assert_eq!(batches, [vec![0, 3], vec![2, 4, 1]]);
//! for held in batches {
//!     let longest = held.iter().map(|&r| lengths[r]).max().unwrap();
//!     let batch = input.select_rows(&held, longest); // [held.len(), longest]
//!     // model.try_forward(batch)?: row `i` of its outputs is input row `held[i]`.
//! #   assert_eq!(batch.dims(), [held.len(), longest]);
//! }
//! ```

/// How much one batch may hold: at most `items` items (rows, or examples) and, with `tokens`, at
/// most that many tokens once padded (rows × the batch's padded length: the cost in compute and
/// memory). An item alone over the token budget still makes a batch of one: nothing is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimit {
    /// Items per batch, at least 1.
    pub items: usize,
    /// Padded tokens per batch, if limited.
    pub tokens: Option<usize>,
}

impl BatchLimit {
    /// At most `items` items (at least 1), tokens unlimited.
    pub fn items(items: usize) -> Self {
        Self {
            items: items.max(1),
            tokens: None,
        }
    }

    /// The same limit, also at most `tokens` padded tokens per batch (`None`: unlimited).
    pub fn with_tokens(self, tokens: Option<usize>) -> Self {
        Self { tokens, ..self }
    }

    /// Whether a batch of `items` items, `rows` rows in all, padded to `length` tokens, fits;
    /// a batch of one item always does.
    fn fits(self, items: usize, rows: usize, length: usize) -> bool {
        items <= 1
            || (items <= self.items
                && self
                    .tokens
                    .is_none_or(|tokens| rows.saturating_mul(length) <= tokens))
    }

    /// Items per batch when every item has `rows` rows and every batch is padded to `length`
    /// tokens (at least 1).
    pub fn items_at(self, rows: usize, length: usize) -> usize {
        let by_tokens = match self.tokens {
            Some(tokens) => tokens / rows.max(1).saturating_mul(length.max(1)),
            None => usize::MAX,
        };
        self.items.min(by_tokens).max(1)
    }
}

/// An item to batch: the length of its longest row (what its batch is padded to at least) and
/// its rows (1 for a sequence; a WikiHop example's chunks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemSize {
    /// Tokens of its longest row.
    pub length: usize,
    /// Its rows.
    pub rows: usize,
}

impl ItemSize {
    /// Items of one row each, of these lengths.
    pub fn rows_of(lengths: &[usize]) -> Vec<Self> {
        lengths
            .iter()
            .map(|&length| Self { length, rows: 1 })
            .collect()
    }
}

/// Indices of `items` in batches within `limit`: the longest items first, ties in their given
/// order, each batch padded to its first (longest) item's length.
pub fn longest_first(items: &[ItemSize], limit: BatchLimit) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(items[i].length));
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let (mut rows, mut length) = (0, 0);
    for i in order {
        let item = items[i];
        match batches.last_mut() {
            Some(batch) if limit.fits(batch.len() + 1, rows + item.rows, length) => {
                batch.push(i);
                rows += item.rows;
            }
            _ => {
                batches.push(vec![i]);
                (rows, length) = (item.rows, item.length);
            }
        }
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(lengths: &[usize], limit: BatchLimit) -> Vec<Vec<usize>> {
        longest_first(&ItemSize::rows_of(lengths), limit)
    }

    #[test]
    fn longest_first_keeps_ties_in_order() {
        let two = BatchLimit::items(2);
        assert_eq!(
            rows(&[2, 5, 1, 5, 3], two),
            [vec![1, 3], vec![4, 0], vec![2]]
        );
        assert_eq!(rows(&[1, 2], BatchLimit::items(0)), [vec![1], vec![0]]);
        assert!(rows(&[], two).is_empty());
    }

    /// A token budget starts a new batch when one more row would pass it, padding counted:
    /// long rows go in small batches, short rows in large ones; a row over the budget goes
    /// alone.
    #[test]
    fn a_token_budget_sizes_batches_by_their_longest_row() {
        let limit = BatchLimit::items(8).with_tokens(Some(1000));
        let lengths = [4000, 100, 500, 120, 480, 90, 110, 100, 95];
        assert_eq!(
            rows(&lengths, limit),
            [vec![0], vec![2, 4], vec![3, 6, 1, 7, 8, 5]]
        );
        // Without the budget, the first batch pads seven short rows to 4000 tokens.
        assert_eq!(
            rows(&lengths, BatchLimit::items(8)),
            [vec![0, 2, 4, 3, 6, 1, 7, 8], vec![5]]
        );
    }

    /// An item's rows all count against the budget (a WikiHop example's chunks).
    #[test]
    fn a_token_budget_counts_every_row_of_an_item() {
        let items = [
            ItemSize {
                length: 100,
                rows: 3,
            },
            ItemSize {
                length: 90,
                rows: 2,
            },
            ItemSize {
                length: 80,
                rows: 1,
            },
        ];
        let limit = BatchLimit::items(8).with_tokens(Some(500));
        // 3 × 100 + 2 × 100 = 500 fits; one more row (600) does not.
        assert_eq!(longest_first(&items, limit), [vec![0, 1], vec![2]]);
    }

    #[test]
    fn items_at_a_fixed_length() {
        let limit = BatchLimit::items(8);
        assert_eq!(limit.items_at(1, 4096), 8);
        let limit = limit.with_tokens(Some(10_000));
        assert_eq!(limit.items_at(1, 4096), 2);
        assert_eq!(limit.items_at(4, 1000), 2);
        assert_eq!(limit.items_at(1, 100), 8);
        // Over the budget alone: still one per batch.
        assert_eq!(limit.items_at(1, 20_000), 1);
        assert_eq!(limit.items_at(0, 0), 8);
    }
}
