//! Which keys a token's sliding window covers: the one-sided window `w`, the dilation of each
//! head, and whether the window is causal (autoregressive).
//!
//! A head with window `w` and dilation `d` lets query `i` see keys `i + k·d` for `-w <= k <= w`
//! (`0 <= k <= w` backwards only, `i - k·d`, when causal). Global attention is the same in every
//! pattern. HF transformers has neither dilation nor causal windows; the original allenai
//! `LongformerConfig` has both (`attention_dilation`, `autoregressive`), in a CUDA-only kernel.
//!
//! Dilation is computed without any `n × n` or `n × 2wd` tensor: the tokens of a sequence split
//! into `d` interleaved sub-sequences (positions `r, r + d, r + 2d, ...`), and a dilated window
//! over the sequence is an ordinary window over each sub-sequence.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The dilation of every layer, as the original `LongformerConfig`'s `attention_dilation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttentionDilation {
    /// The same dilation in every layer and head (a bare integer in JSON; `1` = no dilation).
    Uniform(usize),
    /// One dilation per layer (a list of integers).
    PerLayer(Vec<usize>),
    /// One dilation per layer and head (a list of lists, `[num_hidden_layers][num_attention_heads]`).
    PerHead(Vec<Vec<usize>>),
}

impl Default for AttentionDilation {
    fn default() -> Self {
        Self::Uniform(1)
    }
}

impl AttentionDilation {
    /// The dilation of every head of `layer`, `n_heads` entries.
    ///
    /// # Panics
    /// If the lists are shorter than `layer` or `n_heads` (a config that
    /// [`LongformerConfig::validate`](crate::LongformerConfig::validate) accepted never is).
    pub fn heads(&self, layer: usize, n_heads: usize) -> Vec<usize> {
        match self {
            Self::Uniform(d) => vec![*d; n_heads],
            Self::PerLayer(ds) => vec![ds[layer]; n_heads],
            Self::PerHead(ds) => ds[layer].clone(),
        }
    }

    /// Whether every head of every layer has dilation 1.
    pub fn is_none(&self) -> bool {
        match self {
            Self::Uniform(d) => *d == 1,
            Self::PerLayer(ds) => ds.iter().all(|d| *d == 1),
            Self::PerHead(ds) => ds.iter().flatten().all(|d| *d == 1),
        }
    }

    /// Checks the shape against the model and that every dilation is positive.
    pub fn validate(&self, n_layers: usize, n_heads: usize) -> Result<(), String> {
        match self {
            Self::Uniform(_) => {}
            Self::PerLayer(ds) if ds.len() != n_layers => {
                return Err(format!(
                    "attention_dilation has {} entries but num_hidden_layers is {n_layers}",
                    ds.len()
                ));
            }
            Self::PerLayer(_) => {}
            Self::PerHead(ds) => {
                if ds.len() != n_layers {
                    return Err(format!(
                        "attention_dilation has {} layers but num_hidden_layers is {n_layers}",
                        ds.len()
                    ));
                }
                if let Some((layer, heads)) =
                    ds.iter().enumerate().find(|(_, h)| h.len() != n_heads)
                {
                    return Err(format!(
                        "attention_dilation for layer {layer} has {} heads but num_attention_heads is {n_heads}",
                        heads.len()
                    ));
                }
            }
        }
        for layer in 0..n_layers {
            if let Some(head) = self.heads(layer, n_heads).iter().position(|d| *d == 0) {
                return Err(format!(
                    "attention_dilation for layer {layer}, head {head} is 0; it must be positive"
                ));
            }
        }
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum RawDilation {
    One(usize),
    PerLayer(Vec<usize>),
    PerHead(Vec<Vec<usize>>),
}

impl Serialize for AttentionDilation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Uniform(d) => RawDilation::One(*d),
            Self::PerLayer(ds) => RawDilation::PerLayer(ds.clone()),
            Self::PerHead(ds) => RawDilation::PerHead(ds.clone()),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for AttentionDilation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match RawDilation::deserialize(d)? {
            RawDilation::One(d) => Self::Uniform(d),
            RawDilation::PerLayer(ds) => Self::PerLayer(ds),
            RawDilation::PerHead(ds) => Self::PerHead(ds),
        })
    }
}

/// The window pattern of one layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowPattern {
    /// Dilation of each head (`n_heads` entries, each `>= 1`).
    pub dilation: Vec<usize>,
    /// Causal: a token sees itself and the `w` window positions before it, none after.
    pub causal: bool,
}

impl WindowPattern {
    /// The plain sliding window of HF transformers: no dilation, both sides.
    pub fn dense(n_heads: usize) -> Self {
        Self {
            dilation: vec![1; n_heads],
            causal: false,
        }
    }

    /// Heads grouped by dilation, in order of first appearance: `(dilation, head indices)`.
    pub fn head_groups(&self) -> Vec<(usize, Vec<usize>)> {
        let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
        for (head, &d) in self.dilation.iter().enumerate() {
            match groups.iter_mut().find(|(gd, _)| *gd == d) {
                Some((_, heads)) => heads.push(head),
                None => groups.push((d, vec![head])),
            }
        }
        groups
    }

    /// Whether query `i` sees key `j` through the window of a head with dilation `d` and one-sided
    /// window `w` (positions only; padding and global tokens are the masks' business).
    pub fn sees(&self, d: usize, w: usize, i: usize, j: usize) -> bool {
        let (i, j) = (i as isize, j as isize);
        let offset = j - i;
        let d = d as isize;
        offset % d == 0 && (offset / d).abs() <= w as isize && !(self.causal && offset > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dilation_reads_all_three_json_forms() {
        let one: AttentionDilation = serde_json::from_str("2").unwrap();
        assert_eq!(one.heads(1, 3), vec![2, 2, 2]);
        let layers: AttentionDilation = serde_json::from_str("[1, 4]").unwrap();
        assert_eq!(layers.heads(1, 2), vec![4, 4]);
        let heads: AttentionDilation = serde_json::from_str("[[1, 2], [3, 1]]").unwrap();
        assert_eq!(heads.heads(1, 2), vec![3, 1]);
        assert_eq!(serde_json::to_string(&heads).unwrap(), "[[1,2],[3,1]]");
        assert!(AttentionDilation::PerLayer(vec![1, 1]).is_none());
        assert!(!heads.is_none());
    }

    #[test]
    fn bad_dilations_are_named() {
        let zero = AttentionDilation::PerHead(vec![vec![1, 0]]);
        assert!(
            zero.validate(1, 2)
                .unwrap_err()
                .contains("layer 0, head 1 is 0")
        );
        let short = AttentionDilation::PerHead(vec![vec![1]]);
        assert!(short.validate(1, 2).unwrap_err().contains("has 1 heads"));
        let layers = AttentionDilation::PerLayer(vec![1]);
        assert!(layers.validate(2, 2).unwrap_err().contains("1 entries"));
    }

    #[test]
    fn heads_group_by_dilation_in_order() {
        let pattern = WindowPattern {
            dilation: vec![2, 1, 2, 3],
            causal: false,
        };
        assert_eq!(
            pattern.head_groups(),
            vec![(2, vec![0, 2]), (1, vec![1]), (3, vec![3])]
        );
    }

    #[test]
    fn window_membership() {
        let both = WindowPattern::dense(1);
        assert!(both.sees(1, 2, 5, 3) && both.sees(1, 2, 5, 7) && !both.sees(1, 2, 5, 8));
        assert!(both.sees(3, 2, 5, 11) && !both.sees(3, 2, 5, 10) && !both.sees(3, 2, 5, 14));
        let causal = WindowPattern {
            dilation: vec![2],
            causal: true,
        };
        assert!(causal.sees(2, 2, 5, 5) && causal.sees(2, 2, 5, 1) && !causal.sees(2, 2, 5, 7));
    }
}
