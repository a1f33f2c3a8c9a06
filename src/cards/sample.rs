//! Choosing and describing the rows of each bucket: the per-bucket sample and exemplars
//! chosen while the codes are read ([`Sampler`]), then terms by class-based TF-IDF over the
//! samples' texts ([`words`], [`class_tfidf`]) and the cards themselves ([`Sampler::cards`]).

use std::collections::{BTreeMap, BinaryHeap, HashMap};

use unicode_segmentation::UnicodeSegmentation;

use super::{Card, CardConfig, Cards, EXEMPLAR_CHARS, Exemplar, Term};
use crate::quantize::{key_hash, label, pack};
use crate::tier::Tier;

/// Characters of a sampled text counted for its terms (bounds memory per sampled row).
pub const TERM_CHARS: usize = 4000;

/// Where a row is: its codes file (index in the sorted list) and row.
pub type RowRef = (u32, u64);

/// One bucket while the codes are read.
#[derive(Default)]
struct Bucket {
    code: Vec<u16>,
    docs: u64,
    /// The `sample` rows of smallest `hash(seed, id)` (a max-heap: the worst on top).
    sample: BinaryHeap<(u64, RowRef)>,
    /// The `exemplars` rows of smallest `r_d` (bits of a non-negative f32 sort as the value).
    near: BinaryHeap<(u32, u64, RowRef, String)>,
}

/// Chooses each bucket's sample and exemplars in one pass over the codes, with memory
/// bounded by buckets × (sample + exemplars), whatever the corpus size.
pub struct Sampler {
    config: CardConfig,
    index: HashMap<(usize, u128), usize>,
    buckets: Vec<Bucket>,
    docs: u64,
}

impl Sampler {
    pub fn new(config: CardConfig) -> Self {
        Self {
            config,
            index: HashMap::new(),
            buckets: Vec::new(),
            docs: 0,
        }
    }

    /// One row: its full code (at least `depth` levels), `r_1..`, id and place.
    pub fn add(&mut self, code: &[u16], residuals: &[f32], id: &str, at: RowRef) {
        self.docs += 1;
        let hash = key_hash(self.config.seed, id);
        for d in 1..=self.config.depth {
            let prefix = &code[..d];
            let i = *self.index.entry((d, pack(prefix))).or_insert_with(|| {
                self.buckets.push(Bucket {
                    code: prefix.to_vec(),
                    ..Bucket::default()
                });
                self.buckets.len() - 1
            });
            let b = &mut self.buckets[i];
            b.docs += 1;
            if self.config.sample > 0 {
                push_bounded(&mut b.sample, (hash, at), self.config.sample);
            }
            if self.config.exemplars > 0 {
                let r = residuals.get(d - 1).copied().unwrap_or(0.0).max(0.0);
                push_bounded(
                    &mut b.near,
                    (r.to_bits(), hash, at, id.to_string()),
                    self.config.exemplars,
                );
            }
        }
    }

    /// Every row whose text a card needs, by codes file, with the `hash(seed, id)` of the id
    /// the codes hold for it: the scan of the inputs checks each row it joins by that.
    pub fn wanted(&self) -> HashMap<u32, HashMap<u64, u64>> {
        let mut out: HashMap<u32, HashMap<u64, u64>> = HashMap::new();
        for b in &self.buckets {
            for (hash, (f, r)) in &b.sample {
                out.entry(*f).or_default().insert(*r, *hash);
            }
            for (_, hash, (f, r), _) in &b.near {
                out.entry(*f).or_default().insert(*r, *hash);
            }
        }
        out
    }

    /// The seed of the row key the sample is drawn by.
    pub fn seed(&self) -> u64 {
        self.config.seed
    }

    /// The cards, given the texts of the rows [`Sampler::wanted`] named. A wanted row
    /// without a text is an error naming it.
    pub fn cards(
        &self,
        texts: &HashMap<RowRef, String>,
        fingerprint: &str,
        encoder: Tier,
        name: &dyn Fn(u32) -> String,
    ) -> Result<Cards, String> {
        let text = |at: &RowRef| {
            texts.get(at).ok_or_else(|| {
                format!(
                    "no text for row {} of {}: is its input among --input?",
                    at.1,
                    name(at.0)
                )
            })
        };
        let mut order: Vec<usize> = (0..self.buckets.len()).collect();
        order.sort_by(|&a, &b| {
            let (x, y) = (&self.buckets[a], &self.buckets[b]);
            (x.code.len(), &x.code).cmp(&(y.code.len(), &y.code))
        });
        let docs_of: HashMap<&[u16], u64> = self
            .buckets
            .iter()
            .map(|b| (b.code.as_slice(), b.docs))
            .collect();
        let mut terms: HashMap<usize, Vec<Term>> = HashMap::new();
        for d in 1..=self.config.depth {
            let at_d: Vec<usize> = order
                .iter()
                .copied()
                .filter(|&i| self.buckets[i].code.len() == d)
                .collect();
            let mut counts: Vec<HashMap<String, u64>> = Vec::with_capacity(at_d.len());
            for &i in &at_d {
                let mut c = HashMap::new();
                for (_, at) in &self.buckets[i].sample {
                    for w in words(text(at)?) {
                        *c.entry(w).or_insert(0) += 1;
                    }
                }
                counts.push(c);
            }
            for (k, t) in class_tfidf(&counts, self.config.terms)
                .into_iter()
                .enumerate()
            {
                terms.insert(at_d[k], t);
            }
        }
        let mut cards = Vec::with_capacity(order.len());
        for &i in &order {
            let b = &self.buckets[i];
            let d = b.code.len();
            let parent = if d == 1 {
                self.docs
            } else {
                docs_of.get(&b.code[..d - 1]).copied().unwrap_or(self.docs)
            };
            let mut near: Vec<&(u32, u64, RowRef, String)> = b.near.iter().collect();
            near.sort();
            let exemplars = near
                .into_iter()
                .map(|(_, _, at, id)| {
                    Ok(Exemplar {
                        id: id.clone(),
                        text: text(at)?.chars().take(EXEMPLAR_CHARS).collect(),
                    })
                })
                .collect::<Result<_, String>>()?;
            let children = if d < self.config.depth {
                order
                    .iter()
                    .map(|&j| &self.buckets[j])
                    .filter(|c| c.code.len() == d + 1 && c.code[..d] == b.code[..])
                    .map(|c| label(&c.code))
                    .collect()
            } else {
                Vec::new()
            };
            cards.push(Card {
                label: label(&b.code),
                depth: d,
                docs: b.docs,
                share: b.docs as f64 / self.docs.max(1) as f64,
                share_of_parent: b.docs as f64 / parent.max(1) as f64,
                terms: terms.remove(&i).unwrap_or_default(),
                exemplars,
                children,
            });
        }
        Ok(Cards {
            fingerprint: fingerprint.to_string(),
            encoder,
            docs: self.docs,
            cards,
        })
    }
}

/// Keeps the `cap` smallest items of a max-heap.
fn push_bounded<T: Ord>(heap: &mut BinaryHeap<T>, item: T, cap: usize) {
    if heap.len() < cap {
        heap.push(item);
    } else if heap.peek().is_some_and(|top| &item < top) {
        heap.pop();
        heap.push(item);
    }
}

/// Function words of English, dropped from terms. Chosen by hand rather than taken from a
/// large list: a term list for topics should lose grammar, not content, and the long lists in
/// use (scikit-learn's 318 words, whose own documentation warns of known issues) drop content
/// words such as "computer", "system", "fire" or "bill".
pub const STOP_WORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "all",
    "also",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "doing",
    "down",
    "during",
    "each",
    "either",
    "etc",
    "few",
    "for",
    "from",
    "further",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "however",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "may",
    "me",
    "might",
    "more",
    "most",
    "much",
    "must",
    "my",
    "myself",
    "nd",
    "neither",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "on",
    "once",
    "one",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "rd",
    "s",
    "same",
    "she",
    "should",
    "since",
    "so",
    "some",
    "st",
    "such",
    "t",
    "th",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "though",
    "through",
    "thus",
    "to",
    "too",
    "under",
    "until",
    "up",
    "upon",
    "us",
    "very",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "whether",
    "which",
    "while",
    "who",
    "whom",
    "whose",
    "why",
    "will",
    "with",
    "within",
    "without",
    "would",
    "yet",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
];

/// A text's terms: lower-cased Unicode words (UAX #29), without numbers (any word holding a
/// digit), single characters and stop words.
pub fn words(text: &str) -> Vec<String> {
    let cut: String = text.chars().take(TERM_CHARS).collect();
    cut.unicode_words()
        .map(str::to_lowercase)
        .filter(|w| {
            w.chars().count() > 1
                && !w.chars().any(|c| c.is_numeric())
                && STOP_WORDS.binary_search(&w.as_str()).is_err()
        })
        .collect()
}

/// Class-based TF-IDF over buckets (BERTopic's): `tf(t, b) · ln(1 + A / f(t))` with `tf` the
/// term's frequency in b (its count over b's words), `f(t)` its count over all buckets and `A`
/// the mean number of words per bucket. Only terms more frequent in b than in all of them
/// (lift > 1) are candidates; the top `k` by score (ties: the term) per bucket.
pub fn class_tfidf(counts: &[HashMap<String, u64>], k: usize) -> Vec<Vec<Term>> {
    let mut f: HashMap<&str, u64> = HashMap::new();
    let mut words_in = Vec::with_capacity(counts.len());
    for c in counts {
        let mut n = 0;
        for (t, &x) in c {
            *f.entry(t.as_str()).or_insert(0) += x;
            n += x;
        }
        words_in.push(n);
    }
    let total: u64 = words_in.iter().sum();
    let mean = total as f64 / counts.len().max(1) as f64;
    counts
        .iter()
        .zip(&words_in)
        .map(|(c, &n)| {
            let mut scored: BTreeMap<(std::cmp::Reverse<u64>, &str), f64> = BTreeMap::new();
            for (t, &x) in c {
                let ft = f[t.as_str()];
                let tf = x as f64 / n.max(1) as f64;
                let corpus = ft as f64 / total.max(1) as f64;
                if tf <= corpus {
                    continue;
                }
                let score = tf * (1.0 + mean / ft as f64).ln();
                // Keyed by the score's bits (non-negative: they sort as the value), then term.
                scored.insert((std::cmp::Reverse(score.to_bits()), t.as_str()), score);
            }
            scored
                .into_iter()
                .take(k)
                .map(|((_, t), score)| Term {
                    term: t.to_string(),
                    score: (score * 1e6).round() / 1e6,
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stop_words_are_sorted_for_binary_search() {
        let mut sorted = STOP_WORDS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, STOP_WORDS);
    }

    #[test]
    fn words_drop_numbers_and_function_words() {
        assert_eq!(
            words("The Symphony No. 9 of 1824, and the Symphonies' “finale”!"),
            ["symphony", "symphonies", "finale"]
        );
        assert_eq!(
            words("Café au lait in Zürich 2020s"),
            ["café", "au", "lait", "zürich"]
        );
    }

    #[test]
    fn distinctive_terms_rank_first_and_common_ones_never_appear() {
        let bucket = |pairs: &[(&str, u64)]| {
            pairs
                .iter()
                .map(|(t, n)| (t.to_string(), *n))
                .collect::<HashMap<_, _>>()
        };
        let counts = vec![
            bucket(&[("music", 10), ("river", 1), ("common", 5)]),
            bucket(&[("river", 10), ("music", 1), ("common", 5)]),
        ];
        let t = class_tfidf(&counts, 5);
        assert_eq!(t[0][0].term, "music");
        assert_eq!(t[1][0].term, "river");
        // "common" is as frequent in each bucket as overall: lift 1, not a term.
        assert!(t.iter().flatten().all(|x| x.term != "common"));
    }
}
