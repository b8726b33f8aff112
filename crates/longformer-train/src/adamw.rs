//! AdamW with decoupled weight decay, as Burn's `AdamW` computes it, in one pass over each
//! parameter's values on the CPU backends.
//!
//! Burn 0.22.1's `AdamW` composes some 15 elementwise tensor ops per parameter (the moments, the
//! bias corrections, `sqrt`, the division, the decay, the update), each a pass over memory: on
//! flex, 0.85–1.0 s per step for longformer-base's 149 M parameters on 2 cores, 13–15% of a
//! training step at n = 1024. [`OnePassAdamW`] computes the same update in one pass per parameter
//! there, keeping Burn's [`AdamWState`] (so checkpoints written with Burn's `AdamW` resume, and
//! the reverse). On the GPU backends the update is the same tensor ops as Burn's, which Burn's
//! kernel fusion already joins.

use burn::optim::{AdamWState, AdaptiveMomentumState, LearningRate, Optimizer};
use burn::tensor::{DType, Device, Tensor, TensorData};
use rayon::prelude::*;
use wide::f32x8;

/// Values per parallel task.
const CHUNK: usize = 1 << 16;

/// AdamW (Loshchilov & Hutter): `m ← β₁m + (1-β₁)g`, `v ← β₂v + (1-β₂)g²`, then
/// `θ ← θ(1 - lr·λ) - lr · m̂ / (√v̂ + ε)` with the bias-corrected `m̂ = m / (1-β₁ᵗ)`,
/// `v̂ = v / (1-β₂ᵗ)`: Burn's `AdamW` (without AMSGrad or cautious decay), whose state it keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OnePassAdamW {
    /// β₁.
    pub beta_1: f32,
    /// β₂.
    pub beta_2: f32,
    /// ε.
    pub epsilon: f32,
    /// λ, decoupled weight decay.
    pub weight_decay: f32,
}

/// One step's scalars, in f32 as Burn's tensor ops apply them.
#[derive(Debug, Clone, Copy)]
struct StepScalars {
    beta_1: f32,
    beta_2: f32,
    factor_1: f32,
    factor_2: f32,
    correction_1: f32,
    correction_2: f32,
    epsilon: f32,
    keep: f32,
    lr: f32,
}

impl OnePassAdamW {
    fn scalars(&self, lr: LearningRate, time: usize) -> StepScalars {
        let time = time as i32;
        StepScalars {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            factor_1: 1.0 - self.beta_1,
            factor_2: 1.0 - self.beta_2,
            correction_1: 1.0 - self.beta_1.powi(time),
            correction_2: 1.0 - self.beta_2.powi(time),
            epsilon: self.epsilon,
            keep: (1.0 - lr * f64::from(self.weight_decay)) as f32,
            lr: lr as f32,
        }
    }
}

impl Optimizer for OnePassAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let time = state.as_ref().map_or(1, |s| s.momentum.time + 1);
        let scalars = self.scalars(lr, time);
        let moments = state.map(|s| (s.momentum.moment_1, s.momentum.moment_2));
        let (tensor, moment_1, moment_2) =
            if on_cpu(&tensor.device()) && tensor.dtype() == DType::F32 {
                one_pass(scalars, tensor, grad, moments)
            } else {
                tensor_ops(scalars, tensor, grad, moments)
            };
        let momentum = AdaptiveMomentumState {
            time,
            moment_1,
            moment_2,
            max_moment_2: None,
        };
        (tensor, Some(AdamWState { momentum }))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device) -> Self::State<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}

/// Whether `device` is a CPU backend's, whose tensors the update reads and writes in place.
fn on_cpu(device: &Device) -> bool {
    #[allow(unused_imports)] // a build without CPU backends names no variant
    use burn::backend::DispatchDevice as D;
    #[allow(unreachable_patterns)]
    match device.clone().without_autodiff().as_dispatch() {
        #[cfg(feature = "flex")]
        D::Flex(_) => true,
        #[cfg(feature = "ndarray")]
        D::NdArray(_) => true,
        _ => false,
    }
}

/// The update as tensor ops, in Burn's `AdamW`'s order: `(θ, m, v)`.
fn tensor_ops<const D: usize>(
    s: StepScalars,
    tensor: Tensor<D>,
    grad: Tensor<D>,
    moments: Option<(Tensor<D>, Tensor<D>)>,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    let (moment_1, moment_2) = match moments {
        Some((m, v)) => (
            m.mul_scalar(s.beta_1)
                .add(grad.clone().mul_scalar(s.factor_1)),
            v.mul_scalar(s.beta_2)
                .add(grad.square().mul_scalar(s.factor_2)),
        ),
        None => (
            grad.clone().mul_scalar(s.factor_1),
            grad.square().mul_scalar(s.factor_2),
        ),
    };
    let corrected_1 = moment_1.clone().div_scalar(s.correction_1);
    let corrected_2 = moment_2.clone().div_scalar(s.correction_2);
    let delta = corrected_1.div(corrected_2.sqrt().add_scalar(s.epsilon));
    let tensor = tensor.mul_scalar(s.keep) - delta.mul_scalar(s.lr);
    (tensor, moment_1, moment_2)
}

/// The update in one pass over the values (on the host: a CPU backend's own memory).
fn one_pass<const D: usize>(
    s: StepScalars,
    tensor: Tensor<D>,
    grad: Tensor<D>,
    moments: Option<(Tensor<D>, Tensor<D>)>,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    let (device, shape) = (tensor.device(), tensor.shape());
    let mut theta = values(tensor);
    let grad = values(grad);
    let (mut m, mut v, first) = match moments {
        Some((m, v)) => (values(m), values(v), false),
        None => (vec![0.0; grad.len()], vec![0.0; grad.len()], true),
    };
    theta
        .par_chunks_mut(CHUNK)
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .zip(grad.par_chunks(CHUNK))
        .for_each(|(((theta, m), v), g)| update(s, first, theta, m, v, g));
    let tensor_of =
        |values: Vec<f32>| Tensor::from_data(TensorData::new(values, shape.clone()), &device);
    (tensor_of(theta), tensor_of(m), tensor_of(v))
}

/// A tensor's f32 values (without a copy where the backend owns them alone).
fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .try_into_vec_as::<f32>()
        .expect("an f32 tensor reads back as f32")
}

/// [`tensor_ops`] on slices, 8 values at a time: the same operations in the same order on each
/// value (the first step's moments start from `g·(1-β)`, not from `0·β + g·(1-β)`).
fn update(s: StepScalars, first: bool, theta: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]) {
    let lanes = theta.len() / 8 * 8;
    let splat = f32x8::splat;
    let (beta_1, beta_2, factor_1, factor_2) = (
        splat(s.beta_1),
        splat(s.beta_2),
        splat(s.factor_1),
        splat(s.factor_2),
    );
    let (correction_1, correction_2, epsilon, keep, lr) = (
        splat(s.correction_1),
        splat(s.correction_2),
        splat(s.epsilon),
        splat(s.keep),
        splat(s.lr),
    );
    for i in (0..lanes).step_by(8) {
        let load = |x: &[f32]| f32x8::from(<[f32; 8]>::try_from(&x[i..i + 8]).unwrap());
        let grad = load(g);
        let (new_m, new_v) = if first {
            (grad * factor_1, grad * grad * factor_2)
        } else {
            (
                load(m) * beta_1 + grad * factor_1,
                load(v) * beta_2 + grad * grad * factor_2,
            )
        };
        let delta = (new_m / correction_1) / ((new_v / correction_2).sqrt() + epsilon);
        let new_theta = load(theta) * keep - delta * lr;
        theta[i..i + 8].copy_from_slice(new_theta.as_array());
        m[i..i + 8].copy_from_slice(new_m.as_array());
        v[i..i + 8].copy_from_slice(new_v.as_array());
    }
    for i in lanes..theta.len() {
        let grad = g[i];
        let (new_m, new_v) = if first {
            (grad * s.factor_1, grad * grad * s.factor_2)
        } else {
            (
                m[i] * s.beta_1 + grad * s.factor_1,
                v[i] * s.beta_2 + grad * grad * s.factor_2,
            )
        };
        let delta = (new_m / s.correction_1) / ((new_v / s.correction_2).sqrt() + s.epsilon);
        theta[i] = theta[i] * s.keep - delta * s.lr;
        m[i] = new_m;
        v[i] = new_v;
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Param;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
    use burn::tensor::{Device, Tensor, TensorData};

    use super::*;

    const SETTINGS: OnePassAdamW = OnePassAdamW {
        beta_1: 0.9,
        beta_2: 0.98,
        epsilon: 1e-6,
        weight_decay: 0.01,
    };

    fn burn_adamw() -> ModuleOptimizer {
        AdamWConfig::new()
            .with_beta_1(SETTINGS.beta_1)
            .with_beta_2(SETTINGS.beta_2)
            .with_epsilon(SETTINGS.epsilon)
            .with_weight_decay(SETTINGS.weight_decay)
            .init()
    }

    /// `[rows, cols]` values of a fixed pattern in -1..1 (not the device's generator, which
    /// tests running at the same time share).
    fn pattern(rows: usize, cols: usize, phase: f32, device: &Device) -> Tensor<2> {
        let values: Vec<f32> = (0..rows * cols)
            .map(|i| (i as f32 * 0.7 + phase).sin())
            .collect();
        Tensor::from_data(TensorData::new(values, [rows, cols]), device)
    }

    /// A linear layer of 21 × 13 (weights not a multiple of 8 values: the tail loop runs too).
    fn layer(device: &Device) -> Linear {
        let mut layer = LinearConfig::new(21, 13).init(device);
        layer.weight = Param::from_tensor(pattern(21, 13, 0.0, device) * 0.2);
        layer.bias = Some(Param::from_tensor(
            pattern(1, 13, 1.0, device).reshape([13]) * 0.1,
        ));
        layer
    }

    /// `steps` AdamW steps of `optimizer` on `mean((x W + b)²)` for fixed random inputs.
    fn train(
        mut model: Linear,
        mut optimizer: ModuleOptimizer,
        steps: usize,
        device: &Device,
    ) -> (Linear, ModuleOptimizer) {
        for step in 0..steps {
            let x = pattern(6, 21, step as f32, device);
            let loss = model.forward(x).square().mean();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(3e-3 * (step + 1) as f64, model, grads);
        }
        (model, optimizer)
    }

    fn weights(model: &Linear) -> Vec<f32> {
        let mut values: Vec<f32> = model.weight.val().into_data().iter::<f32>().collect();
        let bias = model.bias.as_ref().expect("a bias").val();
        values.extend(bias.into_data().iter::<f32>());
        values
    }

    fn max_difference(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    /// Four steps land where Burn's `AdamW` lands, on both CPU backends (the one-pass update:
    /// the same operations in the same order, so the same bits), and through the tensor ops the
    /// GPUs run (on flex here).
    #[test]
    #[allow(deprecated)] // ndarray
    fn steps_land_where_burns_adamw_lands() {
        for device in [Device::flex(), Device::ndarray()] {
            let device = device.autodiff();
            let (expected, _) = train(layer(&device), burn_adamw(), 4, &device);
            let (got, _) = train(layer(&device), ModuleOptimizer::from(SETTINGS), 4, &device);
            let start = weights(&layer(&device));
            let (expected, got) = (weights(&expected), weights(&got));
            assert!(
                max_difference(&start, &expected) > 1e-3,
                "the steps move the weights"
            );
            assert_eq!(expected, got, "{device:?}");
        }
        let device = Device::flex();
        let (theta, grad) = (pattern(5, 7, 0.5, &device), pattern(5, 7, 2.0, &device));
        let moments = (grad.clone() * 0.3, grad.clone().square() * 0.2);
        let s = SETTINGS.scalars(1e-3, 3);
        let one = one_pass(s, theta.clone(), grad.clone(), Some(moments.clone()));
        let ops = tensor_ops(s, theta, grad, Some(moments));
        for (a, b) in [(one.0, ops.0), (one.1, ops.1), (one.2, ops.2)] {
            assert_eq!(a.into_data().to_vec::<f32>(), b.into_data().to_vec::<f32>());
        }
    }

    /// The state is Burn's `AdamWState`: a record saved by Burn's `AdamW` after two steps loads,
    /// and two more steps land where Burn's `AdamW` would have gone on.
    #[test]
    fn burns_adamw_records_resume() {
        let device = Device::flex().autodiff();
        let (model, burn) = train(layer(&device), burn_adamw(), 2, &device);
        let record = burn.to_record();
        let (expected, _) = train(model.clone(), burn, 2, &device);
        let resumed = ModuleOptimizer::from(SETTINGS).load_record(record);
        let (got, _) = train(model, resumed, 2, &device);
        assert_eq!(weights(&expected), weights(&got));
    }
}
