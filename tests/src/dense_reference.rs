//! A naive dense reference of Longformer self-attention: full `[seq_length, seq_length]` scores with
//! the band and global pattern as a mask. Test-only: quadratic memory, written for clarity.
//!
//! Query `i` (real, not global) sees key `j` when `j` is real and either global or in the window
//! of its head (`|i - j| <= w·d` with `d | i - j` for dilation `d`, and `j <= i` when causal); a
//! global query sees every real key through the global projections; padding rows are zero.

use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Tensor, TensorData};
use longformer_model::AttentionLayout;
use longformer_model::SlidingWindowAttention;
use longformer_model::attention::MASKED_SCORE;

fn heads(x: Tensor<3>, n_heads: usize) -> Tensor<4> {
    let [b, l, d] = x.dims();
    x.reshape([b, l, n_heads, d / n_heads]).swap_dims(1, 2)
}

fn bool4(values: Vec<bool>, shape: [usize; 4], device: &Device) -> Tensor<4, Bool> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Dense attention output (before the output projection), `[batch_size, seq_length, d_model]`.
pub fn dense_attention(
    attn: &SlidingWindowAttention,
    hidden: Tensor<3>,
    layout: &AttentionLayout,
) -> Tensor<3> {
    let [b, l, d] = hidden.dims();
    let h = attn.n_heads;
    let w = attn.window;
    let pattern = &attn.pattern;
    let device = hidden.device();
    let scale = 1.0 / ((d / h) as f64).sqrt();
    let real = |bi: usize, t: usize| layout.is_real[bi * l + t];
    let global = |bi: usize, t: usize| layout.is_global[bi * l + t];

    let mut local_blocked = Vec::with_capacity(b * h * l * l);
    let mut global_blocked = Vec::with_capacity(b * l * l);
    for bi in 0..b {
        for head in 0..h {
            for i in 0..l {
                for j in 0..l {
                    let near = pattern.sees(pattern.dilation[head], w, i, j);
                    local_blocked.push(!(real(bi, j) && (global(bi, j) || near)));
                }
            }
        }
        for _ in 0..l {
            for j in 0..l {
                global_blocked.push(!real(bi, j));
            }
        }
    }
    let local_blocked = bool4(local_blocked, [b, h, l, l], &device);
    let global_blocked = bool4(global_blocked, [b, 1, l, l], &device).expand([b, h, l, l]);
    let indicator = |f: &dyn Fn(usize, usize) -> bool| {
        let v: Vec<f32> = (0..b * l)
            .map(|k| if f(k / l, k % l) { 1.0 } else { 0.0 })
            .collect();
        Tensor::<4>::from_data(TensorData::new(v, [b, 1, l, 1]), &device)
    };
    let local_rows = indicator(&|bi, t| real(bi, t) && !global(bi, t));
    let global_rows = indicator(&|bi, t| global(bi, t));

    let attend = |q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, blocked: Tensor<4, Bool>| {
        let scores = (q * scale)
            .matmul(k.swap_dims(2, 3))
            .mask_fill(blocked, MASKED_SCORE);
        softmax(scores, 3).matmul(v)
    };
    let local = attend(
        heads(attn.query.forward(hidden.clone()), h),
        heads(attn.key.forward(hidden.clone()), h),
        heads(attn.value.forward(hidden.clone()), h),
        local_blocked,
    );
    let global_out = attend(
        heads(attn.query_global.forward(hidden.clone()), h),
        heads(attn.key_global.forward(hidden.clone()), h),
        heads(attn.value_global.forward(hidden), h),
        global_blocked,
    );
    let context = local * local_rows + global_out * global_rows;
    context.swap_dims(1, 2).reshape([b, l, d])
}
