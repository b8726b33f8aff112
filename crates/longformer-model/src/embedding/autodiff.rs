//! [`EmbeddingLookupOps`] under autodiff: the lookup saves its plan, and the backward pass sums
//! the output gradient into the table with one or two
//! [`segment_row_sums`](EmbeddingLookupOps::segment_row_sums).

use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Backend, TensorMetadata};
use burn_autodiff::Autodiff;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::CheckpointStrategy;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};

use super::ops::EmbeddingLookupOps;

/// The plan, as the inner backend's tensors, and the table's row count.
#[derive(Debug, Clone)]
struct Saved<B: Backend> {
    order: IntTensor<B>,
    chunk_starts: IntTensor<B>,
    chunk_rows: IntTensor<B>,
    segment_starts: IntTensor<B>,
    targets: IntTensor<B>,
    vocab: usize,
}

#[derive(Debug)]
struct EmbeddingLookupBackward;

impl<B: Backend + EmbeddingLookupOps> Backward<B, 1> for EmbeddingLookupBackward {
    type State = Saved<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [weight_node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let Some(node) = weight_node else {
            return;
        };
        let s = ops.state;
        let chunks = s.chunk_rows.shape().num_elements();
        let segments = s.targets.shape().num_elements();
        let table = if chunks == segments {
            B::segment_row_sums(grad, s.order, s.chunk_starts, s.targets, s.vocab)
        } else {
            let partial =
                B::segment_row_sums(grad, s.order, s.chunk_starts, s.chunk_rows.clone(), chunks);
            B::segment_row_sums(partial, s.chunk_rows, s.segment_starts, s.targets, s.vocab)
        };
        grads.register::<B>(node.id, table);
    }
}

impl<B: Backend + EmbeddingLookupOps, C: CheckpointStrategy> EmbeddingLookupOps for Autodiff<B, C> {
    fn embedding_lookup(
        weight: FloatTensor<Self>,
        ids: IntTensor<Self>,
        order: IntTensor<Self>,
        chunk_starts: IntTensor<Self>,
        chunk_rows: IntTensor<Self>,
        segment_starts: IntTensor<Self>,
        targets: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        let guard = [weight.node()];
        let vocab = weight.shape().dims::<2>()[0];
        let weight = weight.into_primitive();
        let output = B::embedding_lookup(
            weight,
            ids,
            order.clone(),
            chunk_starts.clone(),
            chunk_rows.clone(),
            segment_starts.clone(),
            targets.clone(),
        );
        match EmbeddingLookupBackward
            .prepare::<C>(guard)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(
                Saved {
                    order,
                    chunk_starts,
                    chunk_rows,
                    segment_starts,
                    targets,
                    vocab,
                },
                output,
            ),
            OpsKind::UnTracked(prep) => prep.finish(output),
        }
    }

    fn segment_row_sums(
        values: FloatTensor<Self>,
        order: IntTensor<Self>,
        starts: IntTensor<Self>,
        targets: IntTensor<Self>,
        rows: usize,
    ) -> FloatTensor<Self> {
        // Not differentiated: computed on the inner backend, untracked.
        FloatTensor::<Self>::new(B::segment_row_sums(
            values.into_primitive(),
            order,
            starts,
            targets,
            rows,
        ))
    }
}
