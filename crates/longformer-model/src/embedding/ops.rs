//! [`EmbeddingLookupOps`]: an embedding lookup whose backward pass sums the gradient by a plan
//! of the ids made on the host, as a Burn backend extension.

// The extension names the ndarray backend, which Burn 0.22 deprecates but still supports.
#![allow(deprecated)]
// Built with no backend at all (`--no-default-features` alone), the generated dispatch has no
// arm to pass the scalar arguments to.
#![cfg_attr(
    not(any(
        feature = "flex",
        feature = "ndarray",
        feature = "wgpu",
        feature = "vulkan"
    )),
    allow(unused_variables)
)]

use burn::backend::{
    Backend, backend_extension,
    tensor::{FloatTensor, IntTensor},
};

/// Rows of an embedding table, with a backward pass that sums the output gradient's rows into
/// the table in parallel (one unit per table row and column on GPUs), where Burn's walks all the
/// tokens once per column.
///
/// The lookup itself is Burn's `select` on every backend; autodiff registers a backward pass of
/// one or two [`segment_row_sums`](Self::segment_row_sums). The CubeCL backend sums with its own
/// kernel, the CPU backends (flex, ndarray) with a loop on the host (their tensors are there).
#[backend_extension(
    Cube: cfg(any(feature = "wgpu", feature = "vulkan")),
    Flex: cfg(feature = "flex"),
    NdArray: cfg(feature = "ndarray"),
    Autodiff,
    Fusion: cfg(feature = "fusion"),
)]
pub trait EmbeddingLookupOps: Backend {
    /// Rows `ids` of `weight`. Under autodiff, `weight`'s gradient is the output gradient summed
    /// by the plan in two levels: chunk `c` sums the gradient rows
    /// `order[chunk_starts[c]..chunk_starts[c + 1]]`, and table row `targets[s]` sums chunks
    /// `segment_starts[s]..segment_starts[s + 1]` (with as many chunks as targets, the chunks
    /// are the rows' sums already); `chunk_rows` is `0..chunks`. Tokens left out of `order` pass
    /// no gradient.
    ///
    /// # Shapes
    /// - weight: `[vocab, d]`; ids: `[n]`
    /// - order: `[n']` (`n' <= n`, at least 1); chunk_starts: `[chunks + 1]`; chunk_rows:
    ///   `[chunks]`; segment_starts: `[segments + 1]`; targets: `[segments]`
    /// - output: `[n, d]`
    #[allow(clippy::too_many_arguments)]
    #[fusion(default)]
    fn embedding_lookup(
        weight: FloatTensor<Self>,
        ids: IntTensor<Self>,
        order: IntTensor<Self>,
        chunk_starts: IntTensor<Self>,
        chunk_rows: IntTensor<Self>,
        segment_starts: IntTensor<Self>,
        targets: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        // The plan is for the backward pass (see the autodiff implementation).
        let _ = (order, chunk_starts, chunk_rows, segment_starts, targets);
        Self::float_select(weight, 0, ids)
    }

    /// `out[targets[s]] = Σ values[order[j]]` over `j` in `starts[s]..starts[s + 1]`, added in
    /// that order in f32 whatever `values`' dtype, for every segment `s`; the other rows of
    /// `out` are zero. `targets` are distinct.
    ///
    /// # Shapes
    /// - values: `[n, d]`; order: `[n']`; starts: `[segments + 1]`; targets: `[segments]`
    /// - output: `[rows, d]`, `values`' dtype
    #[fusion(meta = fusion_outputs::segment_row_sums)]
    fn segment_row_sums(
        values: FloatTensor<Self>,
        order: IntTensor<Self>,
        starts: IntTensor<Self>,
        targets: IntTensor<Self>,
        rows: usize,
    ) -> FloatTensor<Self>;
}

/// Output metadata for Burn's fusion, which registers the ops before they run.
#[cfg(feature = "fusion")]
mod fusion_outputs {
    use burn::backend::fusion::custom::TensorSpec;

    /// [`super::EmbeddingLookupOps::segment_row_sums`]: `[rows, d]` in `values`' dtype.
    pub(super) fn segment_row_sums(
        values: &TensorSpec,
        _order: &TensorSpec,
        _starts: &TensorSpec,
        _targets: &TensorSpec,
        rows: &usize,
    ) -> TensorSpec {
        let [_, d] = values.shape.dims::<2>();
        TensorSpec::new([*rows, d].into(), values.dtype)
    }
}
