//! Shared pieces of the CPU kernels (flex, ndarray): moving a tensor's values in and out of a
//! `Vec<f32>`, and vectorizable elementwise math ([`math`]).

pub(crate) mod math;

/// Defines `fn $name(args) -> R` that calls `$portable(args)`, compiled a second time for AVX2 +
/// FMA and run so where the CPU has both (the same loops, vectorized 8 wide instead of 4).
macro_rules! with_avx2 {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $portable:ident;) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $portable($($arg),*)
                }
                if $crate::cpu::has_avx2_fma() {
                    // SAFETY: the CPU has AVX2 and FMA.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $portable($($arg),*)
        }
    };
}
pub(crate) use with_avx2;

/// Invokes `$implement!(backend)` for each CPU backend this crate is built with (flex,
/// ndarray): the backend extensions' CPU implementations are one macro each.
macro_rules! for_cpu_backends {
    ($implement:ident) => {
        #[cfg(feature = "flex")]
        $implement!(burn::backend::Flex);
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)] // Burn 0.22 deprecates ndarray; it is still one of our backends
        mod ndarray_impl {
            use super::*;
            $implement!(burn::backend::NdArray);
        }
    };
}
pub(crate) use for_cpu_backends;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use burn::backend::Backend;
use burn::backend::tensor::{Device, FloatTensor};
use burn::tensor::{Shape, TensorData};

/// Runs a future the CPU backends complete without waiting (their reads are immediate).
pub(crate) fn block_on<O>(future: impl Future<Output = O>) -> O {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::yield_now();
    }
}

/// The values of a float tensor as f32 (no copy when it already is one, contiguous).
pub(crate) fn read<B: Backend>(t: FloatTensor<B>) -> Vec<f32> {
    let data = block_on(B::float_into_data(t)).expect("a CPU tensor reads back");
    data.try_into_vec_as::<f32>()
        .expect("a float tensor reads back as f32")
}

/// A tensor of `shape` holding `values`.
pub(crate) fn write<B: Backend>(
    values: Vec<f32>,
    shape: Vec<usize>,
    device: &Device<B>,
) -> FloatTensor<B> {
    B::float_from_data(TensorData::new(values, Shape::from(shape)), device)
}

/// Whether this CPU has AVX2 and FMA, for which the kernels' loops are also compiled.
pub(crate) fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
