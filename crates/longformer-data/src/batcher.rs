//! Batching chunks into padded Burn tensors.

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::{Bool, Device, Int, Tensor, TensorData};

use crate::error::DataError;
use crate::layout::WikiHopChunk;

/// Chunks padded to a common length, still on the host; [`WikiHopBatcher`] turns it into tensors.
///
/// Axes: `batch_size` chunks, `seq_length` = the longest chunk, `max_candidates` = the
/// most candidates in the batch. All matrices are row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaddedBatch {
    /// Chunks in the batch.
    pub batch_size: usize,
    /// Longest chunk.
    pub seq_length: usize,
    /// Most candidates.
    pub max_candidates: usize,
    /// `[batch_size, seq_length]`, padded with the pad id.
    pub input_ids: Vec<i64>,
    /// `[batch_size, seq_length]`, true on real tokens.
    pub attention_mask: Vec<bool>,
    /// `[batch_size, seq_length]`, true on the candidate part.
    pub global_attention_mask: Vec<bool>,
    /// `[batch_size, max_candidates]`, positions of the `[ent]` tokens, 0 where padded.
    pub candidate_positions: Vec<i64>,
    /// `[batch_size, max_candidates]`, true on real candidates.
    pub candidate_mask: Vec<bool>,
    /// `[batch_size]`.
    pub answer_index: Vec<i64>,
}

impl PaddedBatch {
    /// Pads `chunks` with `pad_id`.
    ///
    /// # Errors
    /// [`DataError::EmptyBatch`] if `chunks` is empty; [`DataError::BadChunk`], naming the
    /// chunk, if one is inconsistent (as a hand-built one can be, never one of
    /// [`layout`](crate::layout())): its `answer_index` is not one of its candidates, a
    /// `predicted_indices` position or its `global_len` lies beyond its tokens.
    pub fn try_new(chunks: &[WikiHopChunk], pad_id: u32) -> Result<Self, DataError> {
        if chunks.is_empty() {
            return Err(DataError::EmptyBatch);
        }
        if let Some((chunk, problem)) = chunks
            .iter()
            .find_map(|c| inconsistency(c).map(|problem| (c, problem)))
        {
            return Err(DataError::BadChunk {
                id: chunk.id.clone(),
                chunk: chunk.chunk,
                problem,
            });
        }
        Ok(Self::pad(chunks, pad_id))
    }

    /// [`try_new`](Self::try_new) for chunks known to be good, as [`WikiHopBatcher`] gets them
    /// from Burn's data loader (whose `Batcher` cannot return an error).
    ///
    /// # Panics
    /// Where [`try_new`](Self::try_new) returns an error, with its message.
    pub fn new(chunks: &[WikiHopChunk], pad_id: u32) -> Self {
        Self::try_new(chunks, pad_id).unwrap_or_else(|e| panic!("PaddedBatch::new: {e}"))
    }

    /// Pads consistent, non-empty `chunks`.
    fn pad(chunks: &[WikiHopChunk], pad_id: u32) -> Self {
        let batch_size = chunks.len();
        let seq_length = chunks.iter().map(|c| c.input_ids.len()).max().unwrap_or(0);
        let max_candidates = chunks
            .iter()
            .map(|c| c.predicted_indices.len())
            .max()
            .unwrap_or(0);
        let mut batch = Self {
            batch_size,
            seq_length,
            max_candidates,
            input_ids: vec![i64::from(pad_id); batch_size * seq_length],
            attention_mask: vec![false; batch_size * seq_length],
            global_attention_mask: vec![false; batch_size * seq_length],
            candidate_positions: vec![0; batch_size * max_candidates],
            candidate_mask: vec![false; batch_size * max_candidates],
            answer_index: Vec::with_capacity(batch_size),
        };
        for (row, chunk) in chunks.iter().enumerate() {
            let tokens = row * seq_length;
            for (i, &id) in chunk.input_ids.iter().enumerate() {
                batch.input_ids[tokens + i] = i64::from(id);
                batch.attention_mask[tokens + i] = true;
                batch.global_attention_mask[tokens + i] = i < chunk.global_len;
            }
            let candidates = row * max_candidates;
            for (j, &position) in chunk.predicted_indices.iter().enumerate() {
                batch.candidate_positions[candidates + j] = i64::from(position);
                batch.candidate_mask[candidates + j] = true;
            }
            batch.answer_index.push(chunk.answer_index as i64);
        }
        batch
    }
}

/// What is wrong with a chunk whose answer, candidate positions or global part do not fit it.
fn inconsistency(chunk: &WikiHopChunk) -> Option<String> {
    let (tokens, candidates) = (chunk.input_ids.len(), chunk.predicted_indices.len());
    if chunk.answer_index >= candidates {
        return Some(format!(
            "answer_index {} is out of range for {candidates} candidates",
            chunk.answer_index
        ));
    }
    if let Some(position) = chunk
        .predicted_indices
        .iter()
        .find(|&&p| p as usize >= tokens)
    {
        return Some(format!(
            "predicted index {position} is beyond its {tokens} tokens"
        ));
    }
    (chunk.global_len > tokens).then(|| {
        format!(
            "global_len {} is beyond its {tokens} tokens",
            chunk.global_len
        )
    })
}

/// Model inputs for a batch of chunks.
#[derive(Debug, Clone)]
pub struct WikiHopBatch {
    /// Token ids, padded with the tokenizer's pad id: `[batch_size, seq_length]`.
    pub input_ids: Tensor<2, Int>,
    /// True on real tokens, false on padding: `[batch_size, seq_length]`.
    pub attention_mask: Tensor<2, Bool>,
    /// True on the candidate part (global attention): `[batch_size, seq_length]`.
    pub global_attention_mask: Tensor<2, Bool>,
    /// Positions of the `[ent]` tokens, 0 where padded: `[batch_size, max_candidates]`.
    pub candidate_positions: Tensor<2, Int>,
    /// True on real candidates: `[batch_size, max_candidates]`.
    pub candidate_mask: Tensor<2, Bool>,
    /// Index of the answer among each chunk's candidates: `[batch_size]`.
    pub answer_index: Tensor<1, Int>,
    /// Example id of each row.
    pub ids: Vec<String>,
    /// Chunk number of each row within its example.
    pub chunks: Vec<usize>,
    /// Chunks of each row's example.
    pub num_chunks: Vec<usize>,
}

/// Burn batcher from [`WikiHopChunk`]s to a [`WikiHopBatch`]; pads with `pad_id`.
#[derive(Debug, Clone, Copy)]
pub struct WikiHopBatcher {
    pad_id: u32,
}

impl WikiHopBatcher {
    /// A batcher padding with `pad_id` (see [`crate::WikiHopTokenizer::pad_id`]).
    pub fn new(pad_id: u32) -> Self {
        Self { pad_id }
    }
}

impl Batcher<WikiHopChunk, WikiHopBatch> for WikiHopBatcher {
    /// # Panics
    /// If `items` is empty or a chunk is inconsistent (see [`PaddedBatch::try_new`]).
    fn batch(&self, items: Vec<WikiHopChunk>, device: &Device) -> WikiHopBatch {
        let padded = PaddedBatch::new(&items, self.pad_id);
        let tokens = [padded.batch_size, padded.seq_length];
        let candidates = [padded.batch_size, padded.max_candidates];
        WikiHopBatch {
            input_ids: Tensor::from_data(TensorData::new(padded.input_ids, tokens), device),
            attention_mask: Tensor::from_data(
                TensorData::new(padded.attention_mask, tokens),
                device,
            ),
            global_attention_mask: Tensor::from_data(
                TensorData::new(padded.global_attention_mask, tokens),
                device,
            ),
            candidate_positions: Tensor::from_data(
                TensorData::new(padded.candidate_positions, candidates),
                device,
            ),
            candidate_mask: Tensor::from_data(
                TensorData::new(padded.candidate_mask, candidates),
                device,
            ),
            answer_index: Tensor::from_data(
                TensorData::new(padded.answer_index, [padded.batch_size]),
                device,
            ),
            ids: items.iter().map(|c| c.id.clone()).collect(),
            chunks: items.iter().map(|c| c.chunk).collect(),
            num_chunks: items.iter().map(|c| c.num_chunks).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(
        id: &str,
        ids: &[u32],
        global_len: usize,
        ents: &[u32],
        answer: usize,
    ) -> WikiHopChunk {
        WikiHopChunk {
            id: id.into(),
            chunk: 0,
            num_chunks: 1,
            input_ids: ids.to_vec(),
            global_len,
            predicted_indices: ents.to_vec(),
            answer_index: answer,
        }
    }

    fn two_chunks() -> Vec<WikiHopChunk> {
        vec![
            chunk("a", &[0, 10, 11, 2, 7, 2], 3, &[1], 0),
            chunk("b", &[0, 10, 12, 10, 13, 2, 8, 9, 2], 5, &[1, 3], 1),
        ]
    }

    #[test]
    fn pads_tokens_masks_and_candidates() {
        let batch = PaddedBatch::new(&two_chunks(), 1);
        assert_eq!(
            (batch.batch_size, batch.seq_length, batch.max_candidates),
            (2, 9, 2)
        );
        assert_eq!(batch.input_ids[..9], [0, 10, 11, 2, 7, 2, 1, 1, 1]);
        assert_eq!(batch.input_ids[9..], [0, 10, 12, 10, 13, 2, 8, 9, 2]);
        let count = |m: &[bool]| m.iter().filter(|&&b| b).count();
        assert_eq!(count(&batch.attention_mask[..9]), 6);
        assert_eq!(count(&batch.attention_mask[9..]), 9);
        assert_eq!(
            batch.global_attention_mask[..9],
            [true, true, true, false, false, false, false, false, false]
        );
        assert_eq!(count(&batch.global_attention_mask[9..]), 5);
        assert_eq!(batch.candidate_positions, [1, 0, 1, 3]);
        assert_eq!(batch.candidate_mask, [true, false, true, true]);
        assert_eq!(batch.answer_index, [0, 1]);
    }

    #[test]
    fn batch_of_one_has_no_padding() {
        let batch = PaddedBatch::new(&two_chunks()[1..], 1);
        assert!(batch.attention_mask.iter().all(|&b| b));
        assert!(batch.candidate_mask.iter().all(|&b| b));
    }

    #[test]
    fn empty_batch_is_an_error() {
        let error = PaddedBatch::try_new(&[], 1).unwrap_err();
        assert!(matches!(error, DataError::EmptyBatch), "{error}");
    }

    #[test]
    #[should_panic(expected = "PaddedBatch::new: no chunks to batch")]
    fn new_panics_with_the_error() {
        PaddedBatch::new(&[], 1);
    }

    /// A hand-built chunk that does not fit together would give a batch whose answer or
    /// candidate positions point past the chunk's candidates or tokens: refused, naming it.
    #[test]
    fn inconsistent_chunks_are_refused_naming_the_chunk() {
        let good = &two_chunks()[1];
        for (chunk, expected) in [
            (
                WikiHopChunk {
                    answer_index: 2,
                    ..good.clone()
                },
                r#"chunk 0 of example "b": answer_index 2 is out of range for 2 candidates"#,
            ),
            (
                WikiHopChunk {
                    predicted_indices: vec![],
                    answer_index: 0,
                    ..good.clone()
                },
                "answer_index 0 is out of range for 0 candidates",
            ),
            (
                WikiHopChunk {
                    predicted_indices: vec![1, 9],
                    ..good.clone()
                },
                "predicted index 9 is beyond its 9 tokens",
            ),
            (
                WikiHopChunk {
                    global_len: 10,
                    ..good.clone()
                },
                "global_len 10 is beyond its 9 tokens",
            ),
        ] {
            let batch = vec![two_chunks()[0].clone(), chunk];
            let error = PaddedBatch::try_new(&batch, 1).unwrap_err();
            assert!(matches!(error, DataError::BadChunk { .. }), "{error:?}");
            assert!(error.to_string().contains(expected), "{error}");
        }
    }

    #[test]
    fn batcher_builds_tensors_of_the_documented_shapes() {
        let device = Device::flex();
        let batch = WikiHopBatcher::new(1).batch(two_chunks(), &device);
        assert_eq!(batch.input_ids.dims(), [2, 9]);
        assert_eq!(batch.attention_mask.dims(), [2, 9]);
        assert_eq!(batch.global_attention_mask.dims(), [2, 9]);
        assert_eq!(batch.candidate_positions.dims(), [2, 2]);
        assert_eq!(batch.candidate_mask.dims(), [2, 2]);
        assert_eq!(batch.answer_index.dims(), [2]);
        let ids: Vec<i64> = batch.input_ids.into_data().try_to_vec_as::<i64>().unwrap();
        assert_eq!(ids[6..9], [1, 1, 1]);
        let mask: Vec<bool> = batch
            .attention_mask
            .into_data()
            .try_to_vec::<bool>()
            .unwrap();
        assert_eq!(mask.iter().filter(|&&b| b).count(), 15);
        let positions: Vec<i64> = batch
            .candidate_positions
            .into_data()
            .try_to_vec_as::<i64>()
            .unwrap();
        assert_eq!(positions, [1, 0, 1, 3]);
        assert_eq!(batch.ids, ["a", "b"]);
    }
}
