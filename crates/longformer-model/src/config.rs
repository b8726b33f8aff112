//! [`LongformerConfig`]: the model's hyper-parameters, read from a HuggingFace `config.json`.
//!
//! Field names are HuggingFace's, so a `config.json` written by `transformers` (or the original
//! allenai release, which carries extra legacy keys) deserializes as is. Unknown keys are ignored;
//! a missing optional key takes HF `LongformerConfig`'s default.
//!
//! Two of the allenai release's keys are read although HF ignores them: `attention_dilation`
//! and `autoregressive` (see [`LongformerConfig::attention_dilation`] and
//! [`LongformerConfig::autoregressive`]). With their neutral values (dilation 1, `false`, as in
//! every released checkpoint) the model is exactly HF's; other values give the allenai model's
//! dilated or causal windows, which HF transformers does not compute.

use std::path::Path;

use burn::config::Config;
use serde::{Deserialize, Deserializer, Serialize};

use crate::attention::{AttentionDilation, LocalAttentionKernel, WindowPattern};
use crate::error::ConfigError;

/// The activation between the two feed-forward layers (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HiddenAct {
    /// Exact GELU, `x·Φ(x)` (HF `"gelu"`).
    Gelu,
    /// The tanh approximation of GELU (HF `"gelu_new"`, `"gelu_pytorch_tanh"`).
    GeluTanh,
    /// `max(0, x)` (HF `"relu"`).
    Relu,
}

impl HiddenAct {
    fn from_hf_name(name: &str) -> Option<Self> {
        match name {
            "gelu" | "gelu_python" => Some(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Some(Self::GeluTanh),
            "relu" => Some(Self::Relu),
            _ => None,
        }
    }

    /// The name HF's `config.json` uses.
    pub fn hf_name(self) -> &'static str {
        match self {
            Self::Gelu => "gelu",
            Self::GeluTanh => "gelu_new",
            Self::Relu => "relu",
        }
    }
}

/// The attention window of every layer (`attention_window`): the *full* window, so a token sees
/// `attention_window / 2` tokens on each side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttentionWindow {
    /// The same window in every layer (HF accepts a bare integer).
    Uniform(usize),
    /// One window per layer.
    PerLayer(Vec<usize>),
}

/// Hyper-parameters of a Longformer encoder, with HuggingFace's names.
///
/// Load one with [`LongformerConfig::from_json_file`] (validated) or build one in code and call
/// [`LongformerConfig::validate`].
///
/// The `load` and `save` that Burn's [`Config`] derive adds read and write Burn's own JSON
/// (e.g. `"attention_window": {"PerLayer": [8, 8]}`), not HF's: read a HuggingFace
/// `config.json` with [`from_json_file`](Self::from_json_file) and write one with
/// [`to_hf_json`](Self::to_hf_json).
#[derive(Config, Debug)]
pub struct LongformerConfig {
    /// Number of token ids (rows of the word embedding).
    #[config(default = 50265)]
    pub vocab_size: usize,
    /// Width of every hidden state (`d_model`).
    #[config(default = 768)]
    pub hidden_size: usize,
    /// Number of encoder layers.
    #[config(default = 12)]
    pub num_hidden_layers: usize,
    /// Number of attention heads; must divide `hidden_size`.
    #[config(default = 12)]
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    #[config(default = 3072)]
    pub intermediate_size: usize,
    /// Feed-forward activation.
    #[config(default = "HiddenAct::Gelu")]
    pub hidden_act: HiddenAct,
    /// Dropout after the embeddings, the attention output and the feed-forward output.
    #[config(default = 0.1)]
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities.
    #[config(default = 0.1)]
    pub attention_probs_dropout_prob: f64,
    /// Rows of the position embedding. RoBERTa positions start at `pad_token_id + 1`, so the
    /// longest sequence is `max_position_embeddings - pad_token_id - 1` tokens (4096 for 4098),
    /// not counting padding.
    #[config(default = 4098)]
    pub max_position_embeddings: usize,
    /// Rows of the token-type embedding.
    #[config(default = 1)]
    pub type_vocab_size: usize,
    /// Epsilon of every LayerNorm.
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
    /// Id of the padding token; also RoBERTa's `padding_idx` for positions.
    #[config(default = 1)]
    pub pad_token_id: usize,
    /// Full attention window per layer (even, positive).
    #[config(default = "AttentionWindow::Uniform(512)")]
    pub attention_window: AttentionWindow,
    /// Standard deviation of the normal that random weights are drawn from (HF's `_init_weights`:
    /// linear and embedding weights; biases 0, LayerNorms 1 and 0, padding rows 0).
    #[config(default = 0.02)]
    pub initializer_range: f64,
    /// Dilation of the window per layer, or per layer and head (the original allenai config's
    /// `attention_dilation`). **Not HF's model:** HF transformers has no dilation and ignores
    /// this key, so a `config.json` with a dilation other than 1 computes something different
    /// here than in HF (by design: the allenai model's dilated windows). `1` everywhere (the
    /// default, and the released checkpoints' value) computes exactly HF's model.
    #[config(default = "AttentionDilation::Uniform(1)")]
    pub attention_dilation: AttentionDilation,
    /// Causal (autoregressive) windows: every token sees itself and the `attention_window / 2`
    /// tokens before it (the original allenai config's `autoregressive`). **Not HF's model:** HF
    /// transformers ignores this key, so `true` computes something different here than in HF
    /// (by design). `false` (the default) computes exactly HF's model.
    #[config(default = false)]
    pub autoregressive: bool,
    /// Which implementation computes local attention: the fused op where it applies (`Auto`,
    /// the default: GPU kernels on wgpu/vulkan, blocked products on flex/ndarray; f32 without
    /// requested probabilities), always the band path of tensor ops (`Reference`), or the
    /// fused op and an error on a device without it (`Fused`). A runtime choice, not part of
    /// HF's `config.json`.
    #[config(default = "LocalAttentionKernel::Auto")]
    pub local_attention_kernel: LocalAttentionKernel,
}

/// The subset of HF's `config.json` we read; everything else is ignored.
#[derive(Deserialize)]
struct HfConfigJson {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    #[serde(default = "default_hidden_act")]
    hidden_act: String,
    #[serde(default = "default_dropout")]
    hidden_dropout_prob: f64,
    #[serde(default = "default_dropout")]
    attention_probs_dropout_prob: f64,
    max_position_embeddings: usize,
    #[serde(default = "default_type_vocab_size")]
    type_vocab_size: usize,
    #[serde(default = "default_layer_norm_eps")]
    layer_norm_eps: f64,
    #[serde(default = "default_pad_token_id")]
    pad_token_id: usize,
    #[serde(
        default = "default_attention_window",
        deserialize_with = "window_from_json"
    )]
    attention_window: AttentionWindow,
    #[serde(default = "default_initializer_range")]
    initializer_range: f64,
    #[serde(default)]
    attention_dilation: AttentionDilation,
    #[serde(default)]
    autoregressive: bool,
}

fn default_initializer_range() -> f64 {
    0.02
}

fn default_hidden_act() -> String {
    "gelu".into()
}
fn default_dropout() -> f64 {
    0.1
}
/// HF `LongformerConfig`'s default (the released checkpoints say 1).
fn default_type_vocab_size() -> usize {
    2
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}
fn default_pad_token_id() -> usize {
    1
}
fn default_attention_window() -> AttentionWindow {
    AttentionWindow::Uniform(512)
}

fn window_from_json<'de, D: Deserializer<'de>>(d: D) -> Result<AttentionWindow, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    let window = |v: &serde_json::Value| v.as_u64().and_then(|w| usize::try_from(w).ok());
    match &value {
        serde_json::Value::Array(ws) => ws
            .iter()
            .map(window)
            .collect::<Option<Vec<usize>>>()
            .map(AttentionWindow::PerLayer),
        v => window(v).map(AttentionWindow::Uniform),
    }
    .ok_or_else(|| {
        serde::de::Error::custom(format!(
            "attention_window is {value}; it must be an integer or a list of integers, one per \
             layer"
        ))
    })
}

impl LongformerConfig {
    /// Reads and validates a HuggingFace `config.json`.
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        Self::from_json_str(&text).map_err(|e| e.in_file(path))
    }

    /// This configuration as a HuggingFace `config.json` (`model_type` `longformer`, the window
    /// as a per-layer list), readable by [`from_json_str`](Self::from_json_str) and by
    /// `transformers.LongformerConfig`.
    pub fn to_hf_json(&self) -> String {
        serde_json::to_string_pretty(&self.to_hf_value()).expect("a JSON value serializes")
    }

    /// [`to_hf_json`](Self::to_hf_json) as a JSON value.
    pub(crate) fn to_hf_value(&self) -> serde_json::Value {
        let windows: Vec<usize> = (0..self.num_hidden_layers)
            .map(|i| self.window(i))
            .collect();
        let mut json = serde_json::json!({
            "model_type": "longformer",
            "architectures": ["LongformerModel"],
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "intermediate_size": self.intermediate_size,
            "hidden_act": self.hidden_act.hf_name(),
            "hidden_dropout_prob": self.hidden_dropout_prob,
            "attention_probs_dropout_prob": self.attention_probs_dropout_prob,
            "max_position_embeddings": self.max_position_embeddings,
            "type_vocab_size": self.type_vocab_size,
            "layer_norm_eps": self.layer_norm_eps,
            "pad_token_id": self.pad_token_id,
            "bos_token_id": 0,
            "eos_token_id": 2,
            "sep_token_id": 2,
            "attention_window": windows,
            "initializer_range": self.initializer_range,
        });
        // Patterns HF transformers does not implement are written only when used, so a plain
        // model's config stays HF's.
        if !self.attention_dilation.is_none() {
            json["attention_dilation"] =
                serde_json::to_value(&self.attention_dilation).expect("a dilation serializes");
        }
        if self.autoregressive {
            json["autoregressive"] = true.into();
        }
        json
    }

    /// Parses and validates the text of a HuggingFace `config.json`.
    pub fn from_json_str(text: &str) -> Result<Self, ConfigError> {
        let raw: HfConfigJson =
            serde_json::from_str(text).map_err(|e| ConfigError::Json(e.to_string()))?;
        let hidden_act = HiddenAct::from_hf_name(&raw.hidden_act).ok_or_else(|| {
            ConfigError::Invalid(format!("unsupported hidden_act {:?}", raw.hidden_act))
        })?;
        let config = Self {
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            intermediate_size: raw.intermediate_size,
            hidden_act,
            hidden_dropout_prob: raw.hidden_dropout_prob,
            attention_probs_dropout_prob: raw.attention_probs_dropout_prob,
            max_position_embeddings: raw.max_position_embeddings,
            type_vocab_size: raw.type_vocab_size,
            layer_norm_eps: raw.layer_norm_eps,
            pad_token_id: raw.pad_token_id,
            attention_window: raw.attention_window,
            initializer_range: raw.initializer_range,
            attention_dilation: raw.attention_dilation,
            autoregressive: raw.autoregressive,
            local_attention_kernel: LocalAttentionKernel::Auto,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the invariants the model relies on.
    ///
    /// Errors: heads not dividing `hidden_size`, a zero size, a window list whose length is not
    /// `num_hidden_layers`, a window that is odd or zero, `pad_token_id` outside the vocabulary or
    /// leaving no room for positions, dropouts outside `[0, 1)`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        for (name, value) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            if value == 0 {
                return invalid(format!("{name} must be positive"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return invalid(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if let AttentionWindow::PerLayer(windows) = &self.attention_window
            && windows.len() != self.num_hidden_layers
        {
            return invalid(format!(
                "attention_window has {} entries but num_hidden_layers is {}",
                windows.len(),
                self.num_hidden_layers
            ));
        }
        for layer in 0..self.num_hidden_layers {
            let window = self.window(layer);
            if window == 0 || !window.is_multiple_of(2) {
                return invalid(format!(
                    "attention_window for layer {layer} is {window}; it must be even and positive"
                ));
            }
        }
        self.attention_dilation
            .validate(self.num_hidden_layers, self.num_attention_heads)
            .map_err(ConfigError::Invalid)?;
        if self.pad_token_id >= self.vocab_size {
            return invalid(format!(
                "pad_token_id {} is outside the vocabulary of {}",
                self.pad_token_id, self.vocab_size
            ));
        }
        if self.max_position_embeddings <= self.pad_token_id + 1 {
            return invalid(format!(
                "max_position_embeddings {} leaves no positions after padding_idx {}",
                self.max_position_embeddings, self.pad_token_id
            ));
        }
        for (name, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                return invalid(format!("{name} is {p}; it must be in [0, 1)"));
            }
        }
        Ok(())
    }

    /// The full attention window (`2 · window`) of `layer`.
    ///
    /// # Panics
    /// If a per-layer window list has no entry for `layer` (one [`validate`](Self::validate)
    /// accepts has `num_hidden_layers` entries).
    pub fn window(&self, layer: usize) -> usize {
        match &self.attention_window {
            AttentionWindow::Uniform(w) => *w,
            AttentionWindow::PerLayer(ws) => ws[layer],
        }
    }

    /// The window pattern (dilation per head, direction) of `layer`.
    pub fn window_pattern(&self, layer: usize) -> WindowPattern {
        WindowPattern {
            dilation: self
                .attention_dilation
                .heads(layer, self.num_attention_heads),
            causal: self.autoregressive,
        }
    }

    /// Width of one attention head (`d_head`).
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// The most tokens a row may hold, not counting `pad_token_id` (explicit padding takes no
    /// position, so a padded row may be longer): HF's limit.
    pub fn max_sequence_length(&self) -> usize {
        self.max_position_embeddings - self.pad_token_id - 1
    }

    /// A small configuration for tests and the bundled demo: 2 layers, 64 wide, 4 heads,
    /// feed-forward 128, full window 32, `max_position_embeddings` 514.
    pub fn tiny(vocab_size: usize) -> Self {
        Self::new()
            .with_vocab_size(vocab_size)
            .with_hidden_size(64)
            .with_num_hidden_layers(2)
            .with_num_attention_heads(4)
            .with_intermediate_size(128)
            .with_max_position_embeddings(514)
            .with_attention_window(AttentionWindow::Uniform(32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"{
        "attention_window": [512, 512], "hidden_size": 768, "num_attention_heads": 12,
        "num_hidden_layers": 2, "intermediate_size": 3072, "hidden_act": "gelu",
        "max_position_embeddings": 4098, "vocab_size": 50265, "type_vocab_size": 1,
        "layer_norm_eps": 1e-05, "pad_token_id": 1, "attention_mode": "longformer",
        "ignore_attention_mask": false
    }"#;

    fn with(key: &str, value: &str) -> String {
        let mut json: serde_json::Value = serde_json::from_str(BASE).unwrap();
        json[key] = serde_json::from_str(value).unwrap();
        json.to_string()
    }

    #[test]
    fn hf_json_round_trips() {
        let config = LongformerConfig::tiny(100)
            .with_num_hidden_layers(3)
            .with_attention_window(AttentionWindow::PerLayer(vec![4, 8, 6]))
            .with_hidden_act(HiddenAct::GeluTanh);
        let back = LongformerConfig::from_json_str(&config.to_hf_json()).unwrap();
        assert_eq!(back.to_hf_json(), config.to_hf_json());
        assert_eq!(back.window(2), 6);
        assert_eq!(back.hidden_act, HiddenAct::GeluTanh);
        assert_eq!(back.vocab_size, 100);
    }

    #[test]
    fn dilation_and_causal_round_trip_and_stay_out_of_plain_configs() {
        let plain = LongformerConfig::tiny(100);
        assert!(!plain.to_hf_json().contains("attention_dilation"));
        assert!(!plain.to_hf_json().contains("autoregressive"));
        let config = plain
            .with_attention_dilation(AttentionDilation::PerHead(vec![
                vec![1, 2, 2, 4],
                vec![1, 1, 1, 3],
            ]))
            .with_autoregressive(true);
        let back = LongformerConfig::from_json_str(&config.to_hf_json()).unwrap();
        assert_eq!(back.attention_dilation, config.attention_dilation);
        assert!(back.autoregressive);
        assert_eq!(back.window_pattern(1).dilation, vec![1, 1, 1, 3]);
    }

    #[test]
    fn reads_the_original_allenai_dilation_keys() {
        let config = LongformerConfig::from_json_str(
            &with("attention_dilation", "[1, 2]").replace('}', r#", "autoregressive": true}"#),
        )
        .unwrap();
        assert_eq!(config.window_pattern(1).dilation, vec![2; 12]);
        assert!(config.window_pattern(0).causal);
        let err = LongformerConfig::from_json_str(&with("attention_dilation", "[[1, 2], [1]]"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("layer 0 has 2 heads"), "{err}");
    }

    #[test]
    fn reads_hf_config_with_legacy_keys() {
        let config = LongformerConfig::from_json_str(BASE).unwrap();
        assert_eq!(config.window(1), 512);
        assert_eq!(config.head_dim(), 64);
        assert_eq!(config.max_sequence_length(), 4096);
        assert_eq!(config.hidden_act, HiddenAct::Gelu);
    }

    #[test]
    fn window_may_be_a_bare_integer() {
        let config = LongformerConfig::from_json_str(&with("attention_window", "256")).unwrap();
        assert_eq!(config.window(0), 256);
        assert_eq!(config.window(1), 256);
    }

    #[test]
    fn rejects_odd_window() {
        let err = LongformerConfig::from_json_str(&with("attention_window", "[512, 7]"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("layer 1 is 7"), "{err}");
    }

    #[test]
    fn rejects_window_list_of_wrong_length() {
        let err = LongformerConfig::from_json_str(&with("attention_window", "[512]"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("1 entries"), "{err}");
    }

    #[test]
    fn rejects_heads_not_dividing_hidden() {
        let err = LongformerConfig::from_json_str(&with("num_attention_heads", "5"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not divisible"), "{err}");
    }

    #[test]
    fn rejects_unknown_activation_and_missing_keys() {
        let err = LongformerConfig::from_json_str(&with("hidden_act", "\"swish\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("swish"), "{err}");
        let err = LongformerConfig::from_json_str("{}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field"), "{err}");
    }

    #[test]
    fn missing_type_vocab_size_is_hfs_default() {
        let mut json: serde_json::Value = serde_json::from_str(BASE).unwrap();
        json.as_object_mut().unwrap().remove("type_vocab_size");
        let config = LongformerConfig::from_json_str(&json.to_string()).unwrap();
        // transformers.LongformerConfig().type_vocab_size
        assert_eq!(config.type_vocab_size, 2);
    }

    #[test]
    fn a_malformed_window_is_an_error_naming_the_key() {
        for bad in ["-2", "8.5", "\"8\"", "[8, -2]", "[8, null]"] {
            let err = LongformerConfig::from_json_str(&with("attention_window", bad))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("attention_window is") && !err.contains("untagged"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn errors_in_a_file_print_their_cause_once() {
        let dir = std::env::temp_dir().join(format!("longformer-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.json");
        std::fs::write(&path, with("num_attention_heads", "5")).unwrap();
        let err = LongformerConfig::from_json_file(&path).unwrap_err();
        // The message is whole and the error has no source that would repeat it.
        assert!(err.to_string().contains("not divisible"), "{err}");
        assert!(std::error::Error::source(&err).is_none(), "{err:?}");
        let missing = LongformerConfig::from_json_file(dir.join("absent.json")).unwrap_err();
        assert!(missing.to_string().contains("absent.json"), "{missing}");
        assert!(std::error::Error::source(&missing).is_none(), "{missing:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
