//! WikiHop examples as the training loop sees them: all chunks of an example together, in a
//! seeded order that depends only on (seed, epoch), so a resumed run sees the same batches.

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::Device;
use longformer_data::rng::SplitMix64;
use longformer_data::{WikiHopBatch, WikiHopBatcher, WikiHopChunk};
use longformer_model::batching::{self, BatchLimit, ItemSize};
use serde::{Deserialize, Serialize};

use crate::model::consecutive_runs;

/// The chunks of one example (consecutive in the prepared file, one or more).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// Its chunks, in order.
    pub chunks: Vec<WikiHopChunk>,
}

impl Example {
    /// The example id.
    pub fn id(&self) -> &str {
        &self.chunks[0].id
    }

    /// Number of candidates.
    pub fn candidates(&self) -> usize {
        self.chunks[0].predicted_indices.len()
    }
}

/// What identifies the examples of a training set: their number, their chunks', and a hash
/// of the chunks (ids, tokens, candidate positions, answers). A run records it in each
/// checkpoint, and resuming refuses a set that differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFingerprint {
    /// Examples.
    pub examples: usize,
    /// Chunks.
    pub chunks: usize,
    /// 64-bit FNV-1a of the chunks.
    pub hash: u64,
}

/// 64-bit FNV-1a: the same in every process, platform and Rust version (unlike std's hasher).
struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn number(&mut self, n: usize) {
        self.bytes(&(n as u64).to_le_bytes());
    }

    fn numbers(&mut self, values: &[u32]) {
        self.number(values.len());
        for value in values {
            self.bytes(&value.to_le_bytes());
        }
    }
}

/// A set of examples and how to batch them.
#[derive(Debug, Clone)]
pub struct ExampleSet {
    /// The examples, in file order.
    pub examples: Vec<Example>,
    batcher: WikiHopBatcher,
}

impl ExampleSet {
    /// Groups consecutive chunks with the same example id.
    pub fn new(chunks: Vec<WikiHopChunk>, pad_id: u32) -> Self {
        let runs = consecutive_runs(chunks.iter().map(|c| c.id.as_str()));
        let mut chunks = chunks.into_iter();
        let examples = runs
            .iter()
            .map(|run| Example {
                chunks: chunks.by_ref().take(run.len()).collect(),
            })
            .collect();
        Self {
            examples,
            batcher: WikiHopBatcher::new(pad_id),
        }
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    /// True when there is no example.
    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// Mean over examples of 1 / number of candidates: the accuracy of a uniform guess.
    pub fn chance_accuracy(&self) -> f64 {
        if self.examples.is_empty() {
            return 0.0;
        }
        let sum: f64 = self
            .examples
            .iter()
            .map(|e| 1.0 / e.candidates().max(1) as f64)
            .sum();
        sum / self.examples.len() as f64
    }

    /// The set's [`DataFingerprint`].
    pub fn fingerprint(&self) -> DataFingerprint {
        let mut hash = Fnv1a::new();
        let mut chunks = 0;
        for chunk in self.examples.iter().flat_map(|e| &e.chunks) {
            chunks += 1;
            hash.number(chunk.id.len());
            hash.bytes(chunk.id.as_bytes());
            hash.number(chunk.chunk);
            hash.numbers(&chunk.input_ids);
            hash.number(chunk.global_len);
            hash.numbers(&chunk.predicted_indices);
            hash.number(chunk.answer_index);
        }
        DataFingerprint {
            examples: self.len(),
            chunks,
            hash: hash.0,
        }
    }

    /// Example indices of one epoch: a permutation drawn from `(seed, epoch)` only.
    pub fn epoch_order(&self, seed: u64, epoch: usize) -> Vec<usize> {
        SplitMix64::for_key(seed, &format!("epoch-{epoch}")).permutation(self.len())
    }

    /// Example indices in batches within `limit` (examples, and padded tokens: an example's
    /// chunks × the batch's longest chunk), those with the longest chunks first (ties in file
    /// order): a batch is padded to its longest chunk, so examples of similar lengths together
    /// leave little padding to compute.
    pub fn longest_first(&self, limit: BatchLimit) -> Vec<Vec<usize>> {
        let sizes: Vec<ItemSize> = self
            .examples
            .iter()
            .map(|e| ItemSize {
                length: e
                    .chunks
                    .iter()
                    .map(|c| c.input_ids.len())
                    .max()
                    .unwrap_or(0),
                rows: e.chunks.len(),
            })
            .collect();
        batching::longest_first(&sizes, limit)
    }

    /// The batch of these examples (all their chunks, consecutive per example).
    pub fn batch(&self, indices: &[usize], device: &Device) -> WikiHopBatch {
        let chunks: Vec<WikiHopChunk> = indices
            .iter()
            .flat_map(|&i| self.examples[i].chunks.iter().cloned())
            .collect();
        self.batcher.batch(chunks, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(id: &str, chunk: usize, candidates: usize) -> WikiHopChunk {
        WikiHopChunk {
            id: id.into(),
            chunk,
            num_chunks: 1,
            input_ids: vec![0, 5, 2],
            global_len: 2,
            predicted_indices: vec![1; candidates],
            answer_index: 0,
        }
    }

    #[test]
    fn groups_chunks_and_computes_chance() {
        let set = ExampleSet::new(
            vec![chunk("a", 0, 2), chunk("a", 1, 2), chunk("b", 0, 4)],
            1,
        );
        assert_eq!(set.len(), 2);
        assert_eq!(set.examples[0].chunks.len(), 2);
        assert!((set.chance_accuracy() - 0.375).abs() < 1e-12);
    }

    /// Batches hold the examples with the longest chunks first, every example once.
    #[test]
    fn longest_first_batches_examples_of_similar_lengths() {
        let with_tokens = |id: &str, part: usize, tokens: usize| WikiHopChunk {
            input_ids: vec![5; tokens],
            ..chunk(id, part, 2)
        };
        let set = ExampleSet::new(
            vec![
                with_tokens("a", 0, 3),
                with_tokens("b", 0, 9),
                with_tokens("c", 0, 4),
                with_tokens("c", 1, 12),
                with_tokens("d", 0, 9),
            ],
            1,
        );
        assert_eq!(
            set.longest_first(BatchLimit::items(2)),
            [vec![2, 1], vec![3, 0]]
        );
        assert_eq!(
            set.longest_first(BatchLimit::items(0)),
            [vec![2], vec![1], vec![3], vec![0]]
        );
        // A budget of 30 tokens: c's two chunks of 12 take 24, and b would make 3 × 12 = 36;
        // b, d and a then fit in 3 × 9 = 27.
        assert_eq!(
            set.longest_first(BatchLimit::items(8).with_tokens(Some(30))),
            [vec![2], vec![1, 3, 0]]
        );
    }

    #[test]
    fn epoch_order_depends_on_seed_and_epoch_only() {
        let set = ExampleSet::new((0..50).map(|i| chunk(&i.to_string(), 0, 2)).collect(), 1);
        let a = set.epoch_order(7, 3);
        assert_eq!(a, set.epoch_order(7, 3));
        assert_ne!(a, set.epoch_order(7, 4));
        assert_ne!(a, set.epoch_order(8, 3));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    }
}
