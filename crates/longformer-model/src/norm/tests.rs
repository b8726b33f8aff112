//! [`layer_norm`] against Burn's `LayerNorm` on every backend: values and the gradients of
//! `x`, `gamma` and `beta`.

use burn::module::Param;
use burn::nn::LayerNormConfig;
use burn::tensor::{Device, Tensor, TensorData};

use super::layer_norm;
use crate::test_devices::{assert_all_close, devices, values};

/// Deterministic values of `shape`, the same on every device.
fn filled(shape: &[usize], seed: u64) -> TensorData {
    TensorData::new(values(shape.iter().product(), seed), shape.to_vec())
}

/// `(y, dx, dgamma, dbeta)` of `sum(norm(x) · w)` by ours (`ours`) or Burn's LayerNorm.
fn run(dims: [usize; 3], epsilon: f64, ours: bool, device: &Device) -> [Vec<f32>; 4] {
    let device = device.clone().autodiff();
    let d = dims[2];
    let mut norm = LayerNormConfig::new(d).with_epsilon(epsilon).init(&device);
    norm.gamma = Param::from_tensor(Tensor::from_data(filled(&[d], 1), &device));
    norm.beta = Some(Param::from_tensor(Tensor::from_data(
        filled(&[d], 2),
        &device,
    )));
    let x = Tensor::<3>::from_data(filled(&dims, 3), &device).require_grad();
    let w = Tensor::<3>::from_data(filled(&dims, 4), &device);
    let y = if ours {
        layer_norm(&norm, epsilon, x.clone())
    } else {
        norm.forward(x.clone())
    };
    let grads = (y.clone() * w).sum().backward();
    let host = |t: Tensor<3>| t.into_data().iter::<f32>().collect::<Vec<_>>();
    let host1 = |t: Tensor<1>| t.into_data().iter::<f32>().collect::<Vec<_>>();
    [
        host(y.inner()),
        host(x.grad(&grads).expect("x has a gradient")),
        host1(norm.gamma.val().grad(&grads).expect("gamma has a gradient")),
        host1(
            norm.beta
                .as_ref()
                .unwrap()
                .val()
                .grad(&grads)
                .expect("beta has a gradient"),
        ),
    ]
}

#[test]
fn matches_burns_layer_norm_and_its_gradients_on_every_backend() {
    // Rows not a multiple of the CPU blocks, widths not a multiple of the vector lanes; a large
    // epsilon shows that the given one is used. On GPUs the widths give a row to 32 units
    // (13, 64, 8: some idle), 128 (768: two vectors of 4 for some, one for others) and 256
    // (1001: four single floats for some, three for others); 66,000 rows are more cubes than
    // one grid dimension holds. The reference is Burn's LayerNorm on flex: the software GPU
    // (llvmpipe) ends a shader's loops after 65,535 iterations in all, so there Burn's reductions
    // over all rows stop after 65,532 of them, and its LayerNorm's `dgamma` and `dbeta` leave
    // out the last 468 of the 66,000 (our kernel's loops are at most `rows / 512` long).
    for (dims, epsilon) in [
        ([2, 37, 13], 1e-5),
        ([1, 70, 64], 1e-5),
        ([3, 5, 8], 0.5),
        ([2, 9, 768], 1e-12),
        ([1, 11, 1001], 1e-5),
        ([2, 33_000, 4], 1e-5),
    ] {
        let burns = run(dims, epsilon, false, &Device::flex());
        for device in devices() {
            let ours = run(dims, epsilon, true, &device);
            assert_all_close(
                &["y", "dx", "dgamma", "dbeta"],
                &ours,
                &burns,
                2e-5,
                &format!("{device:?} {dims:?} eps {epsilon}"),
            );
        }
    }
}

/// Outside a recorded pass it is Burn's LayerNorm itself.
#[test]
fn inference_is_burns_layer_norm() {
    let device = Device::flex();
    let norm = LayerNormConfig::new(8).init(&device);
    let x = Tensor::<3>::from_data(filled(&[1, 4, 8], 5), &device);
    let ours = layer_norm(&norm, 1e-5, x.clone()).into_data();
    assert_eq!(ours, norm.forward(x).into_data());
}
