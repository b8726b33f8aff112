//! Shared pieces of the CPU kernels (flex, ndarray): the AVX2 + FMA compilation of their loops,
//! one implementation per CPU backend, and vectorizable elementwise math ([`math`]). Moving a
//! tensor's values in and out of a `Vec<f32>` is [`crate::host`]'s.

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
