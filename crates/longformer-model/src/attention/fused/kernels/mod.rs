//! CubeCL kernels of the fused local attention: the forward pass, and the band's backward.
//!
//! One cube owns `block` consecutive rows (queries, or keys in the key-gradient kernel) of one
//! `(row, head)` pair, one unit per row. The cube walks the other side's rows that any of its
//! rows may see, `tile` rows at a time staged in shared memory, and each unit keeps its own
//! running state in registers: the online softmax (maximum, sum, weighted values) forward, the
//! gradient sums backward. Nothing of size `[m, 2w + 1]` is ever written.
//!
//! Rows of `q`, `k`, `v` (and their gradients) are read as vectors of `N` floats (4 for every
//! head width divisible by 4): one shared-memory read feeds `N` multiply-adds, and every dot
//! product keeps `N` independent partial sums. A tile is staged by all units together, unit `u`
//! copying vectors `u, u + block, ...` of the tile's contiguous span: neighbouring units read
//! neighbouring addresses (coalesced) and write neighbouring shared-memory words (no bank
//! conflicts).
//!
//! Masked scores are skipped, not given a large negative value, so a query that sees no key
//! ends with an empty sum (zero context, log-sum-exp 0).
//!
//! - `common`: the band's launch arguments, a unit's place, tile staging, row arithmetic and
//!   the dropout hash.
//! - `forward`: context and log-sum-exp.
//! - `backward`: `dq` (query side), `dk` and `dv` (key side) of the band.
//! - `global_backward`: the global slots' share: `dq`'s (query side), the slots' `dk` and `dv`
//!   (slot side).
//! - `global_rows`: the global rows' chunks of keys weighed into the whole rows' results.

mod backward;
mod common;
mod forward;
mod global_backward;
mod global_rows;

pub use backward::{local_attention_dkdv_kernel, local_attention_dq_kernel};
pub use common::BandArgsLaunch;
pub use forward::local_attention_forward_kernel;
pub use global_backward::{local_attention_global_dq_kernel, local_attention_global_slots_kernel};
pub use global_rows::{CombineArgsLaunch, global_rows_combine_kernel};
