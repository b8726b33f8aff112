//! The local (sliding-window) part of Longformer attention, computed directly on the band.
//!
//! Queries are cut into blocks of `window` rows (`window` = one-sided window `w`). Block `k` holds
//! queries `k·w .. (k+1)·w`; every key any of them may see lies in the span of blocks `k-1, k, k+1`,
//! `3w` keys. One `[w, d_head] × [d_head, 3w]` product per block gives every band score, so the
//! score tensor is `[.., n_blocks, w, 3w]`: `3w` columns per query for the `2w + 1` needed (HF's
//! overlapping chunks compute `4w` and re-lay them out several times). Memory is `O(n·w)`.
//!
//! Span column `s` of query row `r` in its block is key `i + s - r - w`, where `i` is the query, so
//! the window `|i - j| <= w` is `r <= s <= r + 2w`.

use burn::tensor::{Int, Tensor, TensorData};

/// Pads `[batch_size, n_heads, seq_length, d_head]` with zero rows to `padded_length`.
pub fn pad_rows(x: Tensor<4>, padded_length: usize) -> Tensor<4> {
    let [b, h, l, d] = x.dims();
    if l == padded_length {
        return x;
    }
    let zeros = Tensor::zeros([b, h, padded_length - l, d], &x.device());
    Tensor::cat(vec![x, zeros], 2)
}

/// Queries cut into blocks.
///
/// # Shapes
/// - x: `[batch_size, n_heads, padded_length, d_head]`
/// - output: `[batch_size, n_heads, n_blocks, window, d_head]`
pub fn query_blocks(x: Tensor<4>, window: usize) -> Tensor<5> {
    let [b, h, lp, d] = x.dims();
    x.reshape([b, h, lp / window, window, d])
}

/// The `3·window` keys (or values) each query block may see: blocks `k-1, k, k+1`, zero outside.
///
/// # Shapes
/// - x: `[batch_size, n_heads, padded_length, d_head]`
/// - output: `[batch_size, n_heads, n_blocks, 3 * window, d_head]`
pub fn key_span(x: Tensor<4>, window: usize) -> Tensor<5> {
    let [b, h, lp, d] = x.dims();
    let nb = lp / window;
    let zeros = Tensor::<4>::zeros([b, h, window, d], &x.device());
    let framed = Tensor::cat(vec![zeros.clone(), x, zeros], 2).reshape([b, h, nb + 2, window, d]);
    Tensor::cat(
        vec![
            framed.clone().narrow(2, 0, nb),
            framed.clone().narrow(2, 1, nb),
            framed.narrow(2, 2, nb),
        ],
        3,
    )
}

/// Band scores of every query block against its span.
///
/// # Shapes
/// - queries: `[batch_size, n_heads, n_blocks, window, d_head]`
/// - keys: `[batch_size, n_heads, n_blocks, 3 * window, d_head]`
/// - output: `[batch_size, n_heads, n_blocks, window, 3 * window]`
pub fn band_scores(queries: Tensor<5>, keys: Tensor<5>) -> Tensor<5> {
    queries.matmul(keys.swap_dims(3, 4))
}

/// Band probabilities in HF's layout: column `c` is key `i + c - window`.
///
/// # Shapes
/// - probs: `[batch_size, n_heads, n_blocks, window, 3 * window]`
/// - output: `[batch_size, n_heads, padded_length, 2 * window + 1]`
pub fn band_to_diagonals(probs: Tensor<5>) -> Tensor<4> {
    let [b, h, nb, w, _] = probs.dims();
    let cols = 2 * w + 1;
    let idx: Vec<i64> = (0..w)
        .flat_map(|r| (0..cols).map(move |c| (r + c) as i64))
        .collect();
    let idx =
        Tensor::<5, Int>::from_data(TensorData::new(idx, [1, 1, 1, w, cols]), &probs.device())
            .expand([b, h, nb, w, cols]);
    probs.gather(4, idx).reshape([b, h, nb * w, cols])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn arange(n: usize, device: &Device) -> Tensor<4> {
        Tensor::<1, Int>::arange(0..n as i64, device)
            .float()
            .reshape([1, 1, n, 1])
    }

    #[test]
    fn key_span_holds_neighbouring_blocks() {
        let device = Device::default();
        // Keys 0..6 in blocks of 2: block 1 sees keys 0..6 (positions 0,1 | 2,3 | 4,5).
        let span = key_span(arange(6, &device) + 1.0, 2);
        assert_eq!(span.dims(), [1, 1, 3, 6, 1]);
        let v: Vec<f32> = span.into_data().iter::<f32>().collect();
        // Zero marks "outside the sequence".
        assert_eq!(
            v,
            vec![
                0., 0., 1., 2., 3., 4., 1., 2., 3., 4., 5., 6., 3., 4., 5., 6., 0., 0.
            ]
        );
    }

    #[test]
    fn diagonals_pick_the_window_of_each_row() {
        let device = Device::default();
        // Probabilities equal to the span column index: row r must get r, r+1, ..., r+2w.
        let w = 2;
        let cols: Vec<f32> = (0..w).flat_map(|_| (0..3 * w).map(|s| s as f32)).collect();
        let probs = Tensor::<5>::from_data(TensorData::new(cols, [1, 1, 1, w, 3 * w]), &device);
        let diag: Vec<f32> = band_to_diagonals(probs).into_data().iter::<f32>().collect();
        assert_eq!(diag, vec![0., 1., 2., 3., 4., 1., 2., 3., 4., 5.]);
    }
}
