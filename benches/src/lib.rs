//! Inputs of the attention-core benchmarks (`benches/attention.rs`): one layer of the
//! longformer-base shape (`d_model` 768, 12 heads, window 512) on a random sequence with global
//! tokens at its start.

use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Device, Distribution, Tensor};
use longformer_model::attention::global::{
    GlobalKeys, GlobalProjections, GlobalRowsPath, global_rows, split_heads,
};
use longformer_model::attention::local::{BandPattern, LocalHeads, local_attention};
use longformer_model::attention::{
    AttentionMasks, LocalAttentionKernel, SlidingWindowAttention, SlidingWindowAttentionConfig,
};
use longformer_model::{AttentionLayout, DropoutSeed};

/// `d_model` of longformer-base.
pub const D_MODEL: usize = 768;
/// Heads of longformer-base.
pub const N_HEADS: usize = 12;
/// Full attention window of longformer-base.
pub const ATTENTION_WINDOW: usize = 512;

/// One layer's attention and its inputs for a sequence of `seq_length` tokens.
pub struct AttentionCase {
    /// The layer (random projections, no dropout).
    pub attention: SlidingWindowAttention,
    /// Hidden states, `[1, seq_length, d_model]`.
    pub hidden: Tensor<3>,
    /// Masks of the layout (`n_global` global tokens first, no padding).
    pub masks: AttentionMasks,
    dropout: Dropout,
}

impl AttentionCase {
    /// A case with `n_global` global tokens (the first ones).
    pub fn new(seq_length: usize, n_global: usize, device: &Device) -> Self {
        let attention = SlidingWindowAttentionConfig::new(D_MODEL, N_HEADS, ATTENTION_WINDOW)
            .with_dropout(0.0)
            .init(device);
        let hidden = Tensor::random(
            [1, seq_length, D_MODEL],
            Distribution::Normal(0.0, 1.0),
            device,
        );
        let layout = AttentionLayout::new(
            1,
            seq_length,
            vec![true; seq_length],
            (0..seq_length).map(|t| t < n_global).collect(),
        );
        let masks = AttentionMasks::new(layout, device);
        Self {
            attention,
            hidden,
            masks,
            dropout: DropoutConfig::new(0.0).init(),
        }
    }

    /// Queries, keys and values of every head (and of the global slots), projected once.
    pub fn local_heads(&self) -> LocalHeads {
        let h = N_HEADS;
        let scale = 1.0 / ((D_MODEL / h) as f64).sqrt();
        let project = |x: Tensor<3>| split_heads(x, h);
        let q = project(self.attention.query.forward(self.hidden.clone())) * scale;
        let k = project(self.attention.key.forward(self.hidden.clone()));
        let v = project(self.attention.value.forward(self.hidden.clone()));
        let global = self.masks.layout.n_global.gt(&0).then(|| {
            let g = self.masks.layout.n_global;
            (k.clone().narrow(2, 0, g), v.clone().narrow(2, 0, g))
        });
        LocalHeads { q, k, v, global }
    }

    /// The local core alone: band and global-key scores, softmax, weighted values
    /// (`[1, n_heads, seq_length, d_head]`), read back to the host.
    pub fn run_local(&self, heads: LocalHeads) -> usize {
        let pattern = BandPattern {
            window: ATTENTION_WINDOW / 2,
            dilation: 1,
            causal: false,
        };
        let (context, _) = local_attention(
            heads,
            &self.masks,
            pattern,
            &self.dropout,
            DropoutSeed::new(0),
            false,
            LocalAttentionKernel::Auto,
        );
        context.into_data().num_elements()
    }

    /// The global rows: every global token over the whole sequence, with its projections.
    pub fn run_global(&self) -> usize {
        self.run_global_with(GlobalKeys::Auto, LocalAttentionKernel::Auto)
    }

    /// [`run_global`](Self::run_global) with the keys and values met as `keys` says, by the
    /// fused op where `kernel` lets it run (projected keys).
    pub fn run_global_with(&self, keys: GlobalKeys, kernel: LocalAttentionKernel) -> usize {
        let slots = self
            .masks
            .global
            .as_ref()
            .expect("a case with global tokens");
        let projections = GlobalProjections {
            query: &self.attention.query_global,
            key: &self.attention.key_global,
            value: &self.attention.value_global,
            dropout: &self.dropout,
        };
        let (context, _) = global_rows(
            self.hidden.clone(),
            projections,
            slots,
            N_HEADS,
            DropoutSeed::new(0),
            GlobalRowsPath {
                keys,
                kernel,
                with_probs: false,
            },
        );
        context.into_data().num_elements()
    }

    /// The whole layer attention (projections, local and global), as the model runs it.
    pub fn run_layer(&self) -> usize {
        self.attention
            .forward(self.hidden.clone(), &self.masks, DropoutSeed::new(0))
            .into_data()
            .num_elements()
    }
}
