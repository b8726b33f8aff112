//! `--part attention`: the attention core of one layer alone, without projections, on random
//! queries, keys and values: every query over its window and the global keys (the local part),
//! and the global rows over the whole sequence, each by the fused op or by Burn ops. The GPU
//! anchor of this is PyTorch's FlexAttention with the same band + global mask
//! (`anchor_bench.py`).

use burn::nn::DropoutConfig;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Distribution, Tensor};
use longformer_model::AttentionLayout;
use longformer_model::attention::AttentionMasks;
use longformer_model::attention::fused::fused_global_rows;
use longformer_model::attention::global::merge_heads;
use longformer_model::attention::local::{BandPattern, LocalHeads, local_attention};
use longformer_model::{DropoutSeed, LocalAttentionKernel};

use crate::readback::{read_back, read_scalar};

/// The inputs of one attention-core measurement.
pub struct AttentionCore {
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    masks: AttentionMasks,
    pattern: BandPattern,
    n_global: usize,
    kernel: LocalAttentionKernel,
}

/// Shape of an attention-core case.
pub struct CoreShape {
    /// Rows.
    pub batch: usize,
    /// Heads.
    pub heads: usize,
    /// Tokens per row.
    pub seq: usize,
    /// Head width.
    pub head_dim: usize,
    /// One-sided window.
    pub window: usize,
    /// Global tokens (the first ones of each row).
    pub n_global: usize,
}

impl AttentionCore {
    /// Random `q`, `k`, `v` (`[batch, heads, seq, head_dim]` views of token-major
    /// `[batch, seq, heads, head_dim]` memory, as the model's projections are; tracked when
    /// `device` is an autodiff device) and the masks of rows whose first `n_global` tokens are
    /// global.
    pub fn new(shape: &CoreShape, kernel: LocalAttentionKernel, device: &Device) -> Self {
        let dims = [shape.batch, shape.seq, shape.heads, shape.head_dim];
        let random =
            || Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), device).swap_dims(1, 2);
        let scale = 1.0 / (shape.head_dim as f64).sqrt();
        let layout = AttentionLayout::new(
            shape.batch,
            shape.seq,
            vec![true; shape.batch * shape.seq],
            (0..shape.batch * shape.seq)
                .map(|i| i % shape.seq < shape.n_global)
                .collect(),
        );
        let track = |t: Tensor<4>| {
            if device.is_autodiff() {
                t.detach().require_grad()
            } else {
                t
            }
        };
        Self {
            q: track(random() * scale),
            k: track(random()),
            v: track(random()),
            masks: AttentionMasks::new(layout, device),
            pattern: BandPattern {
                window: shape.window,
                dilation: 1,
                causal: false,
            },
            n_global: shape.n_global,
            kernel,
        }
    }

    /// The local part and the global rows, `[batch, heads, seq, head_dim]` and
    /// `[batch, heads, n_global, head_dim]`.
    pub fn forward(&self, kernel: LocalAttentionKernel) -> (Tensor<4>, Tensor<4>) {
        let g = self.n_global;
        let global = (g > 0).then(|| {
            (
                self.k.clone().narrow(2, 0, g),
                self.v.clone().narrow(2, 0, g),
            )
        });
        let heads = LocalHeads {
            q: self.q.clone(),
            k: self.k.clone(),
            v: self.v.clone(),
            global,
        };
        let dropout = DropoutConfig::new(0.0).init();
        let seed = DropoutSeed::new(0); // dropout 0: unread
        let (local, _) = local_attention(
            heads,
            &self.masks,
            self.pattern,
            &dropout,
            seed,
            false,
            kernel,
        );
        let q_global = self.q.clone().narrow(2, 0, g.max(1));
        let global = match (kernel, &self.masks.global) {
            (LocalAttentionKernel::Reference, _) | (_, None) => {
                let probs = softmax(q_global.matmul(self.k.clone().swap_dims(2, 3)), 3);
                probs.matmul(self.v.clone())
            }
            (_, Some(slots)) => fused_global_rows(
                q_global,
                merge_heads(self.k.clone()),
                merge_heads(self.v.clone()),
                slots.real_keys.clone(),
                0.0,
                seed,
            ),
        };
        (local, global)
    }

    /// Forward, and in training the backward pass of the sum of both outputs; waits for the
    /// device (reads the outputs back, then synchronizes).
    pub fn run(&self, train: bool) -> anyhow::Result<()> {
        let (local, global) = self.forward(self.kernel);
        if train {
            let grads = (local.sum() + global.sum()).backward();
            for x in [&self.q, &self.k, &self.v] {
                if let Some(g) = x.grad(&grads) {
                    read_back(g, "the backward pass")?;
                }
            }
        } else {
            read_back(local, "the local attention")?;
            read_back(global, "the global rows")?;
        }
        self.q
            .device()
            .sync()
            .map_err(|e| anyhow::anyhow!("the device failed: {e:?}"))
    }

    /// Largest difference between the outputs (local part and global rows) computed by this
    /// case's kernel choice and by Burn ops (the band path and a dense softmax: the reference),
    /// on the same inputs: a correctness check next to the timing, for devices the tests do not
    /// run on.
    pub fn difference_from_reference(&self) -> anyhow::Result<f32> {
        let (ours, ours_global) = self.forward(self.kernel);
        let (reference, reference_global) = self.forward(LocalAttentionKernel::Reference);
        let local = (ours - reference).abs().max();
        let global = (ours_global - reference_global).abs().max();
        read_scalar(local.max_pair(global), "the reference's difference")
    }
}
