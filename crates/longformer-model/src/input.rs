//! [`LongformerInput`]: token ids and the two masks, and [`AttentionLayout`], the host-side
//! summary of those masks (which tokens are padding, which are global) that every layer shares.

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use crate::error::InputError;

/// A batch of token ids with HuggingFace's two masks.
///
/// Masks are boolean: `attention_mask` is `true` for real tokens and `false` for padding (HF's
/// `1`/`0`); `global_attention_mask` is `true` for tokens with global attention. A token that is
/// padding is never global. Missing masks mean "no padding" and "no global tokens", as in HF.
/// From integer data ([`try_from_rows`](Self::try_from_rows)) only `0` and `1` are accepted: HF
/// reads other values in ways of its own (an `attention_mask` of `2` makes a token global).
///
/// `token_type_ids` must be below the config's `type_vocab_size` (checked by
/// [`LongformerModel::try_forward`](crate::LongformerModel::try_forward)).
///
/// # Shapes
/// - `input_ids`: `[batch_size, seq_length]`
/// - `attention_mask`, `global_attention_mask`, `token_type_ids`: `[batch_size, seq_length]`
#[derive(Debug, Clone)]
pub struct LongformerInput {
    /// Token ids.
    pub input_ids: Tensor<2, Int>,
    /// `true` for real tokens, `false` for padding.
    pub attention_mask: Option<Tensor<2, Bool>>,
    /// `true` for tokens with global attention.
    pub global_attention_mask: Option<Tensor<2, Bool>>,
    /// Segment ids (all zero when absent).
    pub token_type_ids: Option<Tensor<2, Int>>,
}

impl LongformerInput {
    /// Input with no padding and no global tokens.
    pub fn new(input_ids: Tensor<2, Int>) -> Self {
        Self {
            input_ids,
            attention_mask: None,
            global_attention_mask: None,
            token_type_ids: None,
        }
    }

    /// Marks padding: `true` for real tokens.
    pub fn with_attention_mask(mut self, mask: Tensor<2, Bool>) -> Self {
        self.attention_mask = Some(mask);
        self
    }

    /// Marks global tokens: `true` for tokens that attend to and are attended by every token.
    pub fn with_global_attention_mask(mut self, mask: Tensor<2, Bool>) -> Self {
        self.global_attention_mask = Some(mask);
        self
    }

    /// Sets segment ids.
    pub fn with_token_type_ids(mut self, ids: Tensor<2, Int>) -> Self {
        self.token_type_ids = Some(ids);
        self
    }

    /// Builds an input from host data in HF's integer convention (`1` real / `0` pad; `1` global).
    ///
    /// Rows may be ragged: shorter rows are padded on the right with `pad_token_id` (and mask 0).
    ///
    /// # Panics
    /// On data [`try_from_rows`](Self::try_from_rows) rejects, with its message.
    pub fn from_rows(
        input_ids: &[Vec<i64>],
        attention_mask: Option<&[Vec<i64>]>,
        global_attention_mask: Option<&[Vec<i64>]>,
        pad_token_id: i64,
        device: &Device,
    ) -> Self {
        Self::try_from_rows(
            input_ids,
            attention_mask,
            global_attention_mask,
            pad_token_id,
            device,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`from_rows`](Self::from_rows), returning an error for data it cannot represent
    /// faithfully instead of panicking: a mask value other than `0` or `1` (HF gives other values
    /// meanings of their own) and an id outside `0..=2147483647` (the device's integers may not
    /// hold it). Ids outside the vocabulary are left to
    /// [`LongformerModel::try_forward`](crate::LongformerModel::try_forward), which knows it.
    ///
    /// # Errors
    /// [`InputError::MaskValue`] and [`InputError::TokenIdRange`], naming the row and column.
    pub fn try_from_rows(
        input_ids: &[Vec<i64>],
        attention_mask: Option<&[Vec<i64>]>,
        global_attention_mask: Option<&[Vec<i64>]>,
        pad_token_id: i64,
        device: &Device,
    ) -> Result<Self, InputError> {
        let batch_size = input_ids.len();
        let seq_length = input_ids.iter().map(Vec::len).max().unwrap_or(0);
        // The 0/1 value of `mask` at (row, col), `default` where the mask or its cell is absent.
        let cell = |mask: &'static str,
                    rows: Option<&[Vec<i64>]>,
                    row: usize,
                    col: usize,
                    default: bool| {
            match rows.and_then(|r| r.get(row)).and_then(|r| r.get(col)) {
                None => Ok(default),
                Some(0) => Ok(false),
                Some(1) => Ok(true),
                Some(&value) => Err(InputError::MaskValue {
                    mask,
                    row,
                    col,
                    value,
                }),
            }
        };
        let mut ids = Vec::with_capacity(batch_size * seq_length);
        let mut real = Vec::with_capacity(batch_size * seq_length);
        let mut global = Vec::with_capacity(batch_size * seq_length);
        for (row, id_row) in input_ids.iter().enumerate() {
            for col in 0..seq_length {
                let Some(&id) = id_row.get(col) else {
                    ids.push(pad_token_id);
                    real.push(false);
                    global.push(false);
                    continue;
                };
                if !(0..=i64::from(i32::MAX)).contains(&id) {
                    return Err(InputError::TokenIdRange { row, col, id });
                }
                ids.push(id);
                real.push(cell("attention_mask", attention_mask, row, col, true)?);
                global.push(cell(
                    "global_attention_mask",
                    global_attention_mask,
                    row,
                    col,
                    false,
                )?);
            }
        }
        let shape = [batch_size, seq_length];
        let input = Self::new(Tensor::from_data(TensorData::new(ids, shape), device))
            .with_attention_mask(Tensor::from_data(TensorData::new(real, shape), device));
        Ok(if global_attention_mask.is_some() {
            input.with_global_attention_mask(Tensor::from_data(
                TensorData::new(global, shape),
                device,
            ))
        } else {
            input
        })
    }

    /// `[batch_size, seq_length]`.
    pub fn dims(&self) -> [usize; 2] {
        self.input_ids.dims()
    }

    /// Checks mask shapes and that the batch is non-empty.
    pub(crate) fn check_shapes(&self) -> Result<(), InputError> {
        let expected = self.dims();
        if expected.contains(&0) {
            return Err(InputError::Empty(expected));
        }
        let masks = [
            (
                "attention_mask",
                self.attention_mask.as_ref().map(Tensor::dims),
            ),
            (
                "global_attention_mask",
                self.global_attention_mask.as_ref().map(Tensor::dims),
            ),
            (
                "token_type_ids",
                self.token_type_ids.as_ref().map(Tensor::dims),
            ),
        ];
        for (mask, dims) in masks {
            if let Some(found) = dims
                && found != expected
            {
                return Err(InputError::MaskShape {
                    mask,
                    expected,
                    found,
                });
            }
        }
        Ok(())
    }
}

/// Which tokens are padding and which are global, read once per forward pass and shared by every
/// layer. Global tokens are numbered per row in sequence order: slot `g` of row `b` is the `g`-th
/// global token of that row.
#[derive(Debug, Clone)]
pub struct AttentionLayout {
    /// `[batch_size, seq_length]` as given.
    pub batch_size: usize,
    /// Tokens per row.
    pub seq_length: usize,
    /// `true` for real (non-padding) tokens, row-major `[batch_size, seq_length]`.
    pub is_real: Vec<bool>,
    /// `true` for global tokens (never padding), row-major `[batch_size, seq_length]`.
    pub is_global: Vec<bool>,
    /// Largest number of global tokens in a row (`n_global`).
    pub n_global: usize,
    /// Position of each global slot, row-major `[batch_size, n_global]`; `None` for slots past
    /// a row's own count.
    pub global_positions: Vec<Option<usize>>,
}

impl AttentionLayout {
    /// Reads the masks of `input` to the host.
    pub fn from_input(input: &LongformerInput) -> Self {
        let [batch_size, seq_length] = input.dims();
        let read = |mask: &Option<Tensor<2, Bool>>, default: bool| -> Vec<bool> {
            match mask {
                Some(m) => m
                    .clone()
                    .int()
                    .into_data()
                    .iter::<i64>()
                    .map(|v| v != 0)
                    .collect(),
                None => vec![default; batch_size * seq_length],
            }
        };
        let is_real = read(&input.attention_mask, true);
        let global = read(&input.global_attention_mask, false);
        let is_global: Vec<bool> = is_real.iter().zip(&global).map(|(r, g)| *r && *g).collect();
        Self::new(batch_size, seq_length, is_real, is_global)
    }

    /// A layout from host masks, row-major `[batch_size, seq_length]`.
    pub fn new(
        batch_size: usize,
        seq_length: usize,
        is_real: Vec<bool>,
        is_global: Vec<bool>,
    ) -> Self {
        assert_eq!(
            is_real.len(),
            batch_size * seq_length,
            "is_real has the wrong length"
        );
        assert_eq!(
            is_global.len(),
            batch_size * seq_length,
            "is_global has the wrong length"
        );
        let rows: Vec<Vec<usize>> = is_global
            .chunks(seq_length)
            .map(|row| (0..seq_length).filter(|&t| row[t]).collect())
            .collect();
        let n_global = rows.iter().map(Vec::len).max().unwrap_or(0);
        let global_positions = rows
            .iter()
            .flat_map(|row| (0..n_global).map(move |g| row.get(g).copied()))
            .collect();
        Self {
            batch_size,
            seq_length,
            is_real,
            is_global,
            n_global,
            global_positions,
        }
    }

    /// Whether key `t` of row `b` takes part in the sliding window (real and not global).
    pub fn is_local_key(&self, b: usize, t: usize) -> bool {
        let i = b * self.seq_length + t;
        self.is_real[i] && !self.is_global[i]
    }

    /// Flat indices into `[batch_size * seq_length]` of every global slot, `[batch_size * n_global]`;
    /// empty slots point at their row's first token (their results are discarded).
    pub fn slot_rows(&self, device: &Device) -> Tensor<1, Int> {
        let idx: Vec<i64> = self
            .global_positions
            .iter()
            .enumerate()
            .map(|(slot, pos)| ((slot / self.n_global) * self.seq_length + pos.unwrap_or(0)) as i64)
            .collect();
        Tensor::from_data(
            TensorData::new(idx, [self.batch_size * self.n_global]),
            device,
        )
    }

    /// `(slots, rows)`: for each filled global slot, its index in `[batch_size * n_global]` and the
    /// flat index of its token in `[batch_size * seq_length]`.
    pub fn filled_slots(&self, device: &Device) -> (Tensor<1, Int>, Tensor<1, Int>) {
        let (slots, rows): (Vec<i64>, Vec<i64>) = self
            .global_positions
            .iter()
            .enumerate()
            .filter_map(|(slot, pos)| {
                pos.map(|p| {
                    (
                        slot as i64,
                        ((slot / self.n_global) * self.seq_length + p) as i64,
                    )
                })
            })
            .unzip();
        let n = slots.len();
        (
            Tensor::from_data(TensorData::new(slots, [n]), device),
            Tensor::from_data(TensorData::new(rows, [n]), device),
        )
    }

    /// `true` for empty global slots, `[batch_size, n_global]`.
    pub fn empty_slots(&self, device: &Device) -> Tensor<2, Bool> {
        let empty: Vec<bool> = self.global_positions.iter().map(Option::is_none).collect();
        Tensor::from_data(
            TensorData::new(empty, [self.batch_size, self.n_global]),
            device,
        )
    }

    /// `true` for padding tokens, `[batch_size, seq_length]`.
    pub fn padding(&self, device: &Device) -> Tensor<2, Bool> {
        let pad: Vec<bool> = self.is_real.iter().map(|r| !r).collect();
        Tensor::from_data(
            TensorData::new(pad, [self.batch_size, self.seq_length]),
            device,
        )
    }

    /// `1.0` where `pred` holds, `0.0` elsewhere, `[batch_size, seq_length]`.
    pub fn indicator(&self, device: &Device, pred: impl Fn(usize) -> bool) -> Tensor<2> {
        let v: Vec<f32> = (0..self.is_real.len())
            .map(|i| if pred(i) { 1.0 } else { 0.0 })
            .collect();
        Tensor::from_data(
            TensorData::new(v, [self.batch_size, self.seq_length]),
            device,
        )
    }
}
