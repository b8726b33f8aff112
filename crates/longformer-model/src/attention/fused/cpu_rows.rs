//! The per-row arithmetic of the CPU fused op (softmax of a block row, the backward pass's
//! recomputed probabilities), written as straight loops over contiguous slices so the compiler
//! vectorizes them, with an `exp` that vectorizes too (libm's `expf` is one call per score).
//!
//! Masks arrive as additive biases (`0` or `-inf` per key), so a masked score's `exp` is an
//! exact `0` and no loop branches per element. [`softmax`], [`backward`] and [`drop_band`] run
//! the loops compiled for AVX2 + FMA where the CPU has them; the portable build is SSE2.

use crate::cpu::math::{LANES, exp_nonpositive};
use crate::cpu::with_avx2;

/// `max(acc, max_c (scores[c] + bias[c]))`.
#[inline(always)]
fn biased_max(scores: &[f32], bias: &[f32], acc: f32) -> f32 {
    let bias = &bias[..scores.len()];
    let (blocks, tail) = scores.as_chunks::<LANES>();
    let (bias_blocks, bias_tail) = bias.as_chunks::<LANES>();
    let mut lanes = [acc; LANES];
    for (s, b) in blocks.iter().zip(bias_blocks) {
        for l in 0..LANES {
            let x = s[l] + b[l];
            lanes[l] = if x > lanes[l] { x } else { lanes[l] };
        }
    }
    let mut max = acc;
    for (s, b) in tail.iter().zip(bias_tail) {
        let x = s + b;
        max = if x > max { x } else { max };
    }
    lanes
        .into_iter()
        .fold(max, |m, x| if x > m { x } else { m })
}

/// `scores[c] = e^(scores[c] + bias[c] - shift)`; returns their sum. (Two passes: a map the
/// compiler vectorizes, and a sum in [`LANES`] partial sums; one loop doing both stays scalar.)
#[inline(always)]
fn biased_exp(scores: &mut [f32], bias: &[f32], shift: f32) -> f32 {
    for (s, b) in scores.iter_mut().zip(bias) {
        *s = exp_nonpositive(*s + b - shift);
    }
    lane_sum(scores)
}

/// The sum of `values` in [`LANES`] independent partial sums (vectorizable).
#[inline(always)]
fn lane_sum(values: &[f32]) -> f32 {
    let (blocks, tail) = values.as_chunks::<LANES>();
    let mut lanes = [0.0f32; LANES];
    for block in blocks {
        for l in 0..LANES {
            lanes[l] += block[l];
        }
    }
    lanes.into_iter().sum::<f32>() + tail.iter().sum::<f32>()
}

/// `values[c] *= by`.
#[inline(always)]
fn scale(values: &mut [f32], by: f32) {
    for x in values {
        *x *= by;
    }
}

/// One query's scores `[g + span]` (global keys first, then the block's key span), of which the
/// band columns `band.0..band.1` are inside the query's window: replaced by its attention
/// probabilities (zero outside the window and where the biases are `-inf`). Returns the
/// log-sum-exp, or `None` (and all zeros) when no key is visible.
#[inline(always)]
fn softmax_row(
    row: &mut [f32],
    global_bias: &[f32],
    (start, end): (usize, usize),
    band_bias: &[f32],
) -> Option<f32> {
    let g = global_bias.len();
    let max = biased_max(
        &row[start..end],
        band_bias,
        biased_max(&row[..g], global_bias, f32::NEG_INFINITY),
    );
    if max == f32::NEG_INFINITY {
        row.fill(0.0);
        return None;
    }
    let sum = biased_exp(&mut row[..g], global_bias, max)
        + biased_exp(&mut row[start..end], band_bias, max);
    row[g..start].fill(0.0);
    row[end..].fill(0.0);
    let inv = 1.0 / sum;
    scale(&mut row[..g], inv);
    scale(&mut row[start..end], inv);
    Some(max + sum.ln())
}

/// Attention dropout of one query's band scores: which of them are kept is a hash of the seed,
/// the `(row, head)` pair, the query and the key, as in the GPU kernels (`kernels::band_keep`),
/// so the backward pass recomputes it.
#[derive(Clone, Copy)]
pub(super) struct BandDropout {
    /// The hash of everything but the key.
    row_hash: u32,
    /// The key of the first score given.
    first_key: u32,
    prob: f32,
}

impl BandDropout {
    /// Dropout with probability `prob` for query `i` of `(row, head)` pair `rh`, over scores
    /// that start at key `first_key`.
    pub(super) fn new(seed: u32, rh: usize, i: usize, first_key: usize, prob: f32) -> Self {
        Self {
            row_hash: seed
                ^ (rh as u32).wrapping_mul(0x9E37_79B1)
                ^ (i as u32).wrapping_mul(0x85EB_CA77),
            first_key: first_key as u32,
            prob,
        }
    }

    /// `1 / (1 - prob)` if the score of key `first_key + c` is kept, else `0`.
    #[inline(always)]
    fn keep(self, c: u32) -> f32 {
        let mut x = self.row_hash ^ self.first_key.wrapping_add(c).wrapping_mul(0xC2B2_AE3D);
        x ^= x >> 16;
        x = x.wrapping_mul(0x7FEB_352D);
        x ^= x >> 15;
        x = x.wrapping_mul(0x846C_A68B);
        x ^= x >> 16;
        // 24 bits: exact in an i32 and an f32 (and the i32 conversion vectorizes).
        let uniform = ((x >> 8) as i32) as f32 * (1.0 / 16_777_216.0);
        if uniform >= self.prob {
            1.0 / (1.0 - self.prob)
        } else {
            0.0
        }
    }
}

/// `scores[c] *= keep(c)`: dropout on the band scores of one query.
#[inline(always)]
fn drop_band_row(scores: &mut [f32], dropout: BandDropout) {
    for (s, c) in scores.iter_mut().zip(0u32..) {
        *s *= dropout.keep(c);
    }
}

/// The backward pass's row: from the scores `probs` (`q·k`, the span's columns) and
/// `ds` (`grad·v`), writes the probabilities `p = e^(score + bias - lse)` (times the dropout's
/// keep factor) and the score gradients `p · (ds · keep - delta)` in place for the window's
/// columns `window.0..window.1`, zero elsewhere.
#[inline(always)]
fn backward_row(
    probs: &mut [f32],
    ds: &mut [f32],
    (start, end): (usize, usize),
    bias: &[f32],
    (lse, delta): (f32, f32),
    dropout: Option<BandDropout>,
) {
    let window = probs[start..end]
        .iter_mut()
        .zip(&mut ds[start..end])
        .zip(bias);
    match dropout {
        None => {
            for ((p, d), b) in window {
                *p = exp_nonpositive(*p + b - lse);
                *d = *p * (*d - delta);
            }
        }
        Some(dropout) => {
            for (((p, d), b), c) in window.zip(0u32..) {
                let keep = dropout.keep(c);
                let prob = exp_nonpositive(*p + b - lse);
                *d = prob * (*d * keep - delta);
                *p = prob * keep;
            }
        }
    }
    for buffer in [&mut *probs, &mut *ds] {
        buffer[..start].fill(0.0);
        buffer[end..].fill(0.0);
    }
}

with_avx2! {
    /// [`softmax_row`], vectorized for this CPU.
    pub(super) fn softmax(
        row: &mut [f32],
        global_bias: &[f32],
        band: (usize, usize),
        band_bias: &[f32],
    ) -> Option<f32> = softmax_row;
}

with_avx2! {
    /// [`backward_row`], vectorized for this CPU.
    pub(super) fn backward(
        probs: &mut [f32],
        ds: &mut [f32],
        window: (usize, usize),
        bias: &[f32],
        lse_delta: (f32, f32),
        dropout: Option<BandDropout>,
    ) = backward_row;
}

with_avx2! {
    /// [`drop_band_row`], vectorized for this CPU.
    pub(super) fn drop_band(scores: &mut [f32], dropout: BandDropout) = drop_band_row;
}

/// `0` where `ok > 0.5`, `-inf` elsewhere: a `{0, 1}` mask as an additive bias.
pub(super) fn additive_bias(ok: &[f32]) -> Vec<f32> {
    ok.iter()
        .map(|&ok| if ok > 0.5 { 0.0 } else { f32::NEG_INFINITY })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_row_matches_a_direct_softmax() {
        let g = 3;
        let row: Vec<f32> = (0..40)
            .map(|c| ((c * 7919) % 23) as f32 * 0.37 - 4.0)
            .collect();
        let global_bias = [0.0, f32::NEG_INFINITY, 0.0];
        let (start, end) = (g + 5, g + 30);
        let band_bias: Vec<f32> = (start..end)
            .map(|c| if c % 4 == 0 { f32::NEG_INFINITY } else { 0.0 })
            .collect();
        let visible = |c: usize| {
            if c < g {
                global_bias[c] == 0.0
            } else {
                (start..end).contains(&c) && band_bias[c - start] == 0.0
            }
        };
        let max = (0..row.len())
            .filter(|&c| visible(c))
            .map(|c| row[c])
            .fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = (0..row.len())
            .filter(|&c| visible(c))
            .map(|c| (row[c] - max).exp())
            .sum();
        let portable = |row: &mut [f32]| softmax_row(row, &global_bias, (start, end), &band_bias);
        let detected = |row: &mut [f32]| softmax(row, &global_bias, (start, end), &band_bias);
        for run in [&portable as &dyn Fn(&mut [f32]) -> Option<f32>, &detected] {
            let mut ours = row.clone();
            let lse = run(&mut ours).unwrap();
            assert!((lse - (max + sum.ln())).abs() < 1e-5);
            for (c, p) in ours.iter().enumerate() {
                let expected = if visible(c) {
                    (row[c] - max).exp() / sum
                } else {
                    0.0
                };
                assert!((p - expected).abs() < 1e-6, "column {c}: {p} vs {expected}");
            }
        }
        let mut hidden = row.clone();
        let none = vec![f32::NEG_INFINITY; end - start];
        let all_masked = [f32::NEG_INFINITY; 3];
        assert_eq!(softmax(&mut hidden, &all_masked, (start, end), &none), None);
        assert!(hidden.iter().all(|&p| p == 0.0));
    }
}
