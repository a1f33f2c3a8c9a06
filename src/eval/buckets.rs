//! Bucket sizes of a labeled corpus per depth, with entropy and perplexity (`hermes stats`),
//! and the tokens per bucket when the codes have a `tokens` column (`--count-tokens`).

use std::collections::HashMap;

use serde::Serialize;

/// One non-empty bucket.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Bucket {
    /// The code prefix joined by '.', e.g. `"17.3"`.
    pub label: String,
    pub size: u64,
    /// The sum of the bucket's `tokens` (codes labeled with `--count-tokens`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
}

/// The buckets of one depth, largest first.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DepthBuckets {
    pub depth: usize,
    /// Non-empty buckets.
    pub buckets: usize,
    /// Shannon entropy of the bucket distribution, in bits.
    pub entropy_bits: f64,
    /// 2^entropy: the number of equally sized buckets with the same entropy.
    pub perplexity: f64,
    pub sizes: Vec<Bucket>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BucketReport {
    pub documents: u64,
    /// The sum of every document's `tokens` (codes labeled with `--count-tokens`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// The sha256 of the tokenizer that counted them (from the done markers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_tokenizer: Option<String>,
    pub depths: Vec<DepthBuckets>,
}

/// Counts codes (and sums tokens) per prefix for depths 1..=depth.
pub struct BucketCounter {
    /// Per depth: prefix → (documents, tokens).
    counts: Vec<HashMap<Vec<u16>, (u64, u64)>>,
    documents: u64,
    /// `Some(total)` when tokens are summed.
    tokens: Option<u64>,
}

impl BucketCounter {
    pub fn new(depth: usize) -> Self {
        Self {
            counts: vec![HashMap::new(); depth],
            documents: 0,
            tokens: None,
        }
    }

    /// A counter that also sums each bucket's tokens ([`BucketCounter::add_tokens`]).
    pub fn with_tokens(depth: usize) -> Self {
        Self {
            tokens: Some(0),
            ..Self::new(depth)
        }
    }

    pub fn add(&mut self, code: &[u16]) {
        self.add_tokens(code, 0);
    }

    /// One document of `tokens` tokens.
    pub fn add_tokens(&mut self, code: &[u16], tokens: u32) {
        self.documents += 1;
        if let Some(t) = &mut self.tokens {
            *t += u64::from(tokens);
        }
        for (d, counts) in self.counts.iter_mut().enumerate() {
            let prefix = &code[..(d + 1).min(code.len())];
            match counts.get_mut(prefix) {
                Some((n, t)) => {
                    *n += 1;
                    *t += u64::from(tokens);
                }
                None => {
                    counts.insert(prefix.to_vec(), (1, u64::from(tokens)));
                }
            }
        }
    }

    pub fn report(self) -> BucketReport {
        let total = self.documents as f64;
        let with_tokens = self.tokens.is_some();
        let depths = self
            .counts
            .into_iter()
            .enumerate()
            .map(|(d, counts)| {
                let mut sizes: Vec<Bucket> = counts
                    .into_iter()
                    .map(|(code, (size, tokens))| Bucket {
                        label: code
                            .iter()
                            .map(u16::to_string)
                            .collect::<Vec<_>>()
                            .join("."),
                        size,
                        tokens: with_tokens.then_some(tokens),
                    })
                    .collect();
                sizes.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.label.cmp(&b.label)));
                let entropy_bits: f64 = sizes
                    .iter()
                    .map(|b| {
                        let p = b.size as f64 / total;
                        -p * p.log2()
                    })
                    .sum();
                DepthBuckets {
                    depth: d + 1,
                    buckets: sizes.len(),
                    entropy_bits,
                    perplexity: entropy_bits.exp2(),
                    sizes,
                }
            })
            .collect();
        BucketReport {
            documents: self.documents,
            tokens: self.tokens,
            tokens_tokenizer: None,
            depths,
        }
    }
}

impl BucketReport {
    /// Tidy CSV: one row per bucket, with its depth's summary repeated; a last column
    /// `tokens` when the report has token counts.
    pub fn csv(&self) -> String {
        let tokens = self.tokens.is_some();
        let mut out = String::from("depth,label,size,buckets,entropy_bits,perplexity");
        out.push_str(if tokens { ",tokens\n" } else { "\n" });
        for d in &self.depths {
            for b in &d.sizes {
                out.push_str(&format!(
                    "{},{},{},{},{:.6},{:.6}",
                    d.depth, b.label, b.size, d.buckets, d.entropy_bits, d.perplexity
                ));
                match b.tokens.filter(|_| tokens) {
                    Some(t) => out.push_str(&format!(",{t}\n")),
                    None => out.push('\n'),
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_entropy_and_perplexity() {
        let mut c = BucketCounter::new(2);
        for code in [[1u16, 1], [1, 2], [2, 1], [2, 1]] {
            c.add(&code);
        }
        let r = c.report();
        assert_eq!(r.documents, 4);
        let d1 = &r.depths[0];
        assert_eq!(d1.buckets, 2);
        assert!((d1.entropy_bits - 1.0).abs() < 1e-12);
        assert!((d1.perplexity - 2.0).abs() < 1e-12);
        let d2 = &r.depths[1];
        assert_eq!(d2.buckets, 3);
        assert_eq!(
            d2.sizes[0],
            Bucket {
                label: "2.1".into(),
                size: 2,
                tokens: None
            }
        );
        assert!((d2.entropy_bits - 1.5).abs() < 1e-12);
        assert!(
            r.csv()
                .lines()
                .nth(1)
                .unwrap()
                .starts_with("1,1,2,2,1.000000,2.000000")
        );
    }
}
