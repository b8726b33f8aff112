//! [`AttentionMasks`]: device-side masks built once per forward pass from an [`AttentionLayout`]
//! and shared by every layer; band masks are built once per distinct window pattern.

use std::collections::HashMap;
use std::sync::Mutex;

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use super::band::span_blocks;
use crate::input::AttentionLayout;

/// Masks and index lists for one batch.
///
/// Axes: `batch_size`, `seq_length`, `n_global` (largest global count in a row), `window` (one-sided,
/// `attention_window / 2`), `n_blocks = padded_length / window`.
#[derive(Debug)]
pub struct AttentionMasks {
    /// The host-side layout these masks come from.
    pub layout: AttentionLayout,
    /// `1.0` for tokens that are neither padding nor global, `[batch_size, seq_length, 1]`: the rows
    /// the local path writes (global rows are replaced, padding rows stay zero).
    pub local_query: Tensor<3>,
    /// `1.0` for tokens that are not global, `[batch_size, 1, seq_length, 1]`.
    pub not_global: Tensor<4>,
    /// Global-slot data; `None` when no row has a global token.
    pub global: Option<GlobalSlots>,
    band: Mutex<HashMap<BandKey, BandMask>>,
    band_per_head: Mutex<HashMap<(BandKey, usize), Tensor<4, Bool>>>,
    fused_keys: Mutex<HashMap<usize, FusedKeys>>,
    device: Device,
}

/// Which keys the fused kernel may use, per sub-sequence row (see [`BandMask`] for the rows
/// under dilation).
#[derive(Debug, Clone)]
pub struct FusedKeys {
    /// `1.0` for band keys (real, not global), `[batch_size · d, ceil(seq_length / d)]`.
    pub key_ok: Tensor<2>,
    /// `1.0` for filled global slots, `[batch_size · d, max(n_global, 1)]` (one empty slot
    /// stands for none).
    pub global_ok: Tensor<2>,
}

/// Where the global tokens are.
#[derive(Debug, Clone)]
pub struct GlobalSlots {
    /// Flat index into `[batch_size * seq_length]` of every slot, `[batch_size * n_global]`.
    pub slot_rows: Tensor<1, Int>,
    /// Indices of filled slots in `[batch_size * n_global]`, `[n_filled]`.
    pub filled_slots: Tensor<1, Int>,
    /// Flat token index of each filled slot in `[batch_size * seq_length]`, `[n_filled]`.
    pub filled_rows: Tensor<1, Int>,
    /// `true` where a global row must not look: padding keys, and every key of an empty slot,
    /// `[batch_size, 1, n_global, seq_length]`.
    pub row_mask: Tensor<4, Bool>,
    /// `1.0` for the keys a global row sees (every real token), `[batch_size, seq_length]`:
    /// the fused op's form of `row_mask` (an empty slot's row sees them too; its output is
    /// never used).
    pub real_keys: Tensor<2>,
}

/// `(window, dilation, causal)`: what a band mask depends on besides the layout.
type BandKey = (usize, usize, bool);

/// The local-window mask for one window size, dilation and direction.
///
/// With dilation `d` the sequence is split into `d` interleaved sub-sequences (positions
/// `r, r + d, ...` for `r < d`) and the band runs over each: its rows are `batch_size · d`, row
/// `b · d + r` being sub-sequence `r` of batch row `b`, and `n_blocks` counts blocks of a
/// sub-sequence. With `d = 1` this is the plain band.
#[derive(Debug, Clone)]
pub struct BandMask {
    /// `true` for masked columns, `[batch_size · d, 1, n_blocks, window, n_global + span]` with
    /// `span = span_blocks(causal) · window` (see [`key_span`](super::band::key_span)):
    /// global columns of empty slots, and span columns that are outside the window (`|i - j| <=
    /// window` in sub-sequence steps; `j <= i` as well when causal), outside the sequence,
    /// padding or global.
    pub masked: Tensor<5, Bool>,
    /// `1.0` for real query rows, `[batch_size · d, 1, n_blocks, window, 1]`.
    pub real_query: Tensor<5>,
}

impl AttentionMasks {
    /// Uploads what every layer needs.
    pub fn new(layout: AttentionLayout, device: &Device) -> Self {
        let [b, l] = [layout.batch_size, layout.seq_length];
        let local_query = layout
            .indicator(device, |i| layout.is_real[i] && !layout.is_global[i])
            .reshape([b, l, 1]);
        let not_global = layout
            .indicator(device, |i| !layout.is_global[i])
            .reshape([b, 1, l, 1]);
        let global = (layout.n_global > 0).then(|| {
            let g = layout.n_global;
            let (filled_slots, filled_rows) = layout.filled_slots(device);
            let pad_keys = layout
                .padding(device)
                .reshape([b, 1, 1, l])
                .expand([b, 1, g, l]);
            let empty = layout
                .empty_slots(device)
                .reshape([b, 1, g, 1])
                .expand([b, 1, g, l]);
            GlobalSlots {
                slot_rows: layout.slot_rows(device),
                filled_slots,
                filled_rows,
                row_mask: pad_keys.bool_or(empty),
                real_keys: layout.indicator(device, |i| layout.is_real[i]),
            }
        });
        Self {
            layout,
            local_query,
            not_global,
            global,
            band: Mutex::new(HashMap::new()),
            band_per_head: Mutex::new(HashMap::new()),
            fused_keys: Mutex::new(HashMap::new()),
            device: device.clone(),
        }
    }

    /// The band mask for one-sided `window`, `dilation` (`>= 1`) and direction, built on first use.
    pub fn band(&self, window: usize, dilation: usize, causal: bool) -> BandMask {
        let mut cache = self.band.lock().expect("band mask cache poisoned");
        cache
            .entry((window, dilation, causal))
            .or_insert_with(|| {
                build_band_mask(&self.layout, (window, dilation, causal), &self.device)
            })
            .clone()
    }

    /// The band mask laid out for Burn's fused `attention` with query blocks as heads:
    /// `[batch_size · d, n_heads · n_blocks, window, n_global + span]` (head-major), the same
    /// columns as [`band`](Self::band) repeated for every head. Built once per forward pass and
    /// shared by the layers with this pattern (its size is that of one layer's band scores in
    /// bytes, not floats).
    pub fn band_per_head(
        &self,
        window: usize,
        dilation: usize,
        causal: bool,
        n_heads: usize,
    ) -> Tensor<4, Bool> {
        let key = (window, dilation, causal);
        let mut cache = self.band_per_head.lock().expect("band mask cache poisoned");
        cache
            .entry((key, n_heads))
            .or_insert_with(|| {
                let host = band_mask_host(&self.layout, key);
                let [rows, nb, w, cols] = host.dims;
                let tile = nb * w * cols;
                let mut masked = Vec::with_capacity(rows * n_heads * tile);
                for row in host.masked.chunks(tile) {
                    for _ in 0..n_heads {
                        masked.extend_from_slice(row);
                    }
                }
                Tensor::from_data(
                    TensorData::new(masked, [rows, n_heads * nb, w, cols]),
                    &self.device,
                )
            })
            .clone()
    }
}

impl AttentionMasks {
    /// The key masks of the fused kernel for `dilation` (`>= 1`), built on first use.
    pub fn fused_keys(&self, dilation: usize) -> FusedKeys {
        let mut cache = self.fused_keys.lock().expect("fused key cache poisoned");
        cache
            .entry(dilation)
            .or_insert_with(|| {
                let layout = &self.layout;
                let (b, l, g) = (layout.batch_size, layout.seq_length, layout.n_global);
                let m = l.div_ceil(dilation);
                let mut key_ok = Vec::with_capacity(b * dilation * m);
                let mut global_ok = Vec::with_capacity(b * dilation * g.max(1));
                for bi in 0..b {
                    for residue in 0..dilation {
                        key_ok.extend((0..m).map(|t| {
                            let key = residue + t * dilation;
                            f32::from(u8::from(key < l && layout.is_local_key(bi, key)))
                        }));
                        global_ok.extend((0..g).map(|slot| {
                            f32::from(u8::from(layout.global_positions[bi * g + slot].is_some()))
                        }));
                        if g == 0 {
                            global_ok.push(0.0);
                        }
                    }
                }
                let rows = b * dilation;
                FusedKeys {
                    key_ok: Tensor::from_data(TensorData::new(key_ok, [rows, m]), &self.device),
                    global_ok: Tensor::from_data(
                        TensorData::new(global_ok, [rows, g.max(1)]),
                        &self.device,
                    ),
                }
            })
            .clone()
    }
}

/// Length the local path pads a sequence to: the next multiple of `window`.
pub fn padded_length(seq_length: usize, window: usize) -> usize {
    seq_length.div_ceil(window) * window
}

/// A band mask on the host: `masked` is `[rows, n_blocks, window, cols]`, `real` is
/// `[rows, n_blocks, window]` (`rows = batch_size · dilation`).
struct HostBand {
    masked: Vec<bool>,
    real: Vec<f32>,
    dims: [usize; 4],
}

fn build_band_mask(layout: &AttentionLayout, key: BandKey, device: &Device) -> BandMask {
    let HostBand { masked, real, dims } = band_mask_host(layout, key);
    let [rows, nb, w, cols] = dims;
    BandMask {
        masked: Tensor::from_data(TensorData::new(masked, [rows, 1, nb, w, cols]), device),
        real_query: Tensor::from_data(TensorData::new(real, [rows, 1, nb, w, 1]), device),
    }
}

fn band_mask_host(layout: &AttentionLayout, key: BandKey) -> HostBand {
    let (w, dilation, causal) = key;
    let (b, l, g) = (layout.batch_size, layout.seq_length, layout.n_global);
    // Sub-sequence r holds positions r, r + d, ...: the longest (r = 0) has ceil(l / d) tokens.
    let sub_length = l.div_ceil(dilation);
    let lp = padded_length(sub_length, w);
    let nb = lp / w;
    let cols = g + span_blocks(causal) * w;
    let rows = b * dilation;
    let mut masked = vec![true; rows * nb * w * cols];
    let mut real = vec![0.0f32; rows * nb * w];
    // Span column s of row r in its block is sub-sequence step blk*w - w + s; the window is
    // r <= s <= r + 2w (r + w when causal: no later key).
    let last_column = |r: usize| if causal { r + w } else { r + 2 * w };
    let position = |residue: usize, step: usize| residue + step * dilation;
    for bi in 0..b {
        for residue in 0..dilation {
            let row0 = bi * dilation + residue;
            for blk in 0..nb {
                for r in 0..w {
                    let i = position(residue, blk * w + r);
                    let row = ((row0 * nb + blk) * w + r) * cols;
                    if i < l && layout.is_real[bi * l + i] {
                        real[(row0 * nb + blk) * w + r] = 1.0;
                    }
                    for slot in 0..g {
                        masked[row + slot] = layout.global_positions[bi * g + slot].is_none();
                    }
                    for s in r..=last_column(r) {
                        let Some(step) = (blk * w + s).checked_sub(w) else {
                            continue;
                        };
                        let key = position(residue, step);
                        if key < l && layout.is_local_key(bi, key) {
                            masked[row + g + s] = false;
                        }
                    }
                }
            }
        }
    }
    HostBand {
        masked,
        real,
        dims: [rows, nb, w, cols],
    }
}
