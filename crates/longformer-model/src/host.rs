//! A tensor's values on the host: read into a `Vec<f32>` (or `Vec<i64>`), written from one, for
//! any backend.
//! Used by the CPU kernels (flex and ndarray read their tensors this way) and by tests of the
//! GPU kernels.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use burn::backend::Backend;
use burn::backend::tensor::{Device, FloatTensor, IntTensor};
use burn::tensor::{Shape, TensorData};

/// Runs a future to completion by polling it (the CPU backends' reads are ready at once; a GPU
/// read becomes ready when the device has finished).
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
    let data = block_on(B::float_into_data(t)).expect("a tensor reads back");
    data.try_into_vec_as::<f32>()
        .expect("a float tensor reads back as f32")
}

/// The values of an integer tensor as i64.
pub(crate) fn read_ints<B: Backend>(t: IntTensor<B>) -> Vec<i64> {
    let data = block_on(B::int_into_data(t)).expect("a tensor reads back");
    data.iter::<i64>().collect()
}

/// A tensor of `shape` holding `values`.
pub(crate) fn write<B: Backend>(
    values: Vec<f32>,
    shape: Vec<usize>,
    device: &Device<B>,
) -> FloatTensor<B> {
    B::float_from_data(TensorData::new(values, Shape::from(shape)), device)
}
