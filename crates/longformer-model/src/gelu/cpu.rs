//! [`ExactGeluOps`] on the CPU backends (flex, ndarray): one vectorized pass over the values,
//! in parallel chunks.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, TensorMetadata};
use rayon::prelude::*;

use super::INV_SQRT_2PI;
use super::ops::ExactGeluOps;
use crate::cpu::math::{erf, exp_nonpositive};
use crate::cpu::{for_cpu_backends, with_avx2};
use crate::host::{read, write};

/// Values per parallel task.
const CHUNK: usize = 1 << 14;

/// `√½`.
const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;

#[inline(always)]
fn gelu_in_place(values: &mut [f32]) {
    for x in values {
        *x *= 0.5 * (1.0 + erf(*x * SQRT_HALF));
    }
}

#[inline(always)]
fn gelu_grad_in_place(x: &[f32], grad: &mut [f32]) {
    for (g, &x) in grad.iter_mut().zip(x) {
        let cdf = 0.5 * (1.0 + erf(x * SQRT_HALF));
        let pdf = INV_SQRT_2PI * exp_nonpositive(-0.5 * x * x);
        *g *= cdf + x * pdf;
    }
}

with_avx2! {
    fn gelu_chunk(values: &mut [f32]) = gelu_in_place;
}

with_avx2! {
    fn gelu_grad_chunk(x: &[f32], grad: &mut [f32]) = gelu_grad_in_place;
}

fn gelu<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let (device, shape) = (x.device(), x.shape().to_vec());
    let mut values = read::<B>(x);
    values.par_chunks_mut(CHUNK).for_each(gelu_chunk);
    write::<B>(values, shape, &device)
}

fn gelu_backward<B: Backend>(x: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
    let (device, shape) = (x.device(), x.shape().to_vec());
    let (x, mut grad) = (read::<B>(x), read::<B>(grad));
    grad.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(grad, x)| gelu_grad_chunk(x, grad));
    write::<B>(grad, shape, &device)
}

macro_rules! cpu_exact_gelu {
    ($backend:ty) => {
        impl ExactGeluOps for $backend {
            fn exact_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
                gelu::<Self>(x)
            }

            fn exact_gelu_backward(
                x: FloatTensor<Self>,
                grad: FloatTensor<Self>,
            ) -> FloatTensor<Self> {
                gelu_backward::<Self>(x, grad)
            }
        }
    };
}

for_cpu_backends!(cpu_exact_gelu);
