//! CubeCL kernels of [`super::LayerNormOps`]: the forward pass one cube per row, the backward
//! pass one cube per block of rows. A cube's `units` units split a row's vectors (unit `u`
//! owns vectors `u, u + units, ...`, kept in registers), and the row sums go through shared
//! memory. The row is read once and written once in either direction; Burn's composition of
//! tensor ops makes five passes forward and nine backward, most of them separate launches.

use burn_cubecl::cubecl;
use cubecl::prelude::*;

use crate::cube_common::{lane_sum, linear_cube};

/// `sums[i]`, given by every unit, summed over the cube's `units` units (a power of two): each
/// unit gets the totals back. Every unit of the cube must call it (it has barriers).
#[cube]
fn cube_sum<F: Float>(
    sums: &mut Array<F>,
    shared: &mut Shared<[F]>,
    #[comptime] count: usize,
    #[comptime] units: usize,
) {
    let u = UNIT_POS_X as usize;
    #[unroll]
    for i in 0..count {
        shared[i * units + u] = sums[i];
    }
    sync_cube();
    let mut half = CUBE_DIM_X as usize / 2;
    while half > 0 {
        if u < half {
            #[unroll]
            for i in 0..count {
                shared[i * units + u] = shared[i * units + u] + shared[i * units + u + half];
            }
        }
        sync_cube();
        half /= 2;
    }
    #[unroll]
    for i in 0..count {
        sums[i] = shared[i * units];
    }
    // Before the next call overwrites the totals.
    sync_cube();
}

/// This unit's vectors of row `row` of a `[rows, rv]`-vector tensor, zeros past the row's end.
#[cube]
fn load_owned<F: Float, N: Size>(
    t: &Tensor<Vector<F, N>>,
    row: usize,
    #[comptime] rv: usize,
    #[comptime] units: usize,
) -> Array<Vector<F, N>> {
    let per_unit = comptime!(rv.div_ceil(units));
    let u = UNIT_POS_X as usize;
    let mut owned = Array::<Vector<F, N>>::new(per_unit);
    #[unroll]
    for j in 0..per_unit {
        let c = u + j * units;
        let mut value = Vector::<F, N>::new(F::new(0.0));
        if c < rv {
            value = t[row * rv + c];
        }
        owned[j] = value;
    }
    owned
}

/// Forward: `y = (x - mean) · rstd · gamma + beta` of every row of `x` (`[rows, d]`, read as
/// `rv` vectors per row), with `rstd = 1 / √(var + epsilon)` (mean first, then the biased
/// variance of the centred row, as PyTorch), and each row's `mean` and `rstd` (`[rows]`).
///
/// Cube `i` of a [`crate::cube_common::linear_grid`] normalizes row `i`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_forward_kernel<F: Float, N: Size>(
    x: &Tensor<Vector<F, N>>,
    gamma: &Tensor<Vector<F, N>>,
    beta: &Tensor<Vector<F, N>>,
    y: &mut Tensor<Vector<F, N>>,
    mean: &mut Tensor<F>,
    rstd: &mut Tensor<F>,
    rows: usize,
    epsilon: f32,
    #[comptime] d: usize,
    #[comptime] rv: usize,
    #[comptime] units: usize,
    #[define(F)] _dtype: ElemType,
) {
    let row = linear_cube();
    if row >= rows {
        terminate!();
    }
    let per_unit = comptime!(rv.div_ceil(units));
    let u = UNIT_POS_X as usize;
    let n = F::cast_from(d as u32);
    let mut shared = Shared::<[F]>::new_slice(units);
    let mut sums = Array::<F>::new(1usize);

    let xs = load_owned::<F, N>(x, row, rv, units);
    let mut partial = Vector::<F, N>::new(F::new(0.0));
    #[unroll]
    for j in 0..per_unit {
        partial += xs[j];
    }
    sums[0] = lane_sum::<F, N>(partial);
    cube_sum::<F>(&mut sums, &mut shared, 1usize, units);
    let mu = sums[0] / n;

    let centre = Vector::<F, N>::new(mu);
    let mut squares = Vector::<F, N>::new(F::new(0.0));
    #[unroll]
    for j in 0..per_unit {
        if u + j * units < rv {
            let c = xs[j] - centre;
            squares += c * c;
        }
    }
    sums[0] = lane_sum::<F, N>(squares);
    cube_sum::<F>(&mut sums, &mut shared, 1usize, units);
    let r = F::new(1.0) / F::sqrt(sums[0] / n + F::cast_from(epsilon));

    let scale = Vector::<F, N>::new(r);
    #[unroll]
    for j in 0..per_unit {
        let c = u + j * units;
        if c < rv {
            y[row * rv + c] = (xs[j] - centre) * scale * gamma[c] + beta[c];
        }
    }
    if u == 0 {
        mean[row] = mu;
        rstd[row] = r;
    }
}

/// Backward: with `x̂ = (x - mean) · rstd` and `g = grad · gamma`, each row's
/// `dx = rstd · (g - mean(g) - x̂ · mean(g · x̂))`, and the block's share of
/// `dgamma = Σ_rows grad · x̂` and `dbeta = Σ_rows grad`: `partial` is `[2, blocks, d]` (read as
/// vectors), `partial[0, b]` the `dgamma` sum of block `b`'s rows, `partial[1, b]` its `dbeta`
/// sum.
///
/// Cube `b` of a [`crate::cube_common::linear_grid`] takes rows
/// `b · block_rows .. (b + 1) · block_rows` (fewer in the last block).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward_kernel<F: Float, N: Size>(
    x: &Tensor<Vector<F, N>>,
    gamma: &Tensor<Vector<F, N>>,
    mean: &Tensor<F>,
    rstd: &Tensor<F>,
    grad: &Tensor<Vector<F, N>>,
    dx: &mut Tensor<Vector<F, N>>,
    partial: &mut Tensor<Vector<F, N>>,
    rows: usize,
    block_rows: usize,
    blocks: usize,
    #[comptime] d: usize,
    #[comptime] rv: usize,
    #[comptime] units: usize,
    #[define(F)] _dtype: ElemType,
) {
    let block = linear_cube();
    if block >= blocks {
        terminate!();
    }
    let per_unit = comptime!(rv.div_ceil(units));
    let u = UNIT_POS_X as usize;
    let n = F::cast_from(d as u32);
    let mut shared = Shared::<[F]>::new_slice(comptime!(2 * units));
    let mut sums = Array::<F>::new(2usize);

    let gammas = load_owned::<F, N>(gamma, 0, rv, units);
    let mut d_gamma = Array::<Vector<F, N>>::new(per_unit);
    let mut d_beta = Array::<Vector<F, N>>::new(per_unit);
    #[unroll]
    for j in 0..per_unit {
        d_gamma[j] = Vector::<F, N>::new(F::new(0.0));
        d_beta[j] = Vector::<F, N>::new(F::new(0.0));
    }

    let first = block * block_rows;
    let end = min(rows, first + block_rows);
    for row in first..end {
        let centre = Vector::<F, N>::new(mean[row]);
        let r = rstd[row];
        let scale = Vector::<F, N>::new(r);
        let xs = load_owned::<F, N>(x, row, rv, units);
        let grads = load_owned::<F, N>(grad, row, rv, units);
        // Past the row's end `grad` is zero, so `g` and every product with it are too.
        let mut x_hat = Array::<Vector<F, N>>::new(per_unit);
        let mut g = Array::<Vector<F, N>>::new(per_unit);
        let mut sum_g = Vector::<F, N>::new(F::new(0.0));
        let mut sum_gx = Vector::<F, N>::new(F::new(0.0));
        #[unroll]
        for j in 0..per_unit {
            x_hat[j] = (xs[j] - centre) * scale;
            g[j] = grads[j] * gammas[j];
            sum_g += g[j];
            sum_gx += g[j] * x_hat[j];
            d_gamma[j] += grads[j] * x_hat[j];
            d_beta[j] += grads[j];
        }
        sums[0] = lane_sum::<F, N>(sum_g);
        sums[1] = lane_sum::<F, N>(sum_gx);
        cube_sum::<F>(&mut sums, &mut shared, 2usize, units);
        let mean_g = Vector::<F, N>::new(sums[0] / n);
        let mean_gx = Vector::<F, N>::new(sums[1] / n);
        #[unroll]
        for j in 0..per_unit {
            let c = u + j * units;
            if c < rv {
                dx[row * rv + c] = scale * (g[j] - mean_g - x_hat[j] * mean_gx);
            }
        }
    }

    #[unroll]
    for j in 0..per_unit {
        let c = u + j * units;
        if c < rv {
            partial[block * rv + c] = d_gamma[j];
            partial[(blocks + block) * rv + c] = d_beta[j];
        }
    }
}
