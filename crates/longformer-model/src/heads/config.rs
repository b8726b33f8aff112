//! [`LongformerHeadConfig`]: the encoder's [`LongformerConfig`] plus the `config.json` keys the
//! task heads read (`num_labels` / `id2label`, `problem_type`, `sep_token_id`,
//! `tie_word_embeddings`), and
//! [`TaskHead`], what every head model implements so that the loader and
//! [`LongformerHeadConfig::init`] can build it and the saver can write it.

use std::collections::BTreeMap;
use std::path::Path;

use burn::config::Config;
use burn::store::ModuleSnapshot;
use burn::tensor::Device;
use serde::Deserialize;

use crate::config::LongformerConfig;
use crate::error::ConfigError;
use crate::heads::problem_type::{ProblemType, ScoreFunction};
use crate::init::hf_initialization;
use crate::model::LongformerModel;
use crate::pooler::LongformerPooler;

/// Hyper-parameters of a Longformer with a task head.
///
/// Read one from a HuggingFace `config.json` with [`from_json_file`](Self::from_json_file): the
/// encoder part through [`LongformerConfig`], the head part from `num_labels`, or else the length
/// of `id2label` (HF's default: 2 labels), `problem_type` (none by default), `sep_token_id`
/// (default 2) and `tie_word_embeddings` (HF's default: `true`).
///
/// The `load` and `save` that Burn's [`Config`] derive adds read and write Burn's own JSON, not
/// HF's: read a HuggingFace `config.json` with [`from_json_file`](Self::from_json_file) and write
/// one with [`to_hf_json`](Self::to_hf_json) (or the whole checkpoint with
/// [`save_head`](crate::loader::save_head)).
#[derive(Config, Debug)]
pub struct LongformerHeadConfig {
    /// The encoder.
    pub model: LongformerConfig,
    /// Outputs of the classifiers (`n_labels`); question answering needs 2 (start, end).
    #[config(default = 2)]
    pub num_labels: usize,
    /// Label names in id order (HF `id2label`), when the checkpoint names them.
    #[config(default = "None")]
    pub id2label: Option<Vec<String>>,
    /// What a sequence classifier's outputs mean (HF `problem_type`), when the checkpoint says:
    /// its loss, and how [`score_function`](Self::score_function) reads its scores. Without one,
    /// HF infers it from the labels ([`ProblemType::for_labels`]).
    #[config(default = "None")]
    pub problem_type: Option<ProblemType>,
    /// The separator id whose positions give the default global attention of question answering
    /// and multiple choice.
    #[config(default = 2)]
    pub sep_token_id: usize,
    /// Whether the masked-LM decoder is the word embedding (HF's default). When `false`, the
    /// decoder is its own `lm_head.decoder.{weight,bias}`, as in HF.
    #[config(default = true)]
    pub tie_word_embeddings: bool,
}

/// The head keys of HF's `config.json`; everything else is left to [`LongformerConfig`].
#[derive(Deserialize)]
struct HeadKeysJson {
    num_labels: Option<usize>,
    id2label: Option<BTreeMap<String, String>>,
    problem_type: Option<String>,
    sep_token_id: Option<usize>,
    tie_word_embeddings: Option<bool>,
}

impl LongformerHeadConfig {
    /// Reads and validates a HuggingFace `config.json`.
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        Self::from_json_str(&text).map_err(|e| e.in_file(path))
    }

    /// Parses and validates the text of a HuggingFace `config.json`.
    pub fn from_json_str(text: &str) -> Result<Self, ConfigError> {
        let model = LongformerConfig::from_json_str(text)?;
        let keys: HeadKeysJson =
            serde_json::from_str(text).map_err(|e| ConfigError::Json(e.to_string()))?;
        let id2label = keys.id2label.map(labels_in_order).transpose()?;
        let num_labels = match (keys.num_labels, &id2label) {
            (Some(n), Some(labels)) if n != labels.len() => {
                return Err(ConfigError::Invalid(format!(
                    "num_labels is {n} but id2label names {} labels",
                    labels.len()
                )));
            }
            (Some(n), _) => n,
            (None, Some(labels)) => labels.len(),
            (None, None) => 2,
        };
        let config = Self {
            model,
            num_labels,
            id2label,
            problem_type: keys.problem_type.as_deref().map(str::parse).transpose()?,
            sep_token_id: keys.sep_token_id.unwrap_or(2),
            tie_word_embeddings: keys.tie_word_embeddings.unwrap_or(true),
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the encoder config, that there is at least one label, and two for single-label
    /// classification (as HF checks).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.model.validate()?;
        if self.num_labels == 0 {
            return Err(ConfigError::Invalid("num_labels must be positive".into()));
        }
        if self.problem_type == Some(ProblemType::SingleLabelClassification) && self.num_labels == 1
        {
            return Err(ConfigError::Invalid(
                "problem_type \"single_label_classification\" needs num_labels > 1 (use 2 for \
                 binary classification, or \"regression\" for a single output)"
                    .into(),
            ));
        }
        if let Some(labels) = &self.id2label
            && labels.len() != self.num_labels
        {
            return Err(ConfigError::Invalid(format!(
                "num_labels is {} but id2label names {} labels",
                self.num_labels,
                labels.len()
            )));
        }
        Ok(())
    }

    /// The config with `labels` as the classifiers' labels, in id order: `num_labels` their
    /// number and `id2label` their names. (`with_num_labels` alone on a config whose `id2label`
    /// names other labels fails [`validate`](Self::validate); clear it with
    /// `with_id2label(None)`.)
    pub fn with_labels(mut self, labels: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let labels: Vec<String> = labels.into_iter().map(Into::into).collect();
        self.num_labels = labels.len();
        self.id2label = Some(labels);
        self
    }

    /// The name of label `id`: from `id2label`, else HF's `LABEL_{id}`.
    pub fn label(&self, id: usize) -> String {
        self.id2label
            .as_ref()
            .and_then(|labels| labels.get(id).cloned())
            .unwrap_or_else(|| format!("LABEL_{id}"))
    }

    /// How a sequence classifier's scores read as probabilities, as HF's text-classification
    /// pipeline reads them: none for regression, a sigmoid for multi-label classification or a
    /// single label, else a softmax ([`ScoreFunction::for_problem`]).
    pub fn score_function(&self) -> ScoreFunction {
        ScoreFunction::for_problem(self.problem_type, self.num_labels)
    }

    /// Builds a head model with random weights drawn as HF's `_init_weights` draws them.
    pub fn init<H: TaskHead>(&self, device: &Device) -> Result<H, ConfigError> {
        self.validate()?;
        H::with_encoder(self.model.init_with_pooler(H::POOLER, device), self, device)
    }

    /// This configuration as the `config.json` HF's `save_pretrained` writes for the head `H`:
    /// the encoder's keys ([`LongformerConfig::to_hf_json`]) with `architectures` `[H::HF_CLASS]`,
    /// `sep_token_id`, `tie_word_embeddings`, `problem_type` when set, and the labels as
    /// `id2label` / `label2id` (left out, as HF leaves them out, when they are HF's default
    /// `LABEL_0`, `LABEL_1`). Readable by [`from_json_file`](Self::from_json_file) and by
    /// `transformers.AutoConfig`.
    pub fn to_hf_json<H: TaskHead>(&self) -> String {
        serde_json::to_string_pretty(&self.to_hf_value(H::HF_CLASS))
            .expect("a JSON value serializes")
    }

    /// [`to_hf_json`](Self::to_hf_json) as a JSON value, for the head whose HF class is
    /// `architecture`.
    pub(crate) fn to_hf_value(&self, architecture: &str) -> serde_json::Value {
        let mut json = self.model.to_hf_value();
        json["architectures"] = serde_json::json!([architecture]);
        json["sep_token_id"] = self.sep_token_id.into();
        json["tie_word_embeddings"] = self.tie_word_embeddings.into();
        if let Some(problem) = self.problem_type {
            json["problem_type"] = problem.hf_name().into();
        }
        let labels: Vec<String> = (0..self.num_labels).map(|i| self.label(i)).collect();
        if labels != ["LABEL_0", "LABEL_1"] {
            let id2label: serde_json::Map<String, serde_json::Value> = labels
                .iter()
                .enumerate()
                .map(|(i, label)| (i.to_string(), label.as_str().into()))
                .collect();
            let label2id: serde_json::Map<String, serde_json::Value> = labels
                .iter()
                .enumerate()
                .map(|(i, label)| (label.clone(), i.into()))
                .collect();
            json["id2label"] = id2label.into();
            json["label2id"] = label2id.into();
        }
        json
    }

    /// `pad_token_id` of the encoder, as an id.
    pub(crate) fn pad_id(&self) -> usize {
        self.model.pad_token_id
    }
}

/// `{"0": "a", "1": "b"}` → `["a", "b"]`; the keys must be exactly `0..n`.
fn labels_in_order(map: BTreeMap<String, String>) -> Result<Vec<String>, ConfigError> {
    let mut labels: Vec<(usize, String)> = map
        .into_iter()
        .map(|(k, v)| {
            k.parse::<usize>()
                .map(|i| (i, v))
                .map_err(|_| ConfigError::Invalid(format!("id2label key {k:?} is not an integer")))
        })
        .collect::<Result<_, _>>()?;
    labels.sort_by_key(|(i, _)| *i);
    if let Some((pos, (i, _))) = labels.iter().enumerate().find(|(pos, (i, _))| pos != i) {
        return Err(ConfigError::Invalid(format!(
            "id2label has no label {pos} (found {i} instead); ids must be 0..{}",
            labels.len()
        )));
    }
    Ok(labels.into_iter().map(|(_, v)| v).collect())
}

/// A Longformer with a HuggingFace task head: a module whose field `longformer` is the encoder
/// and whose other fields carry HF's head names, so that checkpoint keys are module paths.
pub trait TaskHead: ModuleSnapshot + Sized {
    /// HF's class name, e.g. `LongformerForMaskedLM`.
    const HF_CLASS: &'static str;
    /// Whether the encoder keeps HF's pooler (only multiple choice uses it).
    const POOLER: bool;
    /// Checkpoint keys (after the `longformer.` prefix is settled) that a file may hold and the
    /// model does not read, e.g. the tied `lm_head.decoder.weight`.
    const IGNORED_KEYS: &'static [&'static str] = &[];

    /// Puts a freshly initialised head (HF's `_init_weights`) on `longformer`; its pooler is
    /// dropped, or added with HF's initialization, to match [`POOLER`](Self::POOLER).
    ///
    /// # Errors
    /// When the config cannot describe this head (question answering with `num_labels != 2`).
    fn with_encoder(
        longformer: LongformerModel,
        config: &LongformerHeadConfig,
        device: &Device,
    ) -> Result<Self, ConfigError>;

    /// The encoder (HF `longformer`).
    fn longformer(&self) -> &LongformerModel;

    /// Key renamings (regex, replacement) a checkpoint with these `keys` needs for a model of
    /// `config`, applied after the encoder prefix is settled; e.g. `lm_head.decoder.bias` →
    /// `lm_head.bias` in a tied masked-LM file that only has the former.
    fn key_remaps(keys: &[String], config: &LongformerHeadConfig) -> Vec<(String, String)> {
        let _ = (keys, config);
        Vec::new()
    }
}

/// `longformer` with a pooler exactly when `pooler` is set: an HF-initialised one is added when
/// missing (a checkpoint saved without it), a present one is dropped when not wanted.
pub(crate) fn with_pooler(
    mut longformer: LongformerModel,
    pooler: bool,
    config: &LongformerHeadConfig,
    device: &Device,
) -> LongformerModel {
    longformer.pooler = match (pooler, longformer.pooler.take()) {
        (true, Some(p)) => Some(p),
        (true, None) => Some(hf_initialization(
            LongformerPooler::init(config.model.hidden_size, device),
            config.model.initializer_range,
            config.pad_id(),
        )),
        (false, _) => None,
    };
    longformer
}

/// Re-draws a head module's weights as HF's `_init_weights` does.
pub(crate) fn hf_init<M: burn::module::Module>(module: M, config: &LongformerHeadConfig) -> M {
    hf_initialization(module, config.model.initializer_range, config.pad_id())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"{
        "attention_window": 8, "hidden_size": 32, "num_attention_heads": 4,
        "num_hidden_layers": 2, "intermediate_size": 64, "max_position_embeddings": 130,
        "vocab_size": 97, "pad_token_id": 1, "sep_token_id": 2
    }"#;

    fn with(key: &str, value: &str) -> String {
        let mut json: serde_json::Value = serde_json::from_str(BASE).unwrap();
        json[key] = serde_json::from_str(value).unwrap();
        json.to_string()
    }

    #[test]
    fn two_labels_by_default() {
        let config = LongformerHeadConfig::from_json_str(BASE).unwrap();
        assert_eq!(config.num_labels, 2);
        assert_eq!(config.label(1), "LABEL_1");
        assert_eq!(config.sep_token_id, 2);
        assert!(config.tie_word_embeddings);
    }

    #[test]
    fn reads_tie_word_embeddings() {
        let config = LongformerHeadConfig::from_json_str(&with("tie_word_embeddings", "false"));
        assert!(!config.unwrap().tie_word_embeddings);
    }

    #[test]
    fn labels_come_from_id2label() {
        let json = with("id2label", r#"{"1": "POS", "0": "NEG", "2": "NEUTRAL"}"#);
        let config = LongformerHeadConfig::from_json_str(&json).unwrap();
        assert_eq!(config.num_labels, 3);
        assert_eq!(config.label(0), "NEG");
        assert_eq!(config.label(2), "NEUTRAL");
    }

    #[test]
    fn num_labels_disagreeing_with_id2label_is_an_error() {
        let mut json: serde_json::Value = serde_json::from_str(BASE).unwrap();
        json["id2label"] = serde_json::json!({"0": "A", "1": "B"});
        json["num_labels"] = serde_json::json!(3);
        let err = LongformerHeadConfig::from_json_str(&json.to_string())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("num_labels is 3 but id2label names 2"),
            "{err}"
        );
    }

    #[test]
    fn hf_json_round_trips() {
        use crate::heads::LongformerForTokenClassification;
        // HF writes the window per layer.
        let config = LongformerHeadConfig::from_json_str(&with("attention_window", "[8, 8]"))
            .unwrap()
            .with_labels(["O", "B-PER", "I-PER"])
            .with_sep_token_id(5)
            .with_tie_word_embeddings(false)
            .with_problem_type(Some(ProblemType::MultiLabelClassification));
        let json = config.to_hf_json::<LongformerForTokenClassification>();
        let back = LongformerHeadConfig::from_json_str(&json).unwrap();
        assert_eq!(back.to_string(), config.to_string());
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            value["architectures"],
            serde_json::json!(["LongformerForTokenClassification"])
        );
        assert_eq!(value["id2label"]["2"], "I-PER");
        assert_eq!(value["label2id"]["B-PER"], 1);
        assert_eq!(value["problem_type"], "multi_label_classification");
        let plain = LongformerHeadConfig::from_json_str(BASE).unwrap();
        let value: serde_json::Value =
            serde_json::from_str(&plain.to_hf_json::<LongformerForTokenClassification>()).unwrap();
        assert!(value.get("problem_type").is_none(), "{value}");
    }

    #[test]
    fn reads_problem_type_and_how_scores_read() {
        let read = |json: &str| LongformerHeadConfig::from_json_str(json).unwrap();
        assert_eq!(read(BASE).problem_type, None);
        assert_eq!(read(&with("problem_type", "null")).problem_type, None);
        assert_eq!(read(BASE).score_function(), ScoreFunction::Softmax);
        let regression = read(&with("problem_type", r#""regression""#));
        assert_eq!(regression.problem_type, Some(ProblemType::Regression));
        assert_eq!(regression.score_function(), ScoreFunction::Identity);
        let multi = read(&with("problem_type", r#""multi_label_classification""#));
        assert_eq!(multi.score_function(), ScoreFunction::Sigmoid);
        // HF's pipeline reads a single output through a sigmoid.
        assert_eq!(
            read(&with("num_labels", "1")).score_function(),
            ScoreFunction::Sigmoid
        );
    }

    #[test]
    fn unknown_problem_type_is_an_error() {
        let err = LongformerHeadConfig::from_json_str(&with("problem_type", r#""multi""#))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(r#"problem_type "multi" is not one of"#),
            "{err}"
        );
    }

    #[test]
    fn single_label_classification_needs_two_labels() {
        let mut json: serde_json::Value = serde_json::from_str(BASE).unwrap();
        json["problem_type"] = "single_label_classification".into();
        json["num_labels"] = 1.into();
        let err = LongformerHeadConfig::from_json_str(&json.to_string())
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs num_labels > 1"), "{err}");
    }

    #[test]
    fn id2label_with_a_gap_is_an_error() {
        let json = with("id2label", r#"{"0": "A", "2": "B"}"#);
        let err = LongformerHeadConfig::from_json_str(&json)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no label 1"), "{err}");
    }
}
