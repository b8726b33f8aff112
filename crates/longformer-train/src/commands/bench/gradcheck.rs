//! `longformer bench --gradient-check`: one training pass of the bench's model on its backend
//! and on flex from the same weights, every parameter's gradient compared. The tests hold the
//! GPU kernels (attention, embedding gradients) to the CPU on the software GPU; this runs the
//! same comparison on a real device, whose compiler (SPIR-V on Vulkan) the tests never see.

use anyhow::{Result, bail};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use longformer_model::{LongformerConfig, LongformerInput, LongformerModel};

use super::{BenchArgs, token_range};
use crate::progress::say;
use crate::readback::read_back;

/// Largest accepted difference between a gradient on the backend and on flex, relative to the
/// tensor's largest flex gradient or a floor (see [`compare`]): #6's tolerance for gradients.
pub const GRADIENT_TOLERANCE: f32 = 1e-3;

/// The worst gradient of one comparison: its parameter's path and relative difference.
#[derive(Debug, Clone, PartialEq)]
pub struct Worst {
    /// The parameter's module path, such as `encoder.layer.0.attention.self_attn.query.weight`.
    pub path: String,
    /// `max |backend - flex|` over the tensor, divided by the larger of `max |flex|` and
    /// [`SCALE_FLOOR`] times the model's largest flex gradient.
    pub relative: f32,
}

/// Runs the check for every `--seq`, printing one line each; an error when a gradient differs
/// by more than [`GRADIENT_TOLERANCE`] or is missing on one side.
pub fn gradient_check(args: &BenchArgs, config: &LongformerConfig) -> Result<()> {
    let device = args.backend.device()?.autodiff();
    let cpu = Device::flex().autodiff();
    let reference: LongformerModel = config.init_with_pooler(false, &cpu);
    let model = reference.clone().fork(&device);
    let tokens = token_range(args.vocab);
    let backend = clap::ValueEnum::to_possible_value(&args.backend).map_or_else(
        || format!("{:?}", args.backend),
        |v| v.get_name().to_string(),
    );
    for &seq in &args.seq {
        let grads = |model: &LongformerModel, device: &Device| -> Result<GradientsParams> {
            let n = args.batch * seq;
            let ids: Vec<i64> = (0..n).map(|i| 3 + (i * 7919 % tokens) as i64).collect();
            let global: Vec<bool> = (0..n).map(|i| i % seq < args.global).collect();
            let input = LongformerInput::new(Tensor::<2, Int>::from_data(
                TensorData::new(ids, [args.batch, seq]),
                device,
            ))
            .with_global_attention_mask(Tensor::from_data(
                TensorData::new(global, [args.batch, seq]),
                device,
            ))
            .with_dropout_seed(7);
            let out = model.try_forward(input)?.last_hidden_state;
            let cotangent: Vec<f32> = (0..out.dims().iter().product::<usize>())
                .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 500.0)
                .collect();
            let cotangent = Tensor::<3>::from_data(TensorData::new(cotangent, out.dims()), device);
            let loss = (out * cotangent).sum();
            read_back(loss.clone(), "the forward pass")?;
            Ok(GradientsParams::from_grads(loss.backward(), model))
        };
        let on_backend = grads(&model, &device)?;
        let on_flex = grads(&reference, &cpu)?;
        let worst = compare(&reference, &on_backend, &on_flex)?;
        say(&format!(
            "seq {seq}: gradients on {} against flex: worst {:.2e} (relative, {}); tolerance {GRADIENT_TOLERANCE:.0e}",
            backend, worst.relative, worst.path
        ));
        if worst.relative.is_nan() || worst.relative > GRADIENT_TOLERANCE {
            bail!(
                "the gradient of {} on {} differs from flex's by {:.2e} of its largest value \
                 (tolerance {GRADIENT_TOLERANCE:.0e})",
                worst.path,
                backend,
                worst.relative
            );
        }
    }
    Ok(())
}

/// Floor of the scale a gradient is compared at, relative to the model's largest gradient:
/// gradients that are zero in exact arithmetic (the key biases', which the softmax ignores) are
/// round-off on both sides, and compare as such only against a scale above them.
pub const SCALE_FLOOR: f32 = 1e-4;

/// The parameter of `model` whose gradients in `a` and `b` differ most, relative to the larger
/// of the tensor's largest value in `b` and [`SCALE_FLOOR`] times the model's largest gradient
/// (as `scripts/grad_sweep.py` compares); an error when one side lacks a gradient the other
/// has.
pub fn compare(model: &LongformerModel, a: &GradientsParams, b: &GradientsParams) -> Result<Worst> {
    /// Per parameter: its path, `max |a - b|` and `max |b|`.
    struct Compare<'a> {
        a: &'a GradientsParams,
        b: &'a GradientsParams,
        path: Vec<String>,
        tensors: Vec<(String, f32, f32)>,
        missing: Option<String>,
    }
    impl ModuleVisitor for Compare<'_> {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let path = self.path.join(".");
            match (self.a.get::<D>(param.id), self.b.get::<D>(param.id)) {
                (None, None) => {}
                (Some(a), Some(b)) => {
                    let device = b.device();
                    let a: Vec<f32> = a.to_device(&device).into_data().iter::<f32>().collect();
                    let b: Vec<f32> = b.into_data().iter::<f32>().collect();
                    // NaN on either side makes the difference NaN (`max` would skip it).
                    let apart = a.iter().zip(&b).fold(0f32, |m, (x, y)| {
                        let d = (x - y).abs();
                        if d.is_nan() || m.is_nan() {
                            f32::NAN
                        } else {
                            m.max(d)
                        }
                    });
                    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
                    self.tensors.push((path, apart, scale));
                }
                _ => self.missing = Some(path),
            }
        }
    }
    let mut visitor = Compare {
        a,
        b,
        path: Vec::new(),
        tensors: Vec::new(),
        missing: None,
    };
    model.visit(&mut visitor);
    if let Some(path) = visitor.missing {
        bail!("{path} has a gradient on one side only");
    }
    let largest = visitor.tensors.iter().fold(0f32, |m, t| m.max(t.2));
    let floor = (SCALE_FLOOR * largest).max(f32::MIN_POSITIVE);
    visitor
        .tensors
        .into_iter()
        .map(|(path, apart, scale)| Worst {
            path,
            relative: apart / scale.max(floor),
        })
        // NaN (a broken gradient) counts as the worst.
        .max_by(|x, y| match (x.relative.is_nan(), y.relative.is_nan()) {
            (true, _) => std::cmp::Ordering::Greater,
            (_, true) => std::cmp::Ordering::Less,
            _ => x.relative.total_cmp(&y.relative),
        })
        .ok_or_else(|| anyhow::anyhow!("the model has no gradients to compare"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gradients of a tiny model's `sum(last_hidden_state²)` on flex (dropout from a fixed
    /// seed).
    fn grads(model: &LongformerModel, device: &Device) -> GradientsParams {
        let input = LongformerInput::from_rows(&[vec![0, 5, 6, 7, 8, 2]], None, None, 1, device)
            .with_dropout_seed(3);
        let out = model.try_forward(input).unwrap().last_hidden_state;
        // Squared: the gradient of a plain sum through the last LayerNorm is zero.
        GradientsParams::from_grads((out.clone() * out).sum().backward(), model)
    }

    #[test]
    fn compare_names_the_worst_gradient_and_counts_nan_and_missing_ones() {
        let device = Device::flex().autodiff();
        let model: LongformerModel = LongformerConfig::tiny(50).init_with_pooler(false, &device);
        let reference = grads(&model, &device);
        let same = compare(&model, &grads(&model, &device), &reference).unwrap();
        assert_eq!(same.relative, 0.0, "{same:?}");

        // The last LayerNorm's scale: the largest gradients of this loss, above the floor.
        let weight = model.encoder.layer[1].output.layer_norm.gamma.id;
        let path = "encoder.layer.1.output.layer_norm.gamma";
        let changed = |f: &dyn Fn(Tensor<1>) -> Tensor<1>| {
            let mut grads = grads(&model, &device);
            let grad = grads.remove::<1>(weight).unwrap();
            grads.register(weight, f(grad));
            grads
        };
        let nudged = changed(&|g| {
            let largest = g.clone().abs().max().into_scalar::<f32>();
            g.add_scalar(0.01 * largest)
        });
        let worst = compare(&model, &nudged, &reference).unwrap();
        assert_eq!(worst.path, path);
        assert!((worst.relative - 0.01).abs() < 1e-4, "{worst:?}");

        let broken = changed(&|g| g.mul_scalar(f32::NAN));
        let worst = compare(&model, &broken, &reference).unwrap();
        assert_eq!(worst.path, path);
        assert!(worst.relative.is_nan());

        let mut missing = grads(&model, &device);
        missing.remove::<1>(weight);
        let err = compare(&model, &missing, &reference).unwrap_err();
        assert!(err.to_string().contains(path), "{err}");
    }
}
