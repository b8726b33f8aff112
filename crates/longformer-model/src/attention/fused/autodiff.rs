//! [`LocalAttentionOps`] under autodiff: the forward pass saves `q`, `k`, `v`, the global keys
//! and values, the context and the row log-sum-exp (all `O(m·d)`), and the backward pass
//! recomputes the probabilities from them, flash-attention style; the global rows' op likewise.

use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Backend, TensorMetadata};
use burn::tensor::Shape;
use burn_autodiff::Autodiff;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::CheckpointStrategy;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};

use super::ops::LocalAttentionOps;

/// What the backward pass needs, as the inner backend's tensors.
#[derive(Debug, Clone)]
struct Saved<B: Backend> {
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    global_k: FloatTensor<B>,
    global_v: FloatTensor<B>,
    key_ok: FloatTensor<B>,
    global_ok: FloatTensor<B>,
    seed: IntTensor<B>,
    dropout: f64,
    context: FloatTensor<B>,
    lse: FloatTensor<B>,
    window: usize,
    causal: bool,
    slot_chunks: usize,
}

#[derive(Debug)]
struct LocalAttentionBackward;

impl<B: Backend + LocalAttentionOps> Backward<B, 5> for LocalAttentionBackward {
    type State = Saved<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 5>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [q_node, k_node, v_node, gk_node, gv_node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let s = ops.state;
        let delta = row_delta::<B>(grad.clone(), s.context);
        let (dq, dk, dv) = B::local_attention_band_backward(
            s.q.clone(),
            s.k,
            s.v,
            s.key_ok,
            s.lse.clone(),
            delta.clone(),
            grad.clone(),
            s.seed.clone(),
            s.dropout as f32,
            s.window,
            s.causal,
        );

        let (dq, d_global_k, d_global_v) = B::local_attention_global_backward(
            s.q,
            grad,
            s.global_k,
            s.global_v,
            s.global_ok,
            s.seed,
            s.lse,
            delta,
            dq,
            s.dropout,
            s.slot_chunks,
        );

        for (node, grad) in [
            (q_node, dq),
            (k_node, dk),
            (v_node, dv),
            (gk_node, d_global_k),
            (gv_node, d_global_v),
        ] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

/// `delta` of a flash-attention backward pass: per query, `sum_c grad[i, c] · context[i, c]`
/// (`= sum_j p_ij · dp_ij`).
///
/// # Shapes
/// - grad, context: `[rows, heads, m, d]`
/// - output: `[rows, heads, m]`
fn row_delta<B: Backend>(grad: FloatTensor<B>, context: FloatTensor<B>) -> FloatTensor<B> {
    let [rows, heads, m, _] = grad.shape().dims::<4>();
    B::float_reshape(
        B::float_sum_dim(B::float_mul(grad, context), 3),
        Shape::new([rows, heads, m]),
    )
}

/// What the global rows' backward pass needs, as the inner backend's tensors.
#[derive(Debug, Clone)]
struct GlobalRowsSaved<B: Backend> {
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    key_ok: FloatTensor<B>,
    seed: IntTensor<B>,
    dropout: f64,
    context: FloatTensor<B>,
    lse: FloatTensor<B>,
}

#[derive(Debug)]
struct GlobalRowsBackward;

impl<B: Backend + LocalAttentionOps> Backward<B, 3> for GlobalRowsBackward {
    type State = GlobalRowsSaved<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [q_node, k_node, v_node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let s = ops.state;
        let delta = row_delta::<B>(grad.clone(), s.context);
        let (dq, dk, dv) = B::global_rows_backward(
            s.q, s.k, s.v, s.key_ok, s.seed, s.lse, delta, grad, s.dropout,
        );
        for (node, grad) in [(q_node, dq), (k_node, dk), (v_node, dv)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: Backend + LocalAttentionOps, C: CheckpointStrategy> LocalAttentionOps for Autodiff<B, C> {
    fn local_attention_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        global_k: FloatTensor<Self>,
        global_v: FloatTensor<Self>,
        key_ok: FloatTensor<Self>,
        global_ok: FloatTensor<Self>,
        seed: IntTensor<Self>,
        dropout: f64,
        window: usize,
        causal: bool,
        slot_chunks: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let guards = [
            q.node(),
            k.node(),
            v.node(),
            global_k.node(),
            global_v.node(),
        ];
        let [q, k, v, global_k, global_v, key_ok, global_ok] =
            [q, k, v, global_k, global_v, key_ok, global_ok].map(|t| t.into_primitive());
        let (context, lse) = B::local_attention_forward(
            q.clone(),
            k.clone(),
            v.clone(),
            global_k.clone(),
            global_v.clone(),
            key_ok.clone(),
            global_ok.clone(),
            seed.clone(),
            dropout,
            window,
            causal,
            slot_chunks,
        );
        let context = match LocalAttentionBackward
            .prepare::<C>(guards)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let saved = Saved {
                    q,
                    k,
                    v,
                    global_k,
                    global_v,
                    key_ok,
                    global_ok,
                    seed,
                    dropout,
                    context: context.clone(),
                    lse: lse.clone(),
                    window,
                    causal,
                    slot_chunks,
                };
                prep.finish(saved, context)
            }
            OpsKind::UnTracked(prep) => prep.finish(context),
        };
        (context, FloatTensor::<Self>::new(lse))
    }

    fn local_attention_band_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        key_ok: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        delta: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        seed: IntTensor<Self>,
        dropout: f32,
        window: usize,
        causal: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        // Gradients are not differentiated again: computed on the inner backend, untracked.
        let [q, k, v, key_ok, lse, delta, grad] =
            [q, k, v, key_ok, lse, delta, grad].map(|t| t.into_primitive());
        let (dq, dk, dv) = B::local_attention_band_backward(
            q, k, v, key_ok, lse, delta, grad, seed, dropout, window, causal,
        );
        (
            FloatTensor::<Self>::new(dq),
            FloatTensor::<Self>::new(dk),
            FloatTensor::<Self>::new(dv),
        )
    }

    fn local_attention_global_backward(
        q: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        global_k: FloatTensor<Self>,
        global_v: FloatTensor<Self>,
        global_ok: FloatTensor<Self>,
        seed: IntTensor<Self>,
        lse: FloatTensor<Self>,
        delta: FloatTensor<Self>,
        dq_band: FloatTensor<Self>,
        dropout: f64,
        slot_chunks: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        // Not differentiated again: computed on the inner backend, untracked.
        let [q, grad, global_k, global_v, global_ok, lse, delta, dq_band] =
            [q, grad, global_k, global_v, global_ok, lse, delta, dq_band]
                .map(|t| t.into_primitive());
        let (dq, d_global_k, d_global_v) = B::local_attention_global_backward(
            q,
            grad,
            global_k,
            global_v,
            global_ok,
            seed,
            lse,
            delta,
            dq_band,
            dropout,
            slot_chunks,
        );
        (
            FloatTensor::<Self>::new(dq),
            FloatTensor::<Self>::new(d_global_k),
            FloatTensor::<Self>::new(d_global_v),
        )
    }

    fn global_rows_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        key_ok: FloatTensor<Self>,
        seed: IntTensor<Self>,
        dropout: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let guards = [q.node(), k.node(), v.node()];
        let [q, k, v, key_ok] = [q, k, v, key_ok].map(|t| t.into_primitive());
        let (context, lse) = B::global_rows_forward(
            q.clone(),
            k.clone(),
            v.clone(),
            key_ok.clone(),
            seed.clone(),
            dropout,
        );
        let context = match GlobalRowsBackward
            .prepare::<C>(guards)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let saved = GlobalRowsSaved {
                    q,
                    k,
                    v,
                    key_ok,
                    seed,
                    dropout,
                    context: context.clone(),
                    lse: lse.clone(),
                };
                prep.finish(saved, context)
            }
            OpsKind::UnTracked(prep) => prep.finish(context),
        };
        (context, FloatTensor::<Self>::new(lse))
    }

    fn global_rows_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        key_ok: FloatTensor<Self>,
        seed: IntTensor<Self>,
        lse: FloatTensor<Self>,
        delta: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        dropout: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        // Not differentiated again: computed on the inner backend, untracked.
        let [q, k, v, key_ok, lse, delta, grad] =
            [q, k, v, key_ok, lse, delta, grad].map(|t| t.into_primitive());
        let (dq, dk, dv) =
            B::global_rows_backward(q, k, v, key_ok, seed, lse, delta, grad, dropout);
        (
            FloatTensor::<Self>::new(dq),
            FloatTensor::<Self>::new(dk),
            FloatTensor::<Self>::new(dv),
        )
    }
}
