//! A deterministic synthetic multi-hop set in the exact WikiHop JSON format, and a small
//! byte-level BPE tokenizer for it.
//!
//! Each example hides a two-hop chain among distractor chains of the same shape:
//!
//! ```text
//! query:      country_of_citizenship tomar velik
//! supports:   "tomar velik was born in kessa."   (hop 1: person → city)
//!             "kessa is a city in oskavia."      (hop 2: city → country)
//!             "dorin stael grew up in brinmoor." "brinmoor lies in belmoria." ...
//! candidates: every country of every chain (all appear in the supports)
//! ```
//!
//! City→country links are drawn per example, so they cannot be memorized: the answer
//! needs both documents. The same seed always gives the same files (see [`crate::rng`]).

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper,
    Tokenizer, TokenizerBuilder,
};

use crate::error::DataError;
use crate::rng::SplitMix64;
use crate::wikihop::{WikiHopRecord, normalize_entity, normalize_query, normalize_text};

/// Seed of the name pools, fixed so that every split shares one vocabulary.
const POOL_SEED: u64 = 0x05ee_d0f4_a3e5;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleConfig {
    /// Split name used in ids: `WH_{split}_{i}`.
    pub split: String,
    /// Seed of this split.
    pub seed: u64,
    /// Number of records.
    pub examples: usize,
    /// Fewest candidates (chains) per example, at least 2.
    pub min_candidates: usize,
    /// Most candidates per example.
    pub max_candidates: usize,
    /// Filler sentences per example, spread over its documents: uniform in `0..=max_filler`.
    pub max_filler: usize,
    /// Extra documents that mention a candidate country without a chain: `0..=noise_documents`.
    pub noise_documents: usize,
}

impl SampleConfig {
    /// The committed training split: 3,000 examples of 2–8 candidates, well under 300 tokens.
    pub fn train() -> Self {
        Self {
            split: "train".into(),
            seed: 1,
            examples: 3000,
            min_candidates: 2,
            max_candidates: 8,
            max_filler: 8,
            noise_documents: 1,
        }
    }

    /// The committed dev split: 300 examples, another seed.
    pub fn dev() -> Self {
        Self {
            split: "dev".into(),
            seed: 2,
            examples: 300,
            ..Self::train()
        }
    }
}

/// The entity names every split draws from.
struct Pools {
    first_names: Vec<String>,
    last_names: Vec<String>,
    cities: Vec<String>,
    countries: Vec<String>,
}

const ONSETS: [&str; 20] = [
    "b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "st",
    "tr", "sh",
];
const VOWELS: [&str; 7] = ["a", "e", "i", "o", "u", "ai", "ou"];
const CODAS: [&str; 7] = ["", "", "n", "r", "s", "l", "k"];

impl Pools {
    fn new() -> Self {
        let mut rng = SplitMix64::new(POOL_SEED);
        let mut used = HashSet::new();
        let mut pool =
            |n: usize, syllables: (usize, usize), suffixes: &[&'static str]| -> Vec<String> {
                let mut names = Vec::with_capacity(n);
                while names.len() < n {
                    let count = rng.between(syllables.0, syllables.1);
                    let mut name: String = (0..count)
                        .map(|_| format!("{}{}", rng.choose(&ONSETS), rng.choose(&VOWELS)))
                        .collect();
                    name.push_str(pick(&mut rng, &CODAS));
                    name.push_str(pick(&mut rng, suffixes));
                    if used.insert(name.clone()) {
                        names.push(name);
                    }
                }
                names
            };
        Self {
            first_names: pool(120, (2, 2), &[""]),
            last_names: pool(160, (2, 3), &[""]),
            cities: pool(400, (2, 2), &["", "", "burg", "ford", "ton", "moor"]),
            countries: pool(60, (2, 2), &["ia", "land", "stan", "ora"]),
        }
    }
}

const BORN: [&str; 4] = [
    "{p} was born in {c}.",
    "{p} was born in the town of {c}.",
    "{p} grew up in {c}.",
    "{p} is a {job} from {c}.",
];
const LOCATED: [&str; 4] = [
    "{c} is a city in {k}.",
    "{c} is a town in the north of {k}.",
    "{c} lies in {k}.",
    "{c} is the capital of a province of {k}.",
];
const PERSON_FILLER: [&str; 4] = [
    "{p} worked as a {job}.",
    "{p} wrote {n} books.",
    "{p} married in {year}.",
    "{p} died in {year}.",
];
const CITY_FILLER: [&str; 4] = [
    "{c} has a large {thing}.",
    "the population of {c} is about {n} thousand.",
    "{c} was founded in {year}.",
    "{c} is known for its {thing}.",
];
const NOISE: [&str; 3] = [
    "{k} is known for its {thing}.",
    "the flag of {k} is {colour}.",
    "{k} joined the union in {year}.",
];
const JOBS: [&str; 6] = ["painter", "writer", "singer", "farmer", "doctor", "sailor"];
const THINGS: [&str; 6] = ["river", "market", "castle", "harbour", "bridge", "library"];
const COLOURS: [&str; 4] = ["red and white", "blue", "green and gold", "black"];

/// One of `items`.
fn pick(rng: &mut SplitMix64, items: &[&'static str]) -> &'static str {
    items[rng.below(items.len())]
}

/// Fills a template's `{p} {c} {k} {job} {thing} {colour} {n} {year}` slots.
fn fill(rng: &mut SplitMix64, template: &str, p: &str, c: &str, k: &str) -> String {
    template
        .replace("{p}", p)
        .replace("{c}", c)
        .replace("{k}", k)
        .replace("{job}", pick(rng, &JOBS))
        .replace("{thing}", pick(rng, &THINGS))
        .replace("{colour}", pick(rng, &COLOURS))
        .replace("{n}", &rng.between(2, 90).to_string())
        .replace("{year}", &rng.between(1700, 1990).to_string())
}

/// `n` distinct items of `pool`.
fn distinct<'a>(rng: &mut SplitMix64, pool: &'a [String], n: usize) -> Vec<&'a str> {
    let mut picked: Vec<&str> = Vec::with_capacity(n);
    while picked.len() < n {
        let item = rng.choose(pool).as_str();
        if !picked.contains(&item) {
            picked.push(item);
        }
    }
    picked
}

/// Generates `config.examples` records.
///
/// # Panics
/// If `min_candidates < 2` or `min_candidates > max_candidates` or `max_candidates > 60`.
pub fn generate(config: &SampleConfig) -> Vec<WikiHopRecord> {
    assert!(
        2 <= config.min_candidates
            && config.min_candidates <= config.max_candidates
            && config.max_candidates <= 60,
        "SampleConfig: need 2 <= min_candidates <= max_candidates <= 60"
    );
    let pools = Pools::new();
    (0..config.examples)
        .map(|i| example(&pools, config, format!("WH_{}_{i}", config.split)))
        .collect()
}

fn example(pools: &Pools, config: &SampleConfig, id: String) -> WikiHopRecord {
    let mut rng = SplitMix64::for_key(config.seed, &id);
    let k = rng.between(config.min_candidates, config.max_candidates);
    let countries = distinct(&mut rng, &pools.countries, k);
    let cities = distinct(&mut rng, &pools.cities, k);
    let firsts = distinct(&mut rng, &pools.first_names, k);
    let lasts = distinct(&mut rng, &pools.last_names, k);
    let people: Vec<String> = firsts
        .iter()
        .zip(&lasts)
        .map(|(f, l)| format!("{f} {l}"))
        .collect();

    // Documents 2i (person i → city i) and 2i + 1 (city i → country i).
    let mut supports = Vec::with_capacity(2 * k + config.noise_documents);
    for chain in 0..k {
        let (p, c, country) = (people[chain].as_str(), cities[chain], countries[chain]);
        let template = *rng.choose(&BORN);
        supports.push(fill(&mut rng, template, p, c, country));
        let template = *rng.choose(&LOCATED);
        supports.push(fill(&mut rng, template, p, c, country));
    }
    // Filler sentences about the document's own person or city, spread over the chains.
    for _ in 0..rng.between(0, config.max_filler) {
        let doc = rng.below(2 * k);
        let chain = doc / 2;
        let (p, c, country) = (people[chain].as_str(), cities[chain], countries[chain]);
        let templates: &[&str] = if doc.is_multiple_of(2) {
            &PERSON_FILLER
        } else {
            &CITY_FILLER
        };
        let template = *rng.choose(templates);
        let sentence = fill(&mut rng, template, p, c, country);
        supports[doc].push(' ');
        supports[doc].push_str(&sentence);
    }
    for _ in 0..rng.between(0, config.noise_documents) {
        let country = *rng.choose(&countries);
        let template = *rng.choose(&NOISE);
        supports.push(fill(&mut rng, template, "", "", country));
    }
    rng.shuffle(&mut supports);
    let answer = countries[0].to_owned();
    let mut candidates: Vec<String> = countries.iter().map(|c| c.to_string()).collect();
    rng.shuffle(&mut candidates);
    WikiHopRecord {
        id,
        query: format!("country_of_citizenship {}", people[0]),
        answer,
        candidates,
        supports,
        annotations: None,
    }
}

/// Writes records as a WikiHop JSON array, one record per line.
pub fn write_records(records: &[WikiHopRecord], path: &Path) -> Result<(), DataError> {
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut out = crate::pipeline::create_output(path)?;
    writeln!(out, "[").map_err(io)?;
    for (i, record) in records.iter().enumerate() {
        let line = serde_json::to_string(record).expect("records serialize");
        let comma = if i + 1 < records.len() { "," } else { "" };
        writeln!(out, "{line}{comma}").map_err(io)?;
    }
    writeln!(out, "]").map_err(io)?;
    out.flush().map_err(io)
}

/// Trains a RoBERTa-style byte-level BPE (`<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3,
/// `<mask>`=4) of `vocab_size` tokens on the normalized text of `records`. The WikiHop
/// markers are not included: [`crate::WikiHopTokenizer`] adds them, as for RoBERTa.
pub fn train_tokenizer(
    records: &[WikiHopRecord],
    vocab_size: usize,
) -> Result<Tokenizer, DataError> {
    let failed = |e: tokenizers::Error| DataError::Tokenizer {
        path: "<training>".into(),
        reason: e.to_string(),
    };
    let specials: Vec<AddedToken> = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        .iter()
        .map(|t| AddedToken::from(*t, true))
        .collect();
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(specials)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut tokenizer = TokenizerBuilder::<
        BPE,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    >::new()
    .with_model(BPE::default())
    .with_pre_tokenizer(Some(ByteLevel::new(true, true, true).into()))
    .with_decoder(Some(ByteLevel::new(true, true, true).into()))
    .with_post_processor(Some(
        RobertaProcessing::new(("</s>".into(), 2), ("<s>".into(), 0)).into(),
    ))
    .build()
    .map_err(failed)?;
    let texts: Vec<String> = records
        .iter()
        .flat_map(|r| {
            std::iter::once(normalize_query(&r.query))
                .chain(r.candidates.iter().map(|c| normalize_entity(c)))
                .chain(r.supports.iter().map(|s| normalize_text(s)))
        })
        .collect();
    tokenizer
        .train(&mut trainer, texts.iter())
        .map_err(failed)?;
    Ok(Tokenizer::from(tokenizer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wikihop::check_record;

    fn small(seed: u64) -> SampleConfig {
        SampleConfig {
            split: "t".into(),
            seed,
            examples: 50,
            ..SampleConfig::train()
        }
    }

    #[test]
    fn generation_is_deterministic() {
        assert_eq!(generate(&small(5)), generate(&small(5)));
        assert_ne!(generate(&small(5)), generate(&small(6)));
    }

    #[test]
    fn records_are_valid_two_hop_wikihop_records() {
        for record in generate(&small(9)) {
            let value = serde_json::to_value(&record).unwrap();
            let example = check_record(&value, 0).unwrap();
            assert!((2..=8).contains(&example.candidates.len()));
            let person = record
                .query
                .strip_prefix("country_of_citizenship ")
                .unwrap();
            // Hop 1: the one document naming the person gives a city.
            let with_person: Vec<&String> = record
                .supports
                .iter()
                .filter(|s| s.contains(person))
                .collect();
            assert_eq!(with_person.len(), 1, "{record:?}");
            assert!(!with_person[0].contains(&record.answer), "{record:?}");
            // Every candidate appears in the supports.
            for candidate in &record.candidates {
                assert!(
                    record
                        .supports
                        .iter()
                        .any(|s| s.contains(candidate.as_str()))
                );
            }
        }
    }
}
