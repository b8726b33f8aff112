//! [`DropoutMaskOps`] on the CPU backends (flex, ndarray): the hash of every element, rows in
//! parallel.

use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Backend, TensorMetadata};
use rayon::prelude::*;

use super::ops::DropoutMaskOps;
use super::{keep_factor, mask_row_hash};
use crate::cpu::for_cpu_backends;
use crate::host::{read_ints, write};

/// [`DropoutMaskOps::dropout_keep_scale`] on the host.
fn keep_scale<B: Backend>(
    seed: IntTensor<B>,
    rows: usize,
    cols: usize,
    threshold: usize,
    scale: f32,
) -> FloatTensor<B> {
    let device = seed.device();
    let key = read_ints::<B>(seed)[0];
    let keep = (threshold as u32, scale);
    let mut out = vec![0f32; rows * cols];
    out.par_chunks_mut(cols.max(1))
        .enumerate()
        .for_each(|(r, row)| {
            let row_hash = mask_row_hash(key, r);
            for (c, x) in row.iter_mut().enumerate() {
                *x = keep_factor(row_hash, c, keep);
            }
        });
    write::<B>(out, vec![rows, cols], &device)
}

macro_rules! cpu_dropout_mask {
    ($backend:ty) => {
        impl DropoutMaskOps for $backend {
            fn dropout_keep_scale(
                seed: IntTensor<Self>,
                rows: usize,
                cols: usize,
                threshold: usize,
                scale: f32,
            ) -> FloatTensor<Self> {
                keep_scale::<Self>(seed, rows, cols, threshold, scale)
            }
        }
    };
}

for_cpu_backends!(cpu_dropout_mask);
