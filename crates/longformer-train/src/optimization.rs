//! AdamW as the paper's script configures it, its learning-rate schedule (linear warmup, then
//! linear decay to 0) and clipping by the global gradient norm (`torch.nn.utils.clip_grad_norm_`;
//! Burn's own clipping works tensor by tensor).

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::adamw::OnePassAdamW;
use crate::readback::read_scalar;

/// Optimizer and schedule settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimizerSettings {
    /// Peak learning rate.
    pub lr: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f32,
    /// AdamW β₁.
    pub beta1: f32,
    /// AdamW β₂.
    pub beta2: f32,
    /// AdamW ε.
    pub epsilon: f32,
    /// Optimizer steps of linear warmup from 0 to `lr`.
    pub warmup_steps: usize,
    /// Largest global gradient norm (after accumulation); `None` disables clipping.
    pub max_grad_norm: Option<f32>,
}

impl Default for OptimizerSettings {
    /// The paper's WikiHop script: lr 3e-5, weight decay 0.01, betas (0.9, 0.98), eps 1e-6,
    /// 200 warmup steps, gradients clipped at norm 1.
    fn default() -> Self {
        Self {
            lr: 3e-5,
            weight_decay: 0.01,
            beta1: 0.9,
            beta2: 0.98,
            epsilon: 1e-6,
            warmup_steps: 200,
            max_grad_norm: Some(1.0),
        }
    }
}

impl OptimizerSettings {
    /// Rejects values AdamW cannot train with, naming the `longformer train` flag.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            anyhow::bail!("--lr must be positive, got {}", self.lr);
        }
        for (flag, beta) in [("--beta1", self.beta1), ("--beta2", self.beta2)] {
            if !(0.0..1.0).contains(&beta) {
                anyhow::bail!("{flag} must be in [0, 1), got {beta}");
            }
        }
        if !(self.epsilon > 0.0 && self.epsilon.is_finite()) {
            anyhow::bail!("--epsilon must be positive, got {}", self.epsilon);
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            anyhow::bail!(
                "--weight-decay must be 0 or positive, got {}",
                self.weight_decay
            );
        }
        if let Some(norm) = self.max_grad_norm
            && !(norm > 0.0 && norm.is_finite())
        {
            anyhow::bail!("--max-grad-norm must be positive (0 disables clipping), got {norm}");
        }
        Ok(())
    }

    /// The AdamW optimizer (clipping is applied separately by [`clip_global_norm`]): Burn's
    /// `AdamW`'s update and state, in one pass per parameter on the CPU ([`OnePassAdamW`]).
    pub fn optimizer(&self) -> ModuleOptimizer {
        ModuleOptimizer::from(OnePassAdamW {
            beta_1: self.beta1,
            beta_2: self.beta2,
            epsilon: self.epsilon,
            weight_decay: self.weight_decay,
        })
    }

    /// Learning rate of optimizer step `step` (0-based) out of `total_steps`: rises linearly
    /// to `lr` over the first `warmup_steps` steps (the first step already gets `lr / warmup`),
    /// then falls linearly to 0 at `total_steps`.
    pub fn lr_at(&self, step: usize, total_steps: usize) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let decay = total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let left = total_steps.saturating_sub(step) as f64;
        self.lr * (left / decay).clamp(0.0, 1.0)
    }
}

/// Scales all gradients so that their global L2 norm is at most `max_norm`; returns the norm
/// before clipping, or the device's failure to compute the gradients (their norm is the first
/// value of the backward pass read back).
pub fn clip_global_norm<M: Module>(
    model: &M,
    grads: GradientsParams,
    max_norm: Option<f32>,
) -> anyhow::Result<(GradientsParams, f32)> {
    let mut norm = SquaredNorm {
        grads: &grads,
        sum: None,
    };
    model.visit(&mut norm);
    let total = match norm.sum {
        Some(sum) => read_scalar(sum, "the gradients")?.sqrt(),
        None => 0.0,
    };
    let Some(max_norm) = max_norm else {
        return Ok((grads, total));
    };
    let scale = max_norm / (total + 1e-6);
    if scale >= 1.0 {
        return Ok((grads, total));
    }
    let mut scaler = Scale { grads, scale };
    model.visit(&mut scaler);
    Ok((scaler.grads, total))
}

struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    sum: Option<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.get::<D>(param.id) {
            let squares = grad.square().sum();
            self.sum = Some(match self.sum.take() {
                Some(sum) => sum + squares,
                None => squares,
            });
        }
    }
}

struct Scale {
    grads: GradientsParams,
    scale: f32,
}

impl ModuleVisitor for Scale {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.remove::<D>(param.id) {
            self.grads.register(param.id, grad.mul_scalar(self.scale));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_linear_decay() {
        let s = OptimizerSettings {
            lr: 1.0,
            warmup_steps: 4,
            ..Default::default()
        };
        let lrs: Vec<f64> = (0..12).map(|step| s.lr_at(step, 12)).collect();
        assert_eq!(&lrs[..4], &[0.25, 0.5, 0.75, 1.0]);
        assert_eq!(lrs[4], 1.0);
        assert!((lrs[8] - 0.5).abs() < 1e-12);
        assert!(lrs.windows(2).skip(4).all(|w| w[1] < w[0]));
        assert_eq!(s.lr_at(12, 12), 0.0);
    }

    #[test]
    fn invalid_values_name_their_flag() {
        assert!(OptimizerSettings::default().validate().is_ok());
        let zero_beta = OptimizerSettings {
            beta1: 0.0,
            max_grad_norm: None,
            weight_decay: 0.0,
            ..Default::default()
        };
        assert!(zero_beta.validate().is_ok());
        for (bad, flag) in [
            (
                OptimizerSettings {
                    lr: f64::NAN,
                    ..Default::default()
                },
                "--lr",
            ),
            (
                OptimizerSettings {
                    beta1: 1.5,
                    ..Default::default()
                },
                "--beta1",
            ),
            (
                OptimizerSettings {
                    beta1: 1.0,
                    ..Default::default()
                },
                "--beta1",
            ),
            (
                OptimizerSettings {
                    beta2: -1.0,
                    ..Default::default()
                },
                "--beta2",
            ),
            (
                OptimizerSettings {
                    epsilon: 0.0,
                    ..Default::default()
                },
                "--epsilon",
            ),
            (
                OptimizerSettings {
                    epsilon: f32::NAN,
                    ..Default::default()
                },
                "--epsilon",
            ),
            (
                OptimizerSettings {
                    weight_decay: -5.0,
                    ..Default::default()
                },
                "--weight-decay",
            ),
            (
                OptimizerSettings {
                    max_grad_norm: Some(f32::NAN),
                    ..Default::default()
                },
                "--max-grad-norm",
            ),
            (
                OptimizerSettings {
                    max_grad_norm: Some(-1.0),
                    ..Default::default()
                },
                "--max-grad-norm",
            ),
        ] {
            let message = bad.validate().unwrap_err().to_string();
            assert!(message.starts_with(flag), "{message}");
        }
    }

    #[test]
    fn no_warmup() {
        let s = OptimizerSettings {
            lr: 2.0,
            warmup_steps: 0,
            ..Default::default()
        };
        assert_eq!(s.lr_at(0, 10), 2.0);
        assert!((s.lr_at(5, 10) - 1.0).abs() < 1e-12);
    }
}
