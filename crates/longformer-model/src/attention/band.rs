//! The local (sliding-window) part of Longformer attention, computed directly on the band.
//!
//! Queries are cut into blocks of `window` rows (`window` = one-sided window `w`). Block `k` holds
//! queries `k·w .. (k+1)·w`; every key any of them may see lies in the span of blocks `k-1, k, k+1`,
//! `3w` keys. One `[w, d_head] × [d_head, 3w]` product per block gives every band score, so the
//! score tensor is `[.., n_blocks, w, 3w]`: `3w` columns per query for the `2w + 1` needed (HF's
//! overlapping chunks compute `4w` and re-lay them out several times). Memory is `O(n·w)`.
//!
//! Span column `s` of query row `r` in its block is key `i + s - r - w`, where `i` is the query, so
//! the window `|i - j| <= w` is `r <= s <= r + 2w`. A causal window (`i - w <= j <= i`) never
//! reaches block `k+1`, so its span is the `2w` keys of blocks `k-1, k`.

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

/// Number of key blocks in a query block's span: 3 (`k-1, k, k+1`), or 2 (`k-1, k`) when causal.
pub fn span_blocks(causal: bool) -> usize {
    if causal { 2 } else { 3 }
}

/// The keys (or values) each query block may see: the `span_blocks · window` keys of blocks
/// `k-1, k` and, unless causal, `k+1`; zero outside the sequence.
///
/// # Shapes
/// - x: `[batch_size, n_heads, padded_length, d_head]`
/// - output: `[batch_size, n_heads, n_blocks, span_blocks * window, d_head]`
pub fn key_span(x: Tensor<4>, window: usize, causal: bool) -> Tensor<5> {
    key_span_with_globals(x, None, window, causal)
}

/// [`key_span`] with the global tokens' keys (or values) first in every block's span, so one
/// product gives a block's scores against the global keys and its band, in HF's column order.
///
/// Built from views: the sequence padded with a block of zeros before it (and, unless causal,
/// after it) and cut into blocks, its span blocks as shifted narrows side by side, and the
/// global rows broadcast to every block, so the backward pass is slices and sums, no scatter.
///
/// # Shapes
/// - x: `[batch_size, n_heads, padded_length, d_head]`
/// - globals: `[batch_size, n_heads, n_global, d_head]`
/// - output: `[batch_size, n_heads, n_blocks, n_global + span_blocks * window, d_head]`
pub fn key_span_with_globals(
    x: Tensor<4>,
    globals: Option<Tensor<4>>,
    window: usize,
    causal: bool,
) -> Tensor<5> {
    let [b, h, lp, d] = x.dims();
    let device = x.device();
    let nb = lp / window;
    let spans = span_blocks(causal);
    let zeros = Tensor::<4>::zeros([b, h, window, d], &device);
    let mut rows = vec![zeros.clone(), x];
    if !causal {
        rows.push(zeros);
    }
    // Block j of `blocks` is sequence block j - 1; block k's span is blocks k .. k + spans.
    let blocks = Tensor::cat(rows, 2).reshape([b, h, nb + spans - 1, window, d]);
    let mut parts: Vec<Tensor<5>> = Vec::with_capacity(spans + 1);
    if let Some(globals) = globals {
        let g = globals.dims()[2];
        parts.push(globals.unsqueeze_dim::<5>(2).expand([b, h, nb, g, d]));
    }
    parts.extend((0..spans).map(|s| blocks.clone().narrow(2, s, nb)));
    Tensor::cat(parts, 3)
}

/// Band scores of every query block against its span.
///
/// # Shapes
/// - queries: `[batch_size, n_heads, n_blocks, window, d_head]`
/// - keys: `[batch_size, n_heads, n_blocks, span, d_head]`
/// - output: `[batch_size, n_heads, n_blocks, window, span]`
pub fn band_scores(queries: Tensor<5>, keys: Tensor<5>) -> Tensor<5> {
    queries.matmul(keys.swap_dims(3, 4))
}

/// Band probabilities in HF's layout: column `c` is key `i + c - window`.
///
/// A causal span (`2 * window` columns) is widened with zeros: its columns after the query are
/// zero.
///
/// # Shapes
/// - probs: `[batch_size, n_heads, n_blocks, window, span]`, span `3 * window` or `2 * window`
/// - output: `[batch_size, n_heads, padded_length, 2 * window + 1]`
pub fn band_to_diagonals(probs: Tensor<5>) -> Tensor<4> {
    let [b, h, nb, w, span] = probs.dims();
    let probs = if span < 3 * w {
        let zeros = Tensor::zeros([b, h, nb, w, 3 * w - span], &probs.device());
        Tensor::cat(vec![probs, zeros], 4)
    } else {
        probs
    };
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
        let span = key_span(arange(6, &device) + 1.0, 2, false);
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
    fn global_keys_lead_every_span() {
        let device = Device::default();
        let globals = arange(2, &device) + 10.0;
        let span = key_span_with_globals(arange(4, &device) + 1.0, Some(globals), 2, true);
        assert_eq!(span.dims(), [1, 1, 2, 6, 1]);
        let v: Vec<f32> = span.into_data().iter::<f32>().collect();
        assert_eq!(v, vec![10., 11., 0., 0., 1., 2., 10., 11., 1., 2., 3., 4.]);
    }

    #[test]
    fn causal_key_span_stops_at_its_own_block() {
        let device = Device::default();
        let span = key_span(arange(6, &device) + 1.0, 2, true);
        assert_eq!(span.dims(), [1, 1, 3, 4, 1]);
        let v: Vec<f32> = span.into_data().iter::<f32>().collect();
        assert_eq!(v, vec![0., 0., 1., 2., 1., 2., 3., 4., 3., 4., 5., 6.]);
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
