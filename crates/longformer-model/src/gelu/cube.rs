//! [`ExactGeluOps`] on the CubeCL backend (wgpu, vulkan): Burn's float ops (its `gelu` is the
//! exact one; the derivative written out, `Φ(x) + x · φ(x)`).

use burn::backend::Backend;
use burn::backend::tensor::FloatTensor;
use burn_cubecl::CubeBackend;

use super::ops::ExactGeluOps;

fn gelu<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    B::gelu(x)
}

fn gelu_backward<B: Backend>(x: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
    let scaled = B::float_mul_scalar(x.clone(), std::f32::consts::FRAC_1_SQRT_2.into());
    let cdf = B::float_mul_scalar(
        B::float_add_scalar(B::float_erf(scaled), 1.0.into()),
        0.5.into(),
    );
    let half_square = B::float_mul_scalar(B::float_mul(x.clone(), x.clone()), (-0.5).into());
    // φ(x) = e^(-x²/2) / √(2π)
    let pdf = B::float_mul_scalar(B::float_exp(half_square), 0.398_942_3.into());
    B::float_mul(grad, B::float_add(cdf, B::float_mul(x, pdf)))
}

impl ExactGeluOps for CubeBackend {
    fn exact_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        gelu::<Self>(x)
    }

    fn exact_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        gelu_backward::<Self>(x, grad)
    }
}
