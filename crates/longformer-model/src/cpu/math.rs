//! Elementwise math for the CPU kernels, written so the compiler vectorizes the loops that call
//! it (libm's `expf` and `erff` are one call per element): `e^x` for `x <= 0` and `erf`.

/// `log2(e)`.
const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// `1.5 · 2^23`: adding it rounds an `f32` of magnitude below `2^22` to an integer, and the
/// sum's low mantissa bits hold that integer.
const ROUND: f32 = 12_582_912.0;
/// `ln 2` split so that `n · LN2_HI` is exact for the `n` that occur (Cody–Waite reduction).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Below this, `exp` is returned as `0` (`e^-87.3` is the smallest normal `f32`).
const EXP_FLOOR: f32 = -87.0;
/// Independent partial sums and maxima per loop (one AVX register of `f32`).
pub(crate) const LANES: usize = 8;

/// `e^x` for `x <= 0` (also `-inf`) within 2 ulp: Cody–Waite range reduction to
/// `|r| <= ln2 / 2` and Cephes' degree-6 polynomial, `0` below [`EXP_FLOOR`].
#[inline(always)]
pub(crate) fn exp_nonpositive(x: f32) -> f32 {
    let clamped = if x < EXP_FLOOR { EXP_FLOOR } else { x };
    let shifted = clamped * LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    let exponent = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let two_n = f32::from_bits((exponent.wrapping_add(127) << 23) as u32);
    if x < EXP_FLOOR { 0.0 } else { e_r * two_n }
}

/// `erf(x)` within 5e-7 (absolute; the formula is within 1.5e-7, f32 rounding adds the rest):
/// Abramowitz and Stegun 7.1.26,
/// `1 - t·(a1 + t·(a2 + ...))·e^(-x²)` with `t = 1 / (1 + p·|x|)`, odd in `x`.
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let mut poly = 1.061_405_4;
    poly = poly * t - 1.453_152;
    poly = poly * t + 1.421_413_8;
    poly = poly * t - 0.284_496_74;
    poly = poly * t + 0.254_829_6;
    let y = 1.0 - poly * t * exp_nonpositive(-a * a);
    if x < 0.0 { -y } else { y }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_libm_to_two_ulp() {
        let mut worst = 0.0f32;
        let mut x = -87.0f32;
        while x <= 0.0 {
            let (ours, libm) = (exp_nonpositive(x), x.exp());
            worst = worst.max((ours - libm).abs() / libm);
            x += 0.000_37;
        }
        assert!(worst < 2.5e-7, "worst relative error {worst}");
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_nonpositive(-100.0), 0.0);
        assert_eq!(exp_nonpositive(0.0), 1.0);
    }

    #[test]
    fn erf_matches_a_series_to_5e7() {
        // erf(x) = 2/√π Σ (-1)^n x^(2n+1) / (n! (2n+1)), in f64 (exact enough for |x| <= 4).
        let series = |x: f64| {
            let (mut term, mut sum) = (x, x);
            for n in 1..200 {
                term *= -x * x / n as f64;
                sum += term / (2 * n + 1) as f64;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        };
        let mut worst = 0.0f64;
        let mut x = -4.0f32;
        while x <= 4.0 {
            worst = worst.max((erf(x) as f64 - series(x as f64)).abs());
            x += 0.000_73;
        }
        assert!(worst < 5e-7, "worst absolute error {worst}");
        assert_eq!(erf(10.0), 1.0);
        assert_eq!(erf(-10.0), -1.0);
        assert_eq!(erf(0.0), 0.0);
    }
}
