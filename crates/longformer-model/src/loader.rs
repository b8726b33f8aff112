//! Loading and saving HuggingFace Longformer checkpoints.
//!
//! A checkpoint directory holds `config.json` and `model.safetensors` or `pytorch_model.bin`, or
//! the shards that `model.safetensors.index.json` / `pytorch_model.bin.index.json` name (HF's
//! sharded checkpoints). Keys may be bare (`LongformerModel.save_pretrained`), prefixed
//! `longformer.` (task-head models) or `roberta.` (the original allenai release), key by key as
//! HF accepts them. HF key → module path:
//!
//! | HF key | module path |
//! |---|---|
//! | `embeddings.{word,position,token_type}_embeddings.weight` | same |
//! | `embeddings.LayerNorm.{weight,bias}` | `embeddings.layer_norm.{gamma,beta}` |
//! | `encoder.layer.{i}.attention.self.{query,key,value}{,_global}.{weight,bias}` | `encoder.layer.{i}.attention.self_attn.…` (weights transposed) |
//! | `encoder.layer.{i}.attention.output.{dense,LayerNorm}.…` | `….attention.output.{dense,layer_norm}.…` |
//! | `encoder.layer.{i}.{intermediate,output}.dense.…`, `output.LayerNorm.…` | same, `layer_norm` |
//! | `pooler.dense.{weight,bias}` | same (the pooler is built only when the file has it) |
//!
//! [`load_pretrained`] ignores head weights (`lm_head.*`, `classifier.*`, `qa_outputs.*`) and
//! the `position_ids` buffer; any other unknown key, a missing key, a wrong shape or a non-float
//! tensor is an error naming the key as written and the file (shapes in the file's layout).
//! Half-precision and f64 checkpoints are converted to f32.
//!
//! Task-head models ([`crate::heads`]) load with [`load_head`]: their modules carry HF's names
//! (`longformer`, `lm_head`, `classifier`, `qa_outputs`), so a head checkpoint's keys are module
//! paths after the same two renamings (`roberta.` and bare encoder keys become `longformer.`);
//! head keys (`lm_head.layer_norm.weight`, `classifier.out_proj.bias`, ...) map to themselves, with
//! the same strict checks. [`load_with_new_head`] starts a head from any checkpoint's encoder.
//!
//! [`save_pretrained`] and [`save_head`] write the directory HF's `save_pretrained` writes, the
//! table read from right to left: `model.safetensors` (bare keys for the base model,
//! `longformer.` for a head's encoder; PyTorch's `[d_out, d_in]` linear weights) and
//! `config.json`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::store::{
    ApplyError, ApplyResult, BurnToPyTorchAdapter, FloatCastAdapter, KeyRemapper, ModuleAdapter,
    ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};
use burn::tensor::{DType, Device, Tensor};
use serde::Deserialize;

use crate::config::LongformerConfig;
use crate::error::{LoadError, SaveError};
use crate::heads::{LongformerHeadConfig, TaskHead};
use crate::model::LongformerModel;

/// Key prefixes of HF checkpoints, tried in this order.
const PREFIXES: [&str; 2] = ["longformer.", "roberta."];

/// Keys a base-model load ignores: task heads.
const HEAD_PREFIXES: [&str; 3] = ["lm_head.", "classifier.", "qa_outputs."];

/// Buffers HF may save with the encoder; every load ignores them.
const BUFFERS: [&str; 2] = ["embeddings.position_ids", "embeddings.token_type_ids"];

/// Loads `config.json` and the weights of a HuggingFace model directory.
pub fn load_pretrained(
    dir: impl AsRef<Path>,
    device: &Device,
) -> Result<LongformerModel, LoadError> {
    let dir = dir.as_ref();
    let config = LongformerConfig::from_json_file(dir.join("config.json"))?;
    load_weights(&config, weights_file(dir)?, device)
}

/// The weights of a model directory, in HF's order of preference: `model.safetensors`, the
/// sharded `model.safetensors.index.json`, `pytorch_model.bin`, `pytorch_model.bin.index.json`.
pub fn weights_file(dir: &Path) -> Result<PathBuf, LoadError> {
    [
        "model.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
        "pytorch_model.bin.index.json",
    ]
    .iter()
    .map(|name| dir.join(name))
    .find(|p| p.is_file())
    .ok_or_else(|| LoadError::NoWeights(dir.to_path_buf()))
}

/// Builds a model for `config` and fills it from a `.safetensors` or PyTorch (`.bin`, `.pt`)
/// file, or from the shards a sharded checkpoint's `*.index.json` names.
pub fn load_weights(
    config: &LongformerConfig,
    path: impl AsRef<Path>,
    device: &Device,
) -> Result<LongformerModel, LoadError> {
    config.validate()?;
    let checkpoint = Checkpoint::open(path.as_ref())?;
    let prefix = detect_prefix(&checkpoint.keys());
    let mut remaps = Vec::new();
    if !prefix.is_empty() {
        remaps.push((format!("^{}", regex_escape(&prefix)), String::new()));
    }
    remaps.extend(encoder_remaps());
    let paths = checkpoint.module_paths(&remaps)?;
    let has_pooler = paths.keys().any(|p| p.starts_with("pooler."));
    let mut model = config.init_with_pooler(has_pooler, device);
    let result = checkpoint.apply(&mut model, &remaps)?;
    checkpoint.check(
        result,
        &paths,
        |k| hf_key(k, &prefix),
        |k| {
            HEAD_PREFIXES
                .iter()
                .chain(&BUFFERS)
                .any(|p| k.starts_with(p))
        },
    )?;
    Ok(model)
}

/// Loads a task-head model (see [`crate::heads`]) from a HuggingFace directory: `config.json`
/// and the weights ([`weights_file`]), as the head's `save_pretrained` writes them.
///
/// Strict: every tensor of the model must be in the file and every tensor of the file must be
/// used, except the buffers `position_ids` / `token_type_ids` and the head's own duplicates
/// ([`TaskHead::IGNORED_KEYS`], e.g. the tied `lm_head.decoder.weight`). A base-model checkpoint
/// lacks the head's keys and is an error naming them: start a head from one with
/// [`load_with_new_head`].
///
/// # Errors
/// A `config.json` that is invalid or does not fit the head (question answering with
/// `num_labels` other than 2), naming the file; what [`load_head_weights`] reports.
pub fn load_head<H: TaskHead>(dir: impl AsRef<Path>, device: &Device) -> Result<H, LoadError> {
    let dir = dir.as_ref();
    let config_path = dir.join("config.json");
    let config = LongformerHeadConfig::from_json_file(&config_path)?;
    load_head_weights(&config, weights_file(dir)?, device)
        .map_err(|e| e.config_in_file(&config_path))
}

/// Builds a head model for `config` and fills it, strictly, from a `.safetensors` or PyTorch
/// file or a sharded checkpoint's `*.index.json`. Encoder keys may be prefixed `longformer.`
/// (HF heads), `roberta.` or bare.
pub fn load_head_weights<H: TaskHead>(
    config: &LongformerHeadConfig,
    path: impl AsRef<Path>,
    device: &Device,
) -> Result<H, LoadError> {
    let mut model: H = config.init(device)?;
    let checkpoint = Checkpoint::open(path.as_ref())?;
    let keys = checkpoint.keys();
    let prefix = detect_prefix(&keys);
    // Bare encoder keys (and `roberta.` ones) become `longformer.` module paths.
    let mut remaps = vec![(
        r"^(embeddings|encoder|pooler)\.".to_string(),
        "longformer.${1}.".to_string(),
    )];
    if prefix == "roberta." {
        remaps.push((r"^roberta\.".to_string(), "longformer.".to_string()));
    }
    remaps.extend(encoder_remaps());
    remaps.extend(H::key_remaps(&keys, config));
    let paths = checkpoint.module_paths(&remaps)?;
    let result = checkpoint.apply(&mut model, &remaps)?;
    checkpoint.check(
        result,
        &paths,
        |k| head_hf_key(k, &prefix),
        |k| {
            H::IGNORED_KEYS.contains(&k)
                || k.strip_prefix("longformer.")
                    .is_some_and(|rest| BUFFERS.iter().any(|p| rest.starts_with(p)))
        },
    )?;
    Ok(model)
}

/// Starts a head model from any Longformer checkpoint directory (a base model, or another
/// head's): the encoder is loaded as [`load_pretrained`] loads it (strictly, other heads'
/// weights ignored) and the head is freshly initialised as HF's `_init_weights` does, as HF's
/// `from_pretrained` does for a fine-tuning run. The pooler follows the head: kept (or freshly
/// initialised, when the checkpoint has none) for multiple choice, dropped otherwise.
///
/// The head's labels are those of `config.json` (`num_labels`, else the length of `id2label`,
/// else 2); to choose them, use [`load_with_new_head_config`].
///
/// # Errors
/// A `config.json` that is invalid or does not fit the head (question answering with
/// `num_labels` other than 2), naming the file; what [`load_weights`] reports.
pub fn load_with_new_head<H: TaskHead>(
    dir: impl AsRef<Path>,
    device: &Device,
) -> Result<H, LoadError> {
    let dir = dir.as_ref();
    let config_path = dir.join("config.json");
    let config = LongformerHeadConfig::from_json_file(&config_path)?;
    load_with_new_head_config(dir, &config, device).map_err(|e| e.config_in_file(&config_path))
}

/// [`load_with_new_head`] with the head's config given instead of read from the directory's
/// `config.json` (which is then not read): to choose the labels of a new classifier
/// (`num_labels`, `id2label`; [`LongformerHeadConfig::with_labels`] sets both), or the
/// local-attention kernel or dropouts of the model. `config.model` must describe the
/// checkpoint's encoder, so start from the directory's own config:
///
/// ```no_run
/// use std::path::Path;
/// use burn::tensor::Device;
/// use longformer_model::{
///     LongformerForSequenceClassification, LongformerHeadConfig, load_with_new_head_config,
/// };
///
/// let device = Device::flex();
/// let dir = Path::new("longformer-base-4096");
/// let config = LongformerHeadConfig::from_json_file(dir.join("config.json"))?
///     .with_labels(["negative", "neutral", "positive", "mixed", "off-topic"]);
/// let classifier: LongformerForSequenceClassification =
///     load_with_new_head_config(dir, &config, &device)?; // logits [batch_size, 5]
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// A `config` that is invalid ([`LongformerHeadConfig::validate`]) or does not fit the head
/// (question answering with `num_labels` other than 2); what [`load_weights`] reports (a
/// checkpoint whose tensors do not fit `config.model` among them).
pub fn load_with_new_head_config<H: TaskHead>(
    dir: impl AsRef<Path>,
    config: &LongformerHeadConfig,
    device: &Device,
) -> Result<H, LoadError> {
    config.validate()?;
    let encoder = load_weights(&config.model, weights_file(dir.as_ref())?, device)?;
    Ok(H::with_encoder(encoder, config, device)?)
}

/// Writes `model` into `dir` as HF's `LongformerModel.save_pretrained` does, for
/// `transformers.LongformerModel.from_pretrained(dir)` and [`load_pretrained`]:
/// `model.safetensors` with HF's bare keys (`embeddings.LayerNorm.weight`,
/// `encoder.layer.0.attention.self.query.weight`, ...; linear weights transposed to PyTorch's
/// `[d_out, d_in]`), in the parameters' own dtype (f32, f16 or bf16), with the `format: pt`
/// metadata that `transformers` requires; and `config.json` ([`LongformerConfig::to_hf_json`]
/// plus the weights' `dtype`). The pooler is written when the model has one. `dir` is created
/// if need be; a `model.safetensors` or `config.json` already there is replaced.
///
/// `config` is the one the model was built or loaded with. It is checked against the model
/// before anything is written: the same tensors with the same shapes, and in every layer the same
/// window, number of heads and window pattern (the rest, such as `layer_norm_eps` or
/// `hidden_act`, has no trace in the weights and is written as `config` says).
///
/// ```no_run
/// use burn::tensor::Device;
/// use longformer_model::{LongformerConfig, load_pretrained, save_pretrained};
///
/// let device = Device::flex();
/// let config = LongformerConfig::from_json_file("longformer-base-4096/config.json")?;
/// let model = load_pretrained("longformer-base-4096", &device)?;
/// // ... train the model ...
/// save_pretrained(&model, &config, "longformer-base-4096-tuned")?;
/// // Python: transformers.LongformerModel.from_pretrained("longformer-base-4096-tuned")
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// An invalid `config`, or one that does not describe the model ([`SaveError::ConfigMismatch`]);
/// a directory or file that cannot be written, naming it.
pub fn save_pretrained(
    model: &LongformerModel,
    config: &LongformerConfig,
    dir: impl AsRef<Path>,
) -> Result<(), SaveError> {
    let dir = dir.as_ref();
    config.validate()?;
    let reference = config.init_with_pooler(model.pooler.is_some(), &module_device(model));
    check_config(model, &reference, |m| m, dir)?;
    write_checkpoint(model, model, &hf_remaps(false), config.to_hf_value(), dir)
}

/// Writes a task-head model into `dir` as HF's `save_pretrained` does for its class
/// ([`TaskHead::HF_CLASS`]), for `transformers.AutoModelFor...from_pretrained(dir)` and
/// [`load_head`]: `model.safetensors` as [`save_pretrained`] writes it, the encoder's keys
/// prefixed `longformer.`, the head's as HF names them (`classifier.out_proj.weight`,
/// `qa_outputs.bias`, `lm_head.layer_norm.weight`, ...); and `config.json`
/// ([`LongformerHeadConfig::to_hf_json`]: `architectures`, the labels as `id2label` /
/// `label2id`, `tie_word_embeddings`, plus the weights' `dtype`).
///
/// A masked-LM model with tied word embeddings is written as HF writes it: without the tied
/// `lm_head.decoder.{weight,bias}` (HF ties them back to the word embedding and `lm_head.bias`
/// on load); an untied one (`tie_word_embeddings: false`) with its own decoder.
///
/// `config` is the one the model was built or loaded with, with the labels it was trained for
/// (see [`LongformerHeadConfig::with_labels`]); it is checked against the model as
/// [`save_pretrained`] checks it (the number of labels and the decoder's tying among the rest).
///
/// ```no_run
/// use std::path::Path;
/// use burn::tensor::Device;
/// use longformer_model::{
///     LongformerForSequenceClassification, LongformerHeadConfig, load_with_new_head_config,
///     save_head,
/// };
///
/// let device = Device::flex();
/// let dir = Path::new("longformer-base-4096");
/// let config = LongformerHeadConfig::from_json_file(dir.join("config.json"))?
///     .with_labels(["negative", "positive"]);
/// let model: LongformerForSequenceClassification =
///     load_with_new_head_config(dir, &config, &device)?;
/// // ... fine-tune the model ...
/// save_head(&model, &config, "longformer-sentiment")?;
/// // Python: AutoModelForSequenceClassification.from_pretrained("longformer-sentiment")
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// An invalid `config`, one that cannot describe the head (question answering with `num_labels`
/// other than 2) or does not describe the model ([`SaveError::ConfigMismatch`]); a directory or
/// file that cannot be written, naming it.
pub fn save_head<H: TaskHead>(
    model: &H,
    config: &LongformerHeadConfig,
    dir: impl AsRef<Path>,
) -> Result<(), SaveError> {
    let dir = dir.as_ref();
    let reference: H = config.init(&module_device(model))?;
    check_config(model, &reference, H::longformer, dir)?;
    let json = config.to_hf_value(H::HF_CLASS);
    write_checkpoint(model, model.longformer(), &hf_remaps(true), json, dir)
}

/// The device of a module's parameters (read without initializing lazy ones).
fn module_device<M: Module>(module: &M) -> Device {
    let devices = module.devices();
    devices
        .into_iter()
        .next()
        .expect("a Longformer has parameters")
}

/// Whether `model` is the model its config builds (`reference`: the encoder's parameters are
/// lazy, never drawn; a head's own are drawn by its `init`): the same tensors with the same shapes, and in every layer of the encoders (`encoder`)
/// the same window, number of heads and window pattern.
fn check_config<M: Module>(
    model: &M,
    reference: &M,
    encoder: impl Fn(&M) -> &LongformerModel,
    dir: &Path,
) -> Result<(), SaveError> {
    let (found, wanted) = (param_shapes(model), param_shapes(reference));
    let paths: BTreeSet<&String> = found.keys().chain(wanted.keys()).collect();
    let mut differences: Vec<String> = paths
        .into_iter()
        .filter_map(|path| match (found.get(path), wanted.get(path)) {
            (Some(a), Some(b)) if a != b => Some(format!(
                "{path} has shape {a:?} in the model, {b:?} in the config's"
            )),
            (Some(_), None) => Some(format!("{path} is in the model, not in the config's")),
            (None, Some(_)) => Some(format!("{path} is in the config's model, not in the model")),
            _ => None,
        })
        .collect();
    let layers = encoder(model).encoder.layer.iter();
    let reference_layers = encoder(reference).encoder.layer.iter();
    for (i, (a, b)) in layers.zip(reference_layers).enumerate() {
        let (a, b) = (&a.attention.self_attn, &b.attention.self_attn);
        if (a.window, a.n_heads, &a.pattern) != (b.window, b.n_heads, &b.pattern) {
            differences.push(format!(
                "layer {i} has a one-sided window of {}, {} heads and {:?} in the model, {}, {} \
                 and {:?} in the config",
                a.window, a.n_heads, a.pattern, b.window, b.n_heads, b.pattern
            ));
        }
    }
    if differences.is_empty() {
        return Ok(());
    }
    const SHOWN: usize = 5;
    let more = differences.len().saturating_sub(SHOWN);
    differences.truncate(SHOWN);
    if more > 0 {
        differences.push(format!("and {more} more"));
    }
    Err(SaveError::ConfigMismatch {
        dir: dir.to_path_buf(),
        message: differences.join("; "),
    })
}

/// Module path → shape of every float parameter, without initializing lazy ones.
fn param_shapes<M: Module>(module: &M) -> BTreeMap<String, Vec<usize>> {
    #[derive(Default)]
    struct Shapes {
        path: Vec<String>,
        shapes: BTreeMap<String, Vec<usize>>,
    }
    impl ModuleVisitor for Shapes {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let shape = param.lazy_shape().to_vec();
            self.shapes.insert(self.path.join("."), shape);
        }
    }
    let mut shapes = Shapes::default();
    module.visit(&mut shapes);
    shapes.shapes
}

/// Writes `dir/model.safetensors` (the tensors of `model`, Burn → PyTorch layout, module paths
/// renamed by `remaps`) and `dir/config.json` (`config` with the `dtype` of `encoder`'s weights).
fn write_checkpoint<M: ModuleSnapshot>(
    model: &M,
    encoder: &LongformerModel,
    remaps: &[(String, String)],
    mut config: serde_json::Value,
    dir: &Path,
) -> Result<(), SaveError> {
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |error| SaveError::Io { path, error }
    };
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let weights = dir.join("model.safetensors");
    // `transformers` refuses a safetensors file whose `format` is not `pt` (Burn writes
    // `safetensors`); HF writes that key alone.
    let mut store = SafetensorsStore::from_bytes(None)
        .with_to_adapter(BurnToPyTorchAdapter)
        .remap(remapper(remaps))
        .clear_metadata()
        .metadata("format", "pt");
    let write_error = |e: &dyn std::fmt::Display| SaveError::Write {
        path: weights.clone(),
        message: e.to_string(),
    };
    model.save_into(&mut store).map_err(|e| write_error(&e))?;
    let bytes = store.get_bytes().map_err(|e| write_error(&e))?;
    // Written here rather than by the store, whose file is private to its owner (mode 0600,
    // from `safetensors`' temporary file): a checkpoint is for others to read too.
    write_replacing(&weights, &bytes).map_err(io_error(&weights))?;
    let dtype = encoder.embeddings.word_embeddings.weight.val().dtype();
    if let Some(name) = hf_dtype_name(dtype) {
        config["dtype"] = name.into();
    }
    let path = dir.join("config.json");
    let text = serde_json::to_string_pretty(&config).expect("a JSON value serializes") + "\n";
    write_replacing(&path, text.as_bytes()).map_err(io_error(&path))
}

/// Writes `bytes` to `path` through a sibling temporary file (created exclusively) and a
/// rename, so that a reader never sees half a file and a failed write leaves the old one; the
/// file gets a new file's permissions (the umask's), also where it replaces one.
fn write_replacing(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let name = path
        .file_name()
        .map_or_else(|| "checkpoint".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    let written = file.write_all(bytes).and_then(|()| {
        drop(file);
        std::fs::rename(&tmp, path)
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// PyTorch's name of a float dtype, as `config.json`'s `dtype` holds it.
fn hf_dtype_name(dtype: DType) -> Option<&'static str> {
    match dtype {
        DType::F32 => Some("float32"),
        DType::F16 => Some("float16"),
        DType::BF16 => Some("bfloat16"),
        DType::F64 => Some("float64"),
        _ => None,
    }
}

/// The tensors of a checkpoint: one weight file, or the shards of a sharded checkpoint.
struct Checkpoint {
    /// What errors about the whole checkpoint name: the weight file, or the shards' index.
    path: PathBuf,
    /// The weight files, in the index's order.
    files: Vec<PathBuf>,
    /// Every key as written, with the file holding it and its shape there.
    tensors: BTreeMap<String, (PathBuf, Vec<usize>)>,
}

impl Checkpoint {
    /// Reads the keys and shapes of the weight file at `path`, or of every shard that the
    /// `*.index.json` at `path` names.
    fn open(path: &Path) -> Result<Self, LoadError> {
        let files = if path.to_string_lossy().ends_with(".index.json") {
            shard_files(path)?
        } else {
            vec![path.to_path_buf()]
        };
        let mut tensors = BTreeMap::new();
        for file in &files {
            for (key, shape) in file_tensors(file)? {
                if let Some((first, _)) = tensors.insert(key.clone(), (file.clone(), shape)) {
                    return Err(LoadError::BadTensor {
                        path: file.clone(),
                        key,
                        message: format!("also in {}", first.display()),
                    });
                }
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            files,
            tensors,
        })
    }

    fn keys(&self) -> Vec<String> {
        self.tensors.keys().cloned().collect()
    }

    /// Module path → key as written, for every key of the checkpoint renamed by `remaps` as the
    /// stores rename them. Two keys naming the same tensor (`longformer.x` and a bare `x`) are
    /// an error.
    fn module_paths(
        &self,
        remaps: &[(String, String)],
    ) -> Result<HashMap<String, String>, LoadError> {
        let patterns = remapper(remaps).to_regex_pairs();
        let mut paths = HashMap::new();
        for key in self.tensors.keys() {
            let path = patterns.iter().fold(key.clone(), |k, (re, to)| {
                re.replace_all(&k, to.as_str()).into_owned()
            });
            if let Some(other) = paths.insert(path, key.clone()) {
                return Err(LoadError::BadTensor {
                    path: self.tensors[key].0.clone(),
                    key: key.clone(),
                    message: format!("{other} holds the same tensor"),
                });
            }
        }
        Ok(paths)
    }

    /// Fills `module` from every file, keys renamed by `remaps` (regex, replacement) in order;
    /// the results of the files merged (a path is missing when no file has it).
    fn apply<M: ModuleSnapshot>(
        &self,
        module: &mut M,
        remaps: &[(String, String)],
    ) -> Result<ApplyResult, LoadError> {
        let mut merged: Option<ApplyResult> = None;
        for file in &self.files {
            let result = apply_file(module, file, remaps)?;
            merged = Some(match merged {
                None => result,
                Some(mut all) => {
                    all.applied.extend(result.applied);
                    all.unused.extend(result.unused);
                    all.errors.extend(result.errors);
                    all.missing
                        .retain(|(p, _)| result.missing.iter().any(|(q, _)| p == q));
                    all
                }
            });
        }
        Ok(merged.expect("a checkpoint has at least one file"))
    }

    /// Missing keys, unused keys (unless `ignored`) and tensor errors as a [`LoadError`]. Keys
    /// of the file are named as written (`paths`); missing ones by `key_of`, which turns a
    /// module path into the key the file would have.
    fn check(
        &self,
        result: ApplyResult,
        paths: &HashMap<String, String>,
        key_of: impl Fn(&str) -> String,
        ignored: impl Fn(&str) -> bool,
    ) -> Result<(), LoadError> {
        let written = |p: &str| paths.get(p).cloned().unwrap_or_else(|| key_of(p));
        if let Some(error) = result.errors.first() {
            let (module_path, message) = match error {
                ApplyError::ShapeMismatch {
                    path,
                    expected,
                    found,
                } => (path, self.shape_message(&written(path), expected, found)),
                ApplyError::DTypeMismatch {
                    path,
                    expected,
                    found,
                } => (
                    path,
                    format!("dtype {found:?} where the model needs {expected:?}"),
                ),
                ApplyError::AdapterError { path, message }
                | ApplyError::LoadError { path, message } => (path, message.clone()),
            };
            let key = written(module_path);
            return Err(LoadError::BadTensor {
                path: self
                    .tensors
                    .get(&key)
                    .map_or_else(|| self.path.clone(), |(file, _)| file.clone()),
                key,
                message,
            });
        }
        if !result.missing.is_empty() {
            return Err(LoadError::MissingKeys {
                path: self.path.clone(),
                keys: result.missing.iter().map(|(k, _)| key_of(k)).collect(),
            });
        }
        let mut unexpected: Vec<String> = result
            .unused
            .iter()
            .filter(|k| !ignored(k))
            .map(|k| written(k))
            .collect();
        unexpected.sort();
        if !unexpected.is_empty() {
            return Err(LoadError::UnexpectedKeys {
                path: self.path.clone(),
                keys: unexpected,
            });
        }
        Ok(())
    }

    /// A shape mismatch in the file's layout: the loader transposes linear weights into Burn's
    /// `[d_in, d_out]`, so where the store's shapes are the file's reversed, so is the expected one.
    fn shape_message(&self, key: &str, expected: &[usize], found: &[usize]) -> String {
        let (file_shape, expected) = match self.tensors.get(key) {
            Some((_, shape)) if shape.as_slice() != found => {
                (shape.clone(), expected.iter().rev().copied().collect())
            }
            _ => (found.to_vec(), expected.to_vec()),
        };
        format!("shape {file_shape:?} does not fit the model's {expected:?}")
    }
}

/// The shards a sharded checkpoint's index (`{"weight_map": {key: file}}`) names, in order,
/// each once; every one must exist next to the index.
fn shard_files(index: &Path) -> Result<Vec<PathBuf>, LoadError> {
    #[derive(Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let text = std::fs::read_to_string(index).map_err(|e| read_error(index, e))?;
    let index_json: Index = serde_json::from_str(&text).map_err(|e| read_error(index, e))?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut files: Vec<PathBuf> = Vec::new();
    for name in index_json.weight_map.values() {
        let file = dir.join(name);
        if !files.contains(&file) {
            if !file.is_file() {
                return Err(read_error(
                    index,
                    format!("it names the shard {}, which is absent", file.display()),
                ));
            }
            files.push(file);
        }
    }
    if files.is_empty() {
        return Err(read_error(index, "its weight_map names no shard"));
    }
    Ok(files)
}

/// The keys and shapes of one weight file, as written.
fn file_tensors(path: &Path) -> Result<Vec<(String, Vec<usize>)>, LoadError> {
    let entries = |tensors: &BTreeMap<String, burn::store::burn_pack::Tensor>| {
        tensors
            .iter()
            .map(|(k, t)| (k.clone(), t.shape.as_slice().to_vec()))
            .collect()
    };
    if is_safetensors(path) {
        let mut store = SafetensorsStore::from_file(path);
        let tensors = store.get_all_tensors().map_err(|e| read_error(path, e))?;
        return Ok(entries(tensors));
    }
    let mut raw = PytorchStore::from_file(path);
    let tensors = raw.get_all_tensors().map_err(|e| read_error(path, e))?;
    Ok(entries(tensors))
}

fn is_safetensors(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "safetensors")
}

/// `remaps` (regex, replacement), applied in order to every key.
fn remapper(remaps: &[(String, String)]) -> KeyRemapper {
    KeyRemapper::from_patterns(remaps.to_vec()).expect("the loader's key patterns are valid")
}

/// Fills `module` from the file at `path`, keys renamed by `remaps` (regex, replacement) in order.
fn apply_file<M: ModuleSnapshot>(
    module: &mut M,
    path: &Path,
    remaps: &[(String, String)],
) -> Result<ApplyResult, LoadError> {
    if is_safetensors(path) {
        let mut store = SafetensorsStore::from_file(path)
            .remap(remapper(remaps))
            .with_from_adapter(from_hf())
            .validate(false)
            .allow_partial(true);
        module
            .load_from(&mut store)
            .map_err(|e| read_error(path, e))
    } else {
        // `PytorchStore::load_from` applies its PyTorch → Burn adapter alone, which cannot cast;
        // applied here with the safetensors chain instead, float16 and bfloat16 files (a half
        // model's `torch.save`) load as their safetensors twins do.
        let mut store = PytorchStore::from_file(path).remap(remapper(remaps));
        let tensors = store
            .get_all_tensors()
            .map_err(|e| read_error(path, e))?
            .values()
            .cloned()
            .collect();
        Ok(module.apply(tensors, None, Some(Box::new(from_hf())), false))
    }
}

/// HF tensors to this crate's parameters: PyTorch's layout to Burn's, then float32 (a
/// checkpoint may hold float16 or bfloat16).
fn from_hf() -> impl ModuleAdapter + 'static {
    PyTorchToBurnAdapter.chain(FloatCastAdapter::to(DType::F32))
}

/// The prefix the file's embeddings carry (`""`, `"longformer."` or `"roberta."`); other keys
/// may carry it or be bare.
fn detect_prefix(keys: &[String]) -> String {
    let has = |p: &str| {
        keys.iter()
            .any(|k| k.starts_with(&format!("{p}embeddings.")))
    };
    PREFIXES
        .iter()
        .find(|p| has(p))
        .map(|p| p.to_string())
        .unwrap_or_default()
}

/// HF names → module paths inside the encoder.
fn encoder_remaps() -> [(String, String); 2] {
    [
        (r"\.LayerNorm\.".into(), ".layer_norm.".into()),
        (
            r"\.attention\.self\.".into(),
            ".attention.self_attn.".into(),
        ),
    ]
}

/// Module paths → HF keys, once [`BurnToPyTorchAdapter`] has named the norms' parameters
/// `weight` and `bias`: the inverse of [`encoder_remaps`], within the encoder only (`longformer.…`
/// in a `head` model, where `lm_head.layer_norm` keeps its name). Agrees with [`hf_key`] and
/// [`head_hf_key`] (with HF's prefixes: none for the base model, `longformer.` for a head).
fn hf_remaps(head: bool) -> Vec<(String, String)> {
    let encoder = if head { r"^(longformer\..*)" } else { r"^(.*)" };
    vec![
        (
            format!(r"{encoder}\.attention\.self_attn\."),
            "${1}.attention.self.".into(),
        ),
        (
            format!(r"{encoder}\.layer_norm\."),
            "${1}.LayerNorm.".into(),
        ),
    ]
}

/// The checkpoint key of a module path (inverse of the prefix removal, `encoder_remaps` and
/// the norm renaming).
pub fn hf_key(module_path: &str, prefix: &str) -> String {
    let key = module_path
        .replace(".attention.self_attn.", ".attention.self.")
        .replace(".layer_norm.", ".LayerNorm.");
    let key = if key.contains(".LayerNorm.") {
        key.replace(".gamma", ".weight").replace(".beta", ".bias")
    } else {
        key
    };
    format!("{prefix}{key}")
}

/// The checkpoint key of a head model's module path: encoder paths (`longformer.…`) as
/// [`hf_key`] with the file's `prefix`, head paths with HF's `weight`/`bias` for norm parameters.
pub fn head_hf_key(module_path: &str, prefix: &str) -> String {
    match module_path.strip_prefix("longformer.") {
        Some(rest) => hf_key(rest, prefix),
        None if module_path.contains("layer_norm.") => module_path
            .replace("layer_norm.gamma", "layer_norm.weight")
            .replace("layer_norm.beta", "layer_norm.bias"),
        None => module_path.to_string(),
    }
}

fn read_error(path: &Path, e: impl std::fmt::Display) -> LoadError {
    LoadError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn regex_escape(s: &str) -> String {
    s.replace('.', r"\.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heads::{
        LongformerForMaskedLM, LongformerForMultipleChoice, LongformerForQuestionAnswering,
        LongformerForSequenceClassification, LongformerForTokenClassification,
    };
    use crate::input::LongformerInput;

    /// A tiny HF checkpoint of the workspace's `tests/fixtures`.
    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures")
            .join(name)
    }

    /// A fresh directory holding `config.json` (`edit` applied to `from`'s) and `from`'s weights.
    fn edited_checkpoint(
        name: &str,
        from: &str,
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> PathBuf {
        let from = fixture(from);
        let dir = std::env::temp_dir().join(format!("longformer-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(from.join("config.json")).unwrap())
                .unwrap();
        edit(&mut config);
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        let weights = weights_file(&from).unwrap();
        std::fs::copy(&weights, dir.join(weights.file_name().unwrap())).unwrap();
        dir
    }

    #[test]
    fn a_new_head_takes_the_labels_of_the_given_config() {
        let device = Device::flex();
        let dir = fixture("no_global");
        let input = || {
            LongformerInput::from_rows(&[vec![0, 5, 6, 2], vec![0, 7, 2]], None, None, 1, &device)
        };
        let config = LongformerHeadConfig::from_json_file(dir.join("config.json"))
            .unwrap()
            .with_num_labels(5);
        let model: LongformerForSequenceClassification =
            load_with_new_head_config(&dir, &config, &device).unwrap();
        assert_eq!(model.forward(input()).unwrap().dims(), [2, 5]);
        // The encoder is the checkpoint's.
        let base = load_pretrained(&dir, &device).unwrap();
        let embedding = |m: &LongformerModel| {
            m.embeddings
                .word_embeddings
                .weight
                .val()
                .into_data()
                .iter::<f32>()
                .collect::<Vec<_>>()
        };
        assert_eq!(embedding(&model.longformer), embedding(&base));

        let config = config.with_labels(["a", "b", "c"]);
        assert_eq!((config.num_labels, config.label(2).as_str()), (3, "c"));
        let model: LongformerForSequenceClassification =
            load_with_new_head_config(&dir, &config, &device).unwrap();
        assert_eq!(model.forward(input()).unwrap().dims(), [2, 3]);

        let err = load_with_new_head_config::<LongformerForSequenceClassification>(
            &dir,
            &config.with_num_labels(0),
            &device,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("num_labels must be positive"),
            "{err}"
        );
    }

    /// The error came from the head, after the file was read, and did not say which file.
    #[test]
    fn a_question_answering_config_with_3_labels_is_an_error_naming_the_file() {
        let device = Device::flex();
        let three_labels = |c: &mut serde_json::Value| c["num_labels"] = 3.into();
        let head = edited_checkpoint("qa-3-labels", "head_question_answering", three_labels);
        let base = edited_checkpoint("base-3-labels", "no_global", three_labels);
        let errors = [
            load_head::<LongformerForQuestionAnswering>(&head, &device).unwrap_err(),
            load_with_new_head::<LongformerForQuestionAnswering>(&base, &device).unwrap_err(),
        ];
        for (dir, err) in [head, base].iter().zip(errors) {
            let msg = err.to_string();
            assert!(
                msg.starts_with(&dir.join("config.json").display().to_string())
                    && msg.contains("num_labels 2); the config has num_labels 3"),
                "{msg}"
            );
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    /// A path under the system's temp dir for a test's output, absent.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("longformer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// The keys of `dir/model.safetensors`, and those `key_of` gives `model`'s module paths.
    fn saved_and_expected_keys<M: ModuleSnapshot>(
        model: &M,
        dir: &Path,
        key_of: impl Fn(&str) -> String,
    ) -> (BTreeSet<String>, BTreeSet<String>) {
        let mut store = SafetensorsStore::from_file(dir.join("model.safetensors"));
        let saved = store.get_all_tensors().unwrap().keys().cloned().collect();
        let expected = model
            .collect(None, None, false)
            .iter()
            .map(|t| key_of(&t.name))
            .collect();
        (saved, expected)
    }

    fn check_head_keys<H: TaskHead>(config: &LongformerHeadConfig, name: &str) {
        let device = Device::flex();
        let model: H = config.init(&device).unwrap();
        let dir = scratch(name);
        save_head(&model, config, &dir).unwrap();
        let (saved, expected) =
            saved_and_expected_keys(&model, &dir, |p| head_hf_key(p, "longformer."));
        assert_eq!(saved, expected, "{}", H::HF_CLASS);
        load_head::<H>(&dir, &device).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The saver's renamings and the loader's `hf_key` / `head_hf_key` are one table.
    #[test]
    fn saved_keys_are_the_keys_the_loader_names() {
        let device = Device::flex();
        let config = LongformerConfig::tiny(50);
        let model = config.init_with_pooler(true, &device);
        let dir = scratch("save-base-keys");
        save_pretrained(&model, &config, &dir).unwrap();
        let (saved, expected) = saved_and_expected_keys(&model, &dir, |p| hf_key(p, ""));
        assert_eq!(saved, expected);
        assert!(saved.contains("encoder.layer.1.attention.self.query_global.weight"));
        load_pretrained(&dir, &device).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();

        let head = LongformerHeadConfig::new(config).with_num_labels(3);
        check_head_keys::<LongformerForMaskedLM>(&head, "save-mlm-keys");
        check_head_keys::<LongformerForMaskedLM>(
            &head.clone().with_tie_word_embeddings(false),
            "save-mlm-untied-keys",
        );
        check_head_keys::<LongformerForSequenceClassification>(&head, "save-seq-keys");
        check_head_keys::<LongformerForTokenClassification>(&head, "save-tok-keys");
        check_head_keys::<LongformerForMultipleChoice>(&head, "save-mc-keys");
        check_head_keys::<LongformerForQuestionAnswering>(&head.with_num_labels(2), "save-qa-keys");
    }

    #[test]
    fn a_config_that_does_not_describe_the_model_is_an_error_and_nothing_is_written() {
        let device = Device::flex();
        let config = LongformerHeadConfig::new(LongformerConfig::tiny(50)).with_num_labels(3);
        let dir = scratch("save-mismatch");
        let save = |result: Result<(), SaveError>| {
            let err = result.unwrap_err();
            assert!(matches!(err, SaveError::ConfigMismatch { .. }), "{err}");
            assert!(!dir.exists(), "{} was written", dir.display());
            err.to_string()
        };

        let model: LongformerForSequenceClassification = config.init(&device).unwrap();
        let msg = save(save_head(&model, &config.clone().with_num_labels(5), &dir));
        assert!(
            msg.contains("classifier.out_proj.weight has shape [64, 3] in the model, [64, 5]"),
            "{msg}"
        );

        let untied: LongformerForMaskedLM = config
            .clone()
            .with_tie_word_embeddings(false)
            .init(&device)
            .unwrap();
        let msg = save(save_head(&untied, &config, &dir));
        assert!(
            msg.contains("lm_head.decoder.weight is in the model, not in the config's"),
            "{msg}"
        );

        let base = config.model.init_with_pooler(false, &device);
        let wider = config
            .model
            .clone()
            .with_attention_window(crate::AttentionWindow::PerLayer(vec![32, 16]));
        let msg = save(save_pretrained(&base, &wider, &dir));
        assert!(
            msg.contains("layer 1 has a one-sided window of 16"),
            "{msg}"
        );
        assert!(!msg.contains("layer 0"), "{msg}");

        let deeper = config.model.clone().with_num_hidden_layers(4);
        let msg = save(save_pretrained(&base, &deeper, &dir));
        assert!(
            msg.contains("encoder.layer.2.attention.output.dense.bias is in the config's model")
                && msg.ends_with("more"),
            "{msg}"
        );
    }

    /// The model the config is checked against is never drawn: checking a base-size config
    /// costs no 150M random weights.
    #[test]
    fn the_config_check_draws_no_weights() {
        struct Initialized(usize, usize);
        impl ModuleVisitor for Initialized {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                self.0 += usize::from(param.is_initialized());
                self.1 += 1;
            }
        }
        let model = LongformerConfig::new().init_with_pooler(true, &Device::flex());
        let mut count = Initialized(0, 0);
        model.visit(&mut count);
        assert_eq!((count.0, count.1), (0, 271), "(initialized, all)");
        assert_eq!(
            param_shapes(&model)["encoder.layer.11.intermediate.dense.weight"],
            [768, 3072]
        );
    }

    #[test]
    fn an_unwritable_directory_is_an_error_naming_it() {
        let file = scratch("save-onto-a-file");
        std::fs::write(&file, "not a directory").unwrap();
        let config = LongformerConfig::tiny(50);
        let model = config.init(&Device::flex());
        let err = save_pretrained(&model, &config, &file).unwrap_err();
        assert!(matches!(err, SaveError::Io { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("cannot write {}", file.display())),
            "{err}"
        );
        std::fs::remove_file(&file).unwrap();
    }

    #[test]
    fn module_paths_map_back_to_hf_keys() {
        assert_eq!(
            hf_key(
                "encoder.layer.3.attention.self_attn.key_global.weight",
                "roberta."
            ),
            "roberta.encoder.layer.3.attention.self.key_global.weight"
        );
        assert_eq!(
            hf_key("embeddings.layer_norm.gamma", ""),
            "embeddings.LayerNorm.weight"
        );
    }

    #[test]
    fn directory_without_weights_is_an_error() {
        let dir = scratch("no-weights");
        std::fs::create_dir_all(&dir).unwrap();
        let err = weights_file(&dir).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            err.contains("no model.safetensors or pytorch_model.bin"),
            "{err}"
        );
    }
}
