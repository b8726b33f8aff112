//! Where a WikiHop model's weights come from: an HF checkpoint (with the word embedding grown
//! for the WikiHop markers) or a random initialization of a named or given configuration.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::module::Param;
use burn::tensor::{Device, Distribution, Tensor};
use longformer_data::WikiHopTokenizer;
use longformer_model::{AttentionWindow, LongformerConfig, LongformerModel, load_pretrained};

use crate::model::WikiHopModel;
use crate::progress::note;

/// Most rows a pretrained model's word embedding may have past its tokenizer's ids (markers
/// included): vocabularies are padded to multiples of up to 128.
const MAX_SPARE_ROWS: usize = 128;

/// A configuration for a random-init model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChoice {
    /// 2 layers, 64 wide, 4 heads, window 32, 512 positions: trains on the sample set in minutes.
    Tiny,
    /// longformer-base's shape: 12 layers, 768 wide, 12 heads, window 512, 4096 positions.
    Base,
    /// An HF `config.json`.
    File(PathBuf),
}

impl std::str::FromStr for ConfigChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "tiny" => Self::Tiny,
            "base" => Self::Base,
            path => Self::File(PathBuf::from(path)),
        })
    }
}

impl ConfigChoice {
    /// The configuration for a tokenizer of `vocab_size` ids that pads with `pad_id`: `tiny`
    /// and `base` take both from the tokenizer; a file's `vocab_size` must be at least the
    /// tokenizer's (its `pad_token_id` is checked by the caller).
    pub fn config(&self, vocab_size: usize, pad_id: usize) -> Result<LongformerConfig> {
        Ok(match self {
            Self::Tiny => LongformerConfig::tiny(vocab_size).with_pad_token_id(pad_id),
            Self::Base => LongformerConfig::new()
                .with_vocab_size(vocab_size)
                .with_pad_token_id(pad_id)
                .with_attention_window(AttentionWindow::Uniform(512)),
            Self::File(path) => {
                let config = LongformerConfig::from_json_file(path)?;
                if config.vocab_size < vocab_size {
                    bail!(
                        "{}: vocab_size {} is smaller than the tokenizer's vocabulary ({vocab_size} with the WikiHop markers)",
                        path.display(),
                        config.vocab_size
                    );
                }
                config
            }
        })
    }
}

/// Where the model starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// An HF Longformer directory (`config.json` + `model.safetensors` or `pytorch_model.bin`).
    Pretrained(PathBuf),
    /// Random weights.
    Random(ConfigChoice),
}

impl ModelSource {
    /// Builds the model on `device` for `tokenizer`, and its configuration (with the grown
    /// vocabulary). The tokenizer must fit the model (see [`check_tokenizer`]); a pretrained
    /// model's vocabulary must not be larger than the tokenizer's with the markers, or the
    /// markers would take ids of the model's own tokens.
    pub fn build(
        &self,
        tokenizer: &WikiHopTokenizer,
        device: &Device,
    ) -> Result<(WikiHopModel, LongformerConfig)> {
        let vocab_size = tokenizer.vocab_size();
        match self {
            Self::Random(choice) => {
                let config = choice.config(vocab_size, tokenizer.pad_id() as usize)?;
                config.validate()?;
                if let ConfigChoice::File(path) = choice {
                    check_tokenizer(tokenizer, &config, path)?;
                }
                Ok((WikiHopModel::init(&config, device), config))
            }
            Self::Pretrained(dir) => {
                let config_file = dir.join("config.json");
                let config = LongformerConfig::from_json_file(&config_file)?;
                // Vocabularies padded to a multiple of 8 to 128 rows leave spare rows past the
                // tokenizer's ids (markers included), which stay unused; many more mean another
                // tokenizer.
                let spare = config.vocab_size.saturating_sub(vocab_size);
                if spare > MAX_SPARE_ROWS {
                    bail!(
                        "the model in {} has {} ids but the tokenizer {} only {vocab_size} with \
                         the WikiHop markers: {spare} rows more than it can produce, so it is \
                         not the model's tokenizer; pass that with --tokenizer",
                        dir.display(),
                        config.vocab_size,
                        tokenizer.source().display()
                    );
                } else if spare > 0 {
                    note(&format!(
                        "the model in {} has {spare} rows past the ids of its tokenizer and the \
                         WikiHop markers (a padded vocabulary); they stay unused",
                        dir.display()
                    ));
                }
                check_tokenizer(
                    tokenizer,
                    &config.clone().with_vocab_size(vocab_size),
                    &config_file,
                )?;
                let mut encoder = load_pretrained(dir, device)
                    .with_context(|| format!("loading the model in {}", dir.display()))?;
                // WikiHop does not use the pooler, and `--resume` and `eval` build the model
                // without one (`WikiHopModel::init`): its weights would not load there.
                encoder.pooler = None;
                let grown = grow_word_embeddings(&mut encoder, vocab_size, device);
                let config = config.with_vocab_size(encoder.vocab_size);
                if grown > 0 {
                    note(&format!(
                        "grew the word embedding of {} by {grown} rows (WikiHop markers) to {}",
                        dir.display(),
                        encoder.vocab_size
                    ));
                }
                let hidden = config.hidden_size;
                Ok((WikiHopModel::new(encoder, hidden, device), config))
            }
        }
    }

    /// The directory of a pretrained model, if any.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            Self::Pretrained(dir) => Some(dir),
            Self::Random(_) => None,
        }
    }
}

/// Adds rows to the word embedding until it has `vocab_size` rows; the new rows are drawn from
/// a normal with the mean and standard deviation of the existing rows (per dimension).
/// Returns the number of rows added.
///
/// On an autodiff device the grown weight is computed from the tracked old one, so it is
/// detached to become a new leaf: Burn cannot make a computed tensor a parameter.
pub fn grow_word_embeddings(
    model: &mut LongformerModel,
    vocab_size: usize,
    device: &Device,
) -> usize {
    let weight = model.embeddings.word_embeddings.weight.val();
    let [rows, d_model] = weight.dims();
    if vocab_size <= rows {
        return 0;
    }
    let added = vocab_size - rows;
    let mean = weight.clone().mean_dim(0);
    let std = weight.clone().var(0).sqrt();
    let fresh =
        Tensor::<2>::random([added, d_model], Distribution::Normal(0.0, 1.0), device) * std + mean;
    model.embeddings.word_embeddings.weight =
        Param::from_tensor(Tensor::cat(vec![weight, fresh], 0).detach());
    model.vocab_size = vocab_size;
    added
}

/// Checks that `tokenizer` fits the model of `config` (read from `config_file`): each of its
/// ids has a row in the word embedding, and it pads with the model's `pad_token_id` (position
/// ids skip that id: a mismatch would number the positions wrongly).
pub fn check_tokenizer(
    tokenizer: &WikiHopTokenizer,
    config: &LongformerConfig,
    config_file: &Path,
) -> Result<()> {
    if tokenizer.vocab_size() > config.vocab_size {
        bail!(
            "the tokenizer {} has {} ids but the model only {} (vocab_size in {})",
            tokenizer.source().display(),
            tokenizer.vocab_size(),
            config.vocab_size,
            config_file.display()
        );
    }
    if tokenizer.pad_id() as usize != config.pad_token_id {
        bail!(
            "the tokenizer {} pads with id {} but the model's pad_token_id is {} ({}): \
             use the model's tokenizer",
            tokenizer.source().display(),
            tokenizer.pad_id(),
            config.pad_token_id,
            config_file.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_embeddings_with_matching_statistics() {
        let device = Device::flex();
        let config = LongformerConfig::tiny(50);
        let mut model = config.init_with_pooler(false, &device);
        let before = model.embeddings.word_embeddings.weight.val();
        assert_eq!(grow_word_embeddings(&mut model, 2050, &device), 2000);
        let after = model.embeddings.word_embeddings.weight.val();
        assert_eq!(after.dims(), [2050, 64]);
        assert_eq!(model.vocab_size, 2050);
        let old = after.clone().slice([0..50, 0..64]);
        assert_eq!(
            old.into_data().try_to_vec_as::<f32>().unwrap(),
            before.clone().into_data().try_to_vec_as::<f32>().unwrap()
        );
        let new = after.slice([50..2050, 0..64]);
        let gap = (new.clone().mean().into_scalar::<f32>()
            - before.clone().mean().into_scalar::<f32>())
        .abs();
        assert!(gap < 0.05, "mean moved by {gap}");
        let ratio = new.var(0).sqrt().mean().into_scalar::<f32>()
            / before.var(0).sqrt().mean().into_scalar::<f32>();
        assert!((0.8..1.25).contains(&ratio), "std ratio {ratio}");
        assert_eq!(grow_word_embeddings(&mut model, 100, &device), 0);
    }

    /// What `train --model` does: the encoder is loaded on the autodiff device, so the old
    /// weight is tracked; the grown one must still be a trainable parameter.
    #[test]
    fn grown_embeddings_train_on_an_autodiff_device() {
        let device = Device::flex().autodiff();
        let config = LongformerConfig::tiny(50);
        let mut model = config.init_with_pooler(false, &device);
        assert_eq!(grow_word_embeddings(&mut model, 54, &device), 4);
        let weight = model.embeddings.word_embeddings.weight.clone();
        assert!(weight.val().is_require_grad());
        let grads = weight.val().square().sum().backward();
        let grad = weight
            .val()
            .grad(&grads)
            .expect("the grown weight gets a gradient");
        assert_eq!(grad.dims(), [54, 64]);
    }
}
