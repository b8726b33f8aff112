//! Batching items of mixed lengths with little padding: the longest first, neighbours in length
//! together, so each batch is padded only to its own longest item.

/// Indices of items of `lengths`, in batches of at most `batch_size` (at least 1): the longest
/// items first, ties in their given order.
pub fn longest_first(lengths: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    order
        .chunks(batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_first_keeps_ties_in_order() {
        assert_eq!(
            longest_first(&[2, 5, 1, 5, 3], 2),
            [vec![1, 3], vec![4, 0], vec![2]]
        );
        assert_eq!(longest_first(&[1, 2], 0), [vec![1], vec![0]]);
        assert!(longest_first(&[], 3).is_empty());
    }
}
