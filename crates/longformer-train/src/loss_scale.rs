//! Dynamic loss scaling for training with f16 passes (PyTorch's `torch.amp.GradScaler`).
//!
//! f16's smallest normal value is 6.1e-5 and its smallest subnormal 6e-8: the gradients of a
//! loss averaged over batches and accumulated passes fall below that and round to zero or to a
//! few bits in the backward pass. So the loss is multiplied by a scale `S` before the backward
//! pass, which lifts every gradient by `S`; the gradients are cast to f32 and multiplied by
//! `1 / S` (exact for a power of two) before clipping and AdamW. When the scaled gradients
//! overflow f16 (a gradient norm of infinity or NaN), the optimizer step is skipped, as
//! PyTorch's is, and `S` halves; after `growth_interval` steps without overflow it doubles.
//!
//! bf16 and f32 passes need none of this (bf16 has f32's exponent range); on GPUs reached
//! through WGSL or Vulkan, f16 is the half type that has arithmetic (bf16 only on Metal).

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// The smallest loss scale: below f16's smallest subnormal (2^-24) as a factor, a scaled
/// gradient of any size that f32 holds well cannot come back from the cast, so overflow that
/// persists down to here is not the scale's doing.
pub const MIN_LOSS_SCALE: f32 = 1.0 / (1 << 24) as f32;

/// How the loss scale starts and grows (saved with the run's settings).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScaling {
    /// The first scale (`--loss-scale`); PyTorch's `init_scale`.
    pub init_scale: f32,
    /// Optimizer steps without overflow after which the scale doubles
    /// (`--loss-scale-growth-interval`); PyTorch's `growth_interval`.
    pub growth_interval: usize,
}

impl Default for LossScaling {
    /// PyTorch's `GradScaler` defaults: 2^16, doubled after 2,000 steps without overflow.
    fn default() -> Self {
        Self {
            init_scale: 65536.0,
            growth_interval: 2000,
        }
    }
}

impl LossScaling {
    /// Rejects values that cannot scale, naming the `longformer train` flag.
    pub fn validate(&self) -> Result<()> {
        if !(self.init_scale.is_finite() && self.init_scale >= MIN_LOSS_SCALE) {
            bail!(
                "--loss-scale must be a finite number of at least 2^-24, got {}",
                self.init_scale
            );
        }
        if self.growth_interval == 0 {
            bail!("--loss-scale-growth-interval must be at least 1");
        }
        Ok(())
    }
}

/// Where the scale stands (saved in each checkpoint, so a resumed run scales as the
/// uninterrupted one would).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    /// The scale the next step's loss is multiplied by.
    pub scale: f32,
    /// Steps since the last overflow or growth.
    pub steps_without_overflow: usize,
}

/// What to do with a step's gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaledStep {
    /// They are finite: the optimizer steps.
    Apply,
    /// They overflowed: no optimizer step; the scale has halved.
    Skip,
}

impl LossScaler {
    /// The scaler at the start of a run.
    pub fn new(settings: &LossScaling) -> Self {
        Self {
            scale: settings.init_scale,
            steps_without_overflow: 0,
        }
    }

    /// Takes the outcome of a step whose unscaled gradient norm is `norm`: a finite norm
    /// applies the step (and, the `growth_interval`-th time in a row, doubles the scale); any
    /// other skips it and halves the scale.
    ///
    /// # Errors
    /// When halving would take the scale below [`MIN_LOSS_SCALE`]: the gradients are not
    /// finite at any scale, so the backward pass itself leaves f16's range.
    pub fn update(&mut self, norm: f32, settings: &LossScaling) -> Result<ScaledStep> {
        if norm.is_finite() {
            self.steps_without_overflow += 1;
            if self.steps_without_overflow >= settings.growth_interval {
                self.scale *= 2.0;
                self.steps_without_overflow = 0;
            }
            return Ok(ScaledStep::Apply);
        }
        let halved = self.scale * 0.5;
        if halved < MIN_LOSS_SCALE {
            bail!(
                "the f16 gradients are {norm} at every loss scale down to {}: the backward \
                 pass leaves f16's range whatever the scale; train in f32",
                self.scale
            );
        }
        self.scale = halved;
        self.steps_without_overflow = 0;
        Ok(ScaledStep::Skip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_halves_and_skips_a_run_of_finite_steps_doubles() {
        let settings = LossScaling {
            init_scale: 1024.0,
            growth_interval: 3,
        };
        let mut scaler = LossScaler::new(&settings);
        let mut scales = Vec::new();
        for norm in [1.0, f32::INFINITY, 2.0, 0.5, f32::NAN, 1.0, 1.0, 1.0, 1.0] {
            let step = scaler.update(norm, &settings).unwrap();
            assert_eq!(step == ScaledStep::Apply, norm.is_finite(), "{norm}");
            scales.push(scaler.scale);
        }
        // The overflow at the second step resets the count: growth after three finite steps
        // in a row, counted again from zero after each change.
        assert_eq!(
            scales,
            [
                1024.0, 512.0, 512.0, 512.0, 256.0, 256.0, 256.0, 512.0, 512.0
            ]
        );
        assert_eq!(scaler.steps_without_overflow, 1);
    }

    #[test]
    fn persistent_overflow_is_an_error_at_the_smallest_scale() {
        let settings = LossScaling::default();
        let mut scaler = LossScaler::new(&settings);
        let mut skipped = 0;
        let err = loop {
            match scaler.update(f32::INFINITY, &settings) {
                Ok(ScaledStep::Skip) => skipped += 1,
                Ok(ScaledStep::Apply) => panic!("an infinite norm applied"),
                Err(e) => break e,
            }
        };
        // 2^16 down to 2^-24.
        assert_eq!(skipped, 40);
        assert_eq!(scaler.scale, MIN_LOSS_SCALE);
        assert!(err.to_string().contains("train in f32"), "{err}");
    }

    #[test]
    fn settings_are_checked() {
        assert!(LossScaling::default().validate().is_ok());
        for (init_scale, growth_interval, flag) in [
            (0.0, 1, "--loss-scale "),
            (f32::INFINITY, 1, "--loss-scale "),
            (f32::NAN, 1, "--loss-scale "),
            (1e-9, 1, "--loss-scale "),
            (1.0, 0, "--loss-scale-growth-interval"),
        ] {
            let err = LossScaling {
                init_scale,
                growth_interval,
            }
            .validate()
            .unwrap_err();
            assert!(err.to_string().starts_with(flag), "{err}");
        }
    }
}
