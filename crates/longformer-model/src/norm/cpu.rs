//! [`LayerNormOps`] on the CPU backends (flex, ndarray): one vectorized pass over the rows per
//! direction, in parallel blocks of rows. The backward pass's `dgamma` and `dbeta` are summed
//! per block, then over the blocks in order, so the result does not depend on the threads.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, TensorMetadata};
use rayon::prelude::*;

use super::ops::LayerNormOps;
use crate::cpu::{for_cpu_backends, with_avx2};
use crate::host::{read, write};

/// Rows per parallel task.
const ROWS: usize = 32;

/// Lanes of the partial sums (a vector register of f32 under AVX2).
const LANES: usize = 8;

/// `Σ f(i)` over `0..n` in [`LANES`] partial sums, which the compiler vectorizes (one running
/// sum cannot be: float addition is not associative).
#[inline(always)]
fn lane_sum(n: usize, f: impl Fn(usize) -> f32) -> f32 {
    let mut lanes = [0f32; LANES];
    let whole = n - n % LANES;
    for start in (0..whole).step_by(LANES) {
        for (l, lane) in lanes.iter_mut().enumerate() {
            *lane += f(start + l);
        }
    }
    let tail: f32 = (whole..n).map(&f).sum();
    lanes.iter().sum::<f32>() + tail
}

/// Normalizes `rows` (`[r, d]`) into `y`, writing each row's mean and `rstd`.
#[inline(always)]
fn forward_rows(
    rows: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f32,
    y: &mut [f32],
    stats: &mut [[f32; 2]],
) {
    let d = gamma.len();
    for ((x, y), stat) in rows.chunks_exact(d).zip(y.chunks_exact_mut(d)).zip(stats) {
        let mean = lane_sum(d, |i| x[i]) / d as f32;
        let var = lane_sum(d, |i| (x[i] - mean) * (x[i] - mean)) / d as f32;
        let rstd = 1.0 / (var + epsilon).sqrt();
        for i in 0..d {
            y[i] = (x[i] - mean) * rstd * gamma[i] + beta[i];
        }
        *stat = [mean, rstd];
    }
}

with_avx2! {
    fn forward_block(
        rows: &[f32],
        gamma: &[f32],
        beta: &[f32],
        epsilon: f32,
        y: &mut [f32],
        stats: &mut [[f32; 2]],
    ) = forward_rows;
}

/// The gradients of `rows` (`[r, d]`): `dx` into `grad` (which holds the output gradient), and
/// the rows' shares of `dgamma` and `dbeta` added to `sums` (`[2, d]`).
#[inline(always)]
fn backward_rows(
    rows: &[f32],
    gamma: &[f32],
    stats: &[[f32; 2]],
    grad: &mut [f32],
    sums: &mut [f32],
) {
    let d = gamma.len();
    let (d_gamma, d_beta) = sums.split_at_mut(d);
    for ((x, dy), &[mean, rstd]) in rows
        .chunks_exact(d)
        .zip(grad.chunks_exact_mut(d))
        .zip(stats)
    {
        let x_hat = |i: usize| (x[i] - mean) * rstd;
        let mean_g = lane_sum(d, |i| dy[i] * gamma[i]) / d as f32;
        let mean_gx = lane_sum(d, |i| dy[i] * gamma[i] * x_hat(i)) / d as f32;
        for i in 0..d {
            let (g, h) = (dy[i], x_hat(i));
            d_gamma[i] += g * h;
            d_beta[i] += g;
            dy[i] = rstd * (g * gamma[i] - mean_g - h * mean_gx);
        }
    }
}

with_avx2! {
    fn backward_block(
        rows: &[f32],
        gamma: &[f32],
        stats: &[[f32; 2]],
        grad: &mut [f32],
        sums: &mut [f32],
    ) = backward_rows;
}

fn forward<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    epsilon: f32,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let device = x.device();
    let [rows, d] = x.shape().dims::<2>();
    let (x, gamma, beta) = (read::<B>(x), read::<B>(gamma), read::<B>(beta));
    let mut y = vec![0f32; rows * d];
    let mut stats = vec![[0f32; 2]; rows];
    y.par_chunks_mut(ROWS * d)
        .zip(x.par_chunks(ROWS * d))
        .zip(stats.par_chunks_mut(ROWS))
        .for_each(|((y, x), stats)| forward_block(x, &gamma, &beta, epsilon, y, stats));
    let (mean, rstd) = stats.into_iter().map(|[m, r]| (m, r)).unzip();
    (
        write::<B>(y, vec![rows, d], &device),
        write::<B>(mean, vec![rows], &device),
        write::<B>(rstd, vec![rows], &device),
    )
}

fn backward<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    mean: FloatTensor<B>,
    rstd: FloatTensor<B>,
    grad: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let device = x.device();
    let [rows, d] = x.shape().dims::<2>();
    let (x, gamma) = (read::<B>(x), read::<B>(gamma));
    let stats: Vec<[f32; 2]> = read::<B>(mean)
        .into_iter()
        .zip(read::<B>(rstd))
        .map(|(m, r)| [m, r])
        .collect();
    let mut grad = read::<B>(grad);
    let blocks: Vec<Vec<f32>> = grad
        .par_chunks_mut(ROWS * d)
        .zip(x.par_chunks(ROWS * d))
        .zip(stats.par_chunks(ROWS))
        .map(|((grad, x), stats)| {
            let mut sums = vec![0f32; 2 * d];
            backward_block(x, &gamma, stats, grad, &mut sums);
            sums
        })
        .collect();
    // The blocks' sums in block order: the same bits whatever thread ran which block.
    let mut sums = vec![0f32; 2 * d];
    for block in &blocks {
        for (s, b) in sums.iter_mut().zip(block) {
            *s += b;
        }
    }
    let d_beta = sums.split_off(d);
    (
        write::<B>(grad, vec![rows, d], &device),
        write::<B>(sums, vec![d], &device),
        write::<B>(d_beta, vec![d], &device),
    )
}

macro_rules! cpu_layer_norm {
    ($backend:ty) => {
        impl LayerNormOps for $backend {
            fn layer_norm_forward(
                x: FloatTensor<Self>,
                gamma: FloatTensor<Self>,
                beta: FloatTensor<Self>,
                epsilon: f32,
            ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
                forward::<Self>(x, gamma, beta, epsilon)
            }

            fn layer_norm_backward(
                x: FloatTensor<Self>,
                gamma: FloatTensor<Self>,
                mean: FloatTensor<Self>,
                rstd: FloatTensor<Self>,
                grad: FloatTensor<Self>,
            ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
                backward::<Self>(x, gamma, mean, rstd, grad)
            }
        }
    };
}

for_cpu_backends!(cpu_layer_norm);
