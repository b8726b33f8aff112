//! [`HeadFixture`]: a task head's HF fixture, what the head tests share.

use std::collections::HashMap;
use std::path::PathBuf;

use burn::tensor::Device;
use longformer_model::{LongformerInput, TaskHead, load_head};

use crate::{HostTensor, fixtures_dir, read_safetensors};

/// A task-head fixture (`tests/fixtures/head_*`, from `scripts/gen_head_fixtures.py`): the
/// model's directory and `expected.safetensors`, the inputs and HF's outputs.
pub struct HeadFixture {
    /// The fixture's directory (`config.json` and the weights).
    pub dir: PathBuf,
    /// The inputs (`input_ids`, `attention_mask`, `global_attention_mask`) and HF's outputs.
    pub expected: HashMap<String, HostTensor>,
}

impl HeadFixture {
    /// Reads the fixture `name`.
    pub fn new(name: &str) -> Self {
        let dir = fixtures_dir().join(name);
        let expected = read_safetensors(&dir.join("expected.safetensors"));
        Self { dir, expected }
    }

    /// Rows of a 2-D or 3-D int tensor (3-D flattened to `[batch * choices, seq]`).
    pub fn rows(&self, key: &str) -> Vec<Vec<i64>> {
        self.expected[key].rows_i64()
    }

    /// The fixture's input, with its global mask or with none (the head's default).
    pub fn input(&self, with_global: bool, device: &Device) -> LongformerInput {
        let ids = self.rows("input_ids");
        let mask = self.rows("attention_mask");
        let global = self.rows("global_attention_mask");
        LongformerInput::from_rows(
            &ids,
            Some(&mask),
            with_global.then_some(global.as_slice()),
            1,
            device,
        )
    }

    /// The head, loaded from the fixture's directory.
    pub fn load<H: TaskHead>(&self, device: &Device) -> H {
        load_head(&self.dir, device).unwrap_or_else(|e| panic!("{}: {e}", self.dir.display()))
    }
}
