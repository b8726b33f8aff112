//! [`EmbeddingLookupOps`] on the CPU backends (flex, ndarray): the lookup is Burn's `select`,
//! the row sums a loop over the plan on the host, each row's values added in the plan's order
//! in f32 (the CubeCL kernel's order, so both give the same bits).

use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Backend, TensorMetadata};
use burn::tensor::DType;
use rayon::prelude::*;

use super::ops::EmbeddingLookupOps;
use crate::cpu::for_cpu_backends;
use crate::host::{read, read_ints, write};

/// [`EmbeddingLookupOps::segment_row_sums`] on the host.
fn segment_row_sums<B: Backend>(
    values: FloatTensor<B>,
    order: IntTensor<B>,
    starts: IntTensor<B>,
    targets: IntTensor<B>,
    rows: usize,
) -> FloatTensor<B> {
    let [_, d] = values.shape().dims::<2>();
    let dtype = values.dtype();
    let device = values.device();
    let values = read::<B>(if dtype == DType::F32 {
        values
    } else {
        B::float_cast(values, DType::F32.into())
    });
    let ints = |t| -> Vec<usize> { read_ints::<B>(t).into_iter().map(|i| i as usize).collect() };
    let (order, starts, targets) = (ints(order), ints(starts), ints(targets));
    let mut sums = vec![0f32; targets.len() * d];
    sums.par_chunks_mut(d.max(1))
        .zip(starts.par_windows(2))
        .for_each(|(sum, range)| {
            for &token in &order[range[0]..range[1]] {
                let row = &values[token * d..(token + 1) * d];
                for (s, v) in sum.iter_mut().zip(row) {
                    *s += v;
                }
            }
        });
    let mut out = vec![0f32; rows * d];
    for (s, &target) in targets.iter().enumerate() {
        out[target * d..(target + 1) * d].copy_from_slice(&sums[s * d..(s + 1) * d]);
    }
    let out = write::<B>(out, vec![rows, d], &device);
    if dtype == DType::F32 {
        out
    } else {
        B::float_cast(out, dtype.into())
    }
}

macro_rules! cpu_embedding_lookup {
    ($backend:ty) => {
        impl EmbeddingLookupOps for $backend {
            fn segment_row_sums(
                values: FloatTensor<Self>,
                order: IntTensor<Self>,
                starts: IntTensor<Self>,
                targets: IntTensor<Self>,
                rows: usize,
            ) -> FloatTensor<Self> {
                segment_row_sums::<Self>(values, order, starts, targets, rows)
            }
        }
    };
}

for_cpu_backends!(cpu_embedding_lookup);
