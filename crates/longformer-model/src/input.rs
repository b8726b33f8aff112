//! [`LongformerInput`]: token ids and the two masks, and [`AttentionLayout`], the host-side
//! summary of those masks (which tokens are padding, which are global) that every layer shares.

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use crate::dropout::DropoutSeed;
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
    /// The seed of the forward pass's dropout masks (training only; see
    /// [`with_dropout_seed`](Self::with_dropout_seed)).
    pub dropout_seed: Option<DropoutSeed>,
}

impl LongformerInput {
    /// Input with no padding and no global tokens.
    pub fn new(input_ids: Tensor<2, Int>) -> Self {
        Self {
            input_ids,
            attention_mask: None,
            global_attention_mask: None,
            token_type_ids: None,
            dropout_seed: None,
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

    /// Seeds the dropout of a training forward pass: every mask is then a function of `seed`
    /// and the element's position ([`crate::dropout`]), the same on every backend, in every
    /// process and whatever ran on the device before. Without it, a training pass draws its
    /// seed from the device's generator ([`DropoutSeed::draw`]). Outside training (no autodiff,
    /// or dropout frozen) the seed is not read.
    pub fn with_dropout_seed(mut self, seed: impl Into<DropoutSeed>) -> Self {
        self.dropout_seed = Some(seed.into());
        self
    }

    /// The seed this input's forward pass draws its dropout masks from: the one set by
    /// [`with_dropout_seed`](Self::with_dropout_seed); else, on an autodiff device (where
    /// dropout may run), one drawn from the device's generator; else a fixed one, never read.
    pub fn dropout_seed_or_draw(&self) -> DropoutSeed {
        self.dropout_seed.unwrap_or_else(|| {
            let device = self.input_ids.device();
            if device.is_autodiff() {
                DropoutSeed::draw(&device)
            } else {
                DropoutSeed::new(0)
            }
        })
    }

    /// This input with its dropout seed fixed ([`dropout_seed_or_draw`](Self::dropout_seed_or_draw)),
    /// and that seed: for a task head, whose own dropout takes its masks from the pass's seed.
    pub fn with_fixed_dropout_seed(self) -> (Self, DropoutSeed) {
        let seed = self.dropout_seed_or_draw();
        (self.with_dropout_seed(seed), seed)
    }

    /// Builds an input from host data in HF's integer convention (`1` real / `0` pad; `1` global).
    ///
    /// Rows may be ragged: shorter rows are padded on the right with `pad_token_id` (and mask 0).
    /// A mask, when given, has one row per id row, each as long as that id row.
    ///
    /// # Shapes
    /// - input_ids: `batch_size` rows of any lengths; the input is `[batch_size, seq_length]`,
    ///   `seq_length` the longest row
    /// - attention_mask, global_attention_mask: the lengths of the rows of `input_ids`
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
    /// faithfully instead of panicking: a mask whose rows do not match the id rows, a mask value
    /// other than `0` or `1` (HF gives other values meanings of their own) and an id outside
    /// `0..=2147483647` (the device's integers may not hold it). Ids outside the vocabulary are
    /// left to [`LongformerModel::try_forward`](crate::LongformerModel::try_forward), which
    /// knows it.
    ///
    /// # Shapes
    /// As [`from_rows`](Self::from_rows).
    ///
    /// # Errors
    /// [`InputError::MaskRowCount`] when a mask has more or fewer rows than `input_ids`,
    /// [`InputError::MaskRowLength`] when a mask row is not as long as its id row (naming the
    /// mask, the row and both lengths); [`InputError::MaskValue`] and
    /// [`InputError::TokenIdRange`], naming the row and column.
    pub fn try_from_rows(
        input_ids: &[Vec<i64>],
        attention_mask: Option<&[Vec<i64>]>,
        global_attention_mask: Option<&[Vec<i64>]>,
        pad_token_id: i64,
        device: &Device,
    ) -> Result<Self, InputError> {
        for (mask, rows) in [
            ("attention_mask", attention_mask),
            ("global_attention_mask", global_attention_mask),
        ] {
            if let Some(rows) = rows {
                check_mask_rows(mask, rows, input_ids)?;
            }
        }
        let batch_size = input_ids.len();
        let seq_length = input_ids.iter().map(Vec::len).max().unwrap_or(0);
        // The 0/1 value of `mask` at (row, col) of an id, `default` where the mask is absent.
        let cell = |mask: &'static str,
                    rows: Option<&[Vec<i64>]>,
                    row: usize,
                    col: usize,
                    default: bool| {
            match rows.map(|r| r[row][col]) {
                None => Ok(default),
                Some(0) => Ok(false),
                Some(1) => Ok(true),
                Some(value) => Err(InputError::MaskValue {
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

    /// The input of rows `start .. start + rows` (ids, masks and token types), at the same
    /// sequence length: each row's outputs are those it gets in the whole batch, so a large
    /// batch can be encoded a few rows at a time. The dropout seed is kept.
    ///
    /// # Shapes
    /// - output: `[rows, seq_length]`
    ///
    /// # Panics
    /// If the rows are not within the batch.
    pub fn narrow_rows(&self, start: usize, rows: usize) -> Self {
        Self {
            input_ids: self.input_ids.clone().narrow(0, start, rows),
            attention_mask: self
                .attention_mask
                .clone()
                .map(|m| m.narrow(0, start, rows)),
            global_attention_mask: self
                .global_attention_mask
                .clone()
                .map(|m| m.narrow(0, start, rows)),
            token_type_ids: self
                .token_type_ids
                .clone()
                .map(|t| t.narrow(0, start, rows)),
            dropout_seed: self.dropout_seed,
        }
    }

    /// The input of `rows`, in that order, cut to its first `seq_length` positions (ids, masks
    /// and token types). Cutting only padding off (every row's real and global tokens lie
    /// before `seq_length`) leaves each row's outputs at its real tokens what they are in the
    /// whole batch, up to float rounding: batches of rows of similar lengths, each cut to its
    /// longest row, encode a corpus of mixed lengths with little padding. The dropout seed is
    /// kept.
    ///
    /// # Shapes
    /// - output: `[rows.len(), seq_length]`
    ///
    /// # Panics
    /// If a row is not within the batch, `rows` is empty, or `seq_length` is 0 or longer than
    /// the input.
    pub fn select_rows(&self, rows: &[usize], seq_length: usize) -> Self {
        let [batch_size, _] = self.dims();
        assert!(
            !rows.is_empty() && rows.iter().all(|&r| r < batch_size),
            "select_rows: rows {rows:?} of a batch of {batch_size}"
        );
        let device = self.input_ids.device();
        let indices = Tensor::<1, Int>::from_data(
            TensorData::new(rows.iter().map(|&r| r as i64).collect(), [rows.len()]),
            &device,
        );
        let pick_int = |t: &Tensor<2, Int>| {
            t.clone()
                .select(0, indices.clone())
                .narrow(1, 0, seq_length)
        };
        let pick_bool = |t: &Tensor<2, Bool>| {
            t.clone()
                .select(0, indices.clone())
                .narrow(1, 0, seq_length)
        };
        Self {
            input_ids: pick_int(&self.input_ids),
            attention_mask: self.attention_mask.as_ref().map(pick_bool),
            global_attention_mask: self.global_attention_mask.as_ref().map(pick_bool),
            token_type_ids: self.token_type_ids.as_ref().map(pick_int),
            dropout_seed: self.dropout_seed,
        }
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

/// Checks that the mask given as `rows` has one row per id row, each as long as its id row.
fn check_mask_rows(
    mask: &'static str,
    rows: &[Vec<i64>],
    input_ids: &[Vec<i64>],
) -> Result<(), InputError> {
    if rows.len() != input_ids.len() {
        return Err(InputError::MaskRowCount {
            mask,
            expected: input_ids.len(),
            found: rows.len(),
        });
    }
    match rows
        .iter()
        .zip(input_ids)
        .position(|(mask_row, id_row)| mask_row.len() != id_row.len())
    {
        Some(row) => Err(InputError::MaskRowLength {
            mask,
            row,
            expected: input_ids[row].len(),
            found: rows[row].len(),
        }),
        None => Ok(()),
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

    /// A layout from host masks. [`from_input`](Self::from_input) builds one from a
    /// [`LongformerInput`]; this is for masks already on the host. `is_global` should be `false`
    /// on padding (as `from_input` makes it).
    ///
    /// # Shapes
    /// - is_real, is_global: row-major `[batch_size, seq_length]`, `batch_size * seq_length`
    ///   values
    ///
    /// # Panics
    /// If `is_real` or `is_global` does not hold `batch_size * seq_length` values.
    pub fn new(
        batch_size: usize,
        seq_length: usize,
        is_real: Vec<bool>,
        is_global: Vec<bool>,
    ) -> Self {
        for (name, mask) in [("is_real", &is_real), ("is_global", &is_global)] {
            assert!(
                mask.len() == batch_size * seq_length,
                "AttentionLayout::new: {name} has {} values but [batch_size, seq_length] is \
                 [{batch_size}, {seq_length}] ({} values)",
                mask.len(),
                batch_size * seq_length
            );
        }
        let rows: Vec<Vec<usize>> = (0..batch_size)
            .map(|b| {
                let row = &is_global[b * seq_length..(b + 1) * seq_length];
                (0..seq_length).filter(|&t| row[t]).collect()
            })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A ragged batch: rows of 4 and 3 ids.
    fn ids() -> Vec<Vec<i64>> {
        vec![vec![0, 5, 6, 2], vec![0, 7, 2]]
    }

    fn rows(
        attention_mask: &[Vec<i64>],
        global_attention_mask: Option<&[Vec<i64>]>,
    ) -> Result<LongformerInput, InputError> {
        LongformerInput::try_from_rows(
            &ids(),
            Some(attention_mask),
            global_attention_mask,
            1,
            &Device::flex(),
        )
    }

    /// Missing mask cells were read as real tokens (and missing global cells as local ones),
    /// extra rows and cells dropped: every such mask is an error naming it.
    #[test]
    fn a_mask_of_the_wrong_shape_is_an_error() {
        let cases = [
            (
                vec![vec![1, 1, 1, 1]],
                InputError::MaskRowCount {
                    mask: "attention_mask",
                    expected: 2,
                    found: 1,
                },
            ),
            (
                vec![vec![1, 1, 1, 1], vec![1, 1, 1], vec![1]],
                InputError::MaskRowCount {
                    mask: "attention_mask",
                    expected: 2,
                    found: 3,
                },
            ),
            (
                vec![vec![1, 1], vec![1, 1, 1]],
                InputError::MaskRowLength {
                    mask: "attention_mask",
                    row: 0,
                    expected: 4,
                    found: 2,
                },
            ),
            (
                // As long as the padded batch, but not as its own id row.
                vec![vec![1, 1, 1, 1], vec![1, 1, 1, 0]],
                InputError::MaskRowLength {
                    mask: "attention_mask",
                    row: 1,
                    expected: 3,
                    found: 4,
                },
            ),
        ];
        for (mask, expected) in cases {
            assert_eq!(rows(&mask, None).unwrap_err(), expected, "{mask:?}");
        }
        let err = rows(&[vec![1; 4], vec![1; 3]], Some(&[vec![1, 0]])).unwrap_err();
        assert_eq!(
            err,
            InputError::MaskRowCount {
                mask: "global_attention_mask",
                expected: 2,
                found: 1,
            }
        );
        let err = rows(
            &[vec![1; 4], vec![1; 3]],
            Some(&[vec![1, 0, 0, 0], vec![1]]),
        );
        let msg = err.unwrap_err().to_string();
        assert_eq!(
            msg,
            "global_attention_mask row 1 has 1 value(s) but input_ids row 1 has 3"
        );
    }

    #[test]
    fn ragged_rows_with_masks_of_their_lengths_are_padded() {
        let input = rows(
            &[vec![1, 1, 1, 0], vec![1, 1, 1]],
            Some(&[vec![1, 0, 0, 0], vec![0, 0, 1]]),
        )
        .unwrap();
        let real: Vec<bool> = input.attention_mask.unwrap().into_data().iter().collect();
        assert_eq!(real, [true, true, true, false, true, true, true, false]);
        let global: Vec<bool> = input
            .global_attention_mask
            .unwrap()
            .into_data()
            .iter()
            .collect();
        assert_eq!(
            global,
            [true, false, false, false, false, false, true, false]
        );
        let ids: Vec<i64> = input.input_ids.into_data().iter().collect();
        assert_eq!(ids, [0, 5, 6, 2, 0, 7, 2, 1]);
    }

    #[test]
    #[should_panic(expected = "attention_mask row 0 has 2 value(s) but input_ids row 0 has 4")]
    fn from_rows_panics_with_the_mask_shape_error() {
        LongformerInput::from_rows(
            &ids(),
            Some(&[vec![1, 1], vec![1, 1, 1]]),
            None,
            1,
            &Device::flex(),
        );
    }

    #[test]
    #[should_panic(
        expected = "AttentionLayout::new: is_global has 3 values but [batch_size, seq_length] is [2, 2] (4 values)"
    )]
    fn layout_of_the_wrong_length_panics_naming_it() {
        AttentionLayout::new(2, 2, vec![true; 4], vec![false; 3]);
    }

    #[test]
    fn layout_of_empty_rows_has_no_global_slots() {
        let layout = AttentionLayout::new(2, 0, Vec::new(), Vec::new());
        assert_eq!(layout.n_global, 0);
        assert!(layout.global_positions.is_empty());
    }
}
