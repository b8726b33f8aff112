//! The exact GELU op (`longformer_model::gelu`): values against Burn's own `gelu` (libm's `erf`
//! on the CPUs) and gradients against autodiff of the formula written out, on every device.

use burn::tensor::activation::gelu;
use burn::tensor::{Distribution, Tensor};
use longformer_model::gelu::gelu_exact;
use longformer_tests::{devices, max_abs_diff_tensors};

#[test]
fn gelu_exact_matches_burns_gelu_and_the_exact_derivative() {
    for (name, plain) in devices() {
        // Mostly in [-6, 6]: both tails and the curved middle.
        let x = Tensor::<2>::random([64, 1000], Distribution::Normal(0.0, 2.5), &plain);
        let diff = max_abs_diff_tensors(gelu_exact(x.clone()), gelu(x.clone()));
        assert!(diff < 2e-6, "{name}: gelu values differ by {diff}");

        let device = plain.clone().autodiff();
        let weights = Tensor::<2>::random([64, 1000], Distribution::Normal(0.0, 1.0), &device);
        let grad_of = |written_out: bool| {
            let x = Tensor::<2>::from_data(x.to_data(), &device).require_grad();
            let y = if written_out {
                let cdf = x
                    .clone()
                    .mul_scalar(std::f64::consts::FRAC_1_SQRT_2)
                    .erf()
                    .add_scalar(1.0)
                    .mul_scalar(0.5);
                x.clone() * cdf
            } else {
                gelu_exact(x.clone())
            };
            let grads = (y * weights.clone()).sum().backward();
            x.grad(&grads).expect("x has a gradient")
        };
        let diff = max_abs_diff_tensors(grad_of(false), grad_of(true));
        assert!(diff < 1e-5, "{name}: gelu gradients differ by {diff}");
    }
}
