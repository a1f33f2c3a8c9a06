//! Bucket cards (docs/cards.md): what each bucket of the code space holds, as `cards.json`
//! stores it: shares, distinctive terms, exemplars and sub-buckets ([`Card`], [`Cards`]),
//! and how many of each a card gets ([`CardConfig`]). [`sample`] chooses the rows and scores
//! the terms; [`atlas`] renders the cards as one page. Written by `hermes describe` over a
//! labeled corpus and by `hermes fit` into the bundle; served by the API.

pub mod atlas;
pub mod sample;

use serde::{Deserialize, Serialize};

use crate::tier::Tier;

pub use sample::{RowRef, STOP_WORDS, Sampler, TERM_CHARS, class_tfidf, words};

/// Characters of an exemplar's text on its card.
pub const EXEMPLAR_CHARS: usize = 300;

/// One term of a card, with its c-TF-IDF score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Term {
    pub term: String,
    pub score: f64,
}

/// A document shown on a card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Exemplar {
    pub id: String,
    /// The first 300 characters of its text.
    pub text: String,
}

/// What one bucket holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"label": "17", "depth": 1, "docs": 163, "share": 0.0162,
    "share_of_parent": 0.0162, "terms": [{"term": "symphony", "score": 0.0123}],
    "exemplars": [{"id": "4711", "text": "A symphony is an extended musical composition…"}],
    "children": ["17.3", "17.40"]}))]
pub struct Card {
    pub label: String,
    pub depth: usize,
    pub docs: u64,
    /// Of the whole corpus.
    pub share: f64,
    /// Of the parent bucket (at depth 1, of the corpus).
    pub share_of_parent: f64,
    /// Most distinctive terms first.
    pub terms: Vec<Term>,
    /// The documents nearest the bucket's centre (smallest `r_d`).
    pub exemplars: Vec<Exemplar>,
    /// Labels of its non-empty sub-buckets (empty at the deepest depth described).
    pub children: Vec<String>,
}

/// `cards.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cards {
    pub fingerprint: String,
    pub encoder: Tier,
    pub docs: u64,
    pub cards: Vec<Card>,
}

impl Cards {
    pub fn at_depth(&self, depth: usize) -> impl Iterator<Item = &Card> {
        self.cards.iter().filter(move |c| c.depth == depth)
    }

    pub fn get(&self, label: &str) -> Option<&Card> {
        self.cards.iter().find(|c| c.label == label)
    }

    pub fn depth(&self) -> usize {
        self.cards.iter().map(|c| c.depth).max().unwrap_or(0)
    }
}

/// How many of what each card gets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CardConfig {
    /// Cards for depths 1..=depth.
    pub depth: usize,
    /// Rows per bucket whose texts are read for its terms.
    pub sample: usize,
    pub terms: usize,
    pub exemplars: usize,
    pub seed: u64,
}
