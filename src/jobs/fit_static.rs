//! The static tier's token table (`hermes fit --static`), fitted on the same sample as the
//! codebooks (see `fit::static_fit` for the method), judged on a held-out tenth of it by a
//! table fitted without that tenth, then fitted again on the whole sample and added to the
//! bundle. The fit job calls it and it imports nothing of the fit job: its failures are
//! its own [`StaticFitError`], which the fit job folds into its error.

use std::path::Path;
use std::sync::Arc;

use rayon::prelude::*;
use serde_json::json;

use crate::bundle::manifest::StaticEntry;
use crate::bundle::{BundleError, add_static_tier};
use crate::encoder::static_table::table_bytes;
use crate::encoder::{Embedder, EncoderError, StaticEncoder, TokenizedText, Tokenizer};
use crate::fit::static_fit::{BagOfTokens, ridge, transferred_prior, vocabulary_pass};
use crate::quantize::{CodeSpace, QuantizeError};

/// Fewer documents than this cannot pin down a table of ~30k rows.
pub const MIN_DOCS: usize = 1000;
pub const FILE: &str = "static.safetensors";
/// Ridge strength of the prior's map `W` towards the identity (in units of documents).
/// Measured on the even/odd wiki split, L1 agreement / topic AMI (MiniLM: 0.469), λ = 0.01:
/// μ = 10 → 0.765 / 0.460, 1 → 0.785 / 0.459, 0.3 → 0.799 / 0.457, 0.1 → 0.806 / 0.455,
/// 0.05 → 0.806 / 0.453, 0.03 → 0.808 / 0.451, 0.01 → 0.809 / 0.452.
const PRIOR_MU: f64 = 0.05;

/// Why the table could not be fitted or written.
#[derive(Debug, thiserror::Error)]
pub enum StaticFitError {
    /// The corpus or the tokenizer cannot work; the message names it.
    #[error("{0}")]
    Args(String),
    #[error(transparent)]
    Encoder(#[from] EncoderError),
    #[error(transparent)]
    Quantize(#[from] QuantizeError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

/// How the table is fitted (`--static-*` flags; `seed` is the fit's).
#[derive(Debug, Clone, PartialEq)]
pub struct StaticFit {
    pub seed: u64,
    /// Ridge strength λ pulling the table towards the vocabulary pass.
    pub lambda: f32,
    /// Conjugate-gradient iterations.
    pub iterations: usize,
    /// Tokens per text for the static tier.
    pub max_tokens: usize,
}

/// Whether document `i` is held out (about one in ten, fixed by the seed).
fn held_out(seed: u64, i: usize) -> bool {
    // splitmix64 of seed ⊕ index.
    let mut z = seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)).is_multiple_of(10)
}

/// Fits the table on `texts` with the teacher's embeddings `e` (`[n, dim]`), measures it on
/// the held-out documents in `space`, and writes it into the bundle at `out`.
pub fn fit_static(
    args: &StaticFit,
    input: &Path,
    out: &Path,
    teacher: &Arc<dyn Embedder>,
    texts: &[&str],
    e: &[f32],
    space: &CodeSpace,
) -> Result<StaticEntry, StaticFitError> {
    let n = texts.len();
    if n < MIN_DOCS {
        return Err(StaticFitError::Args(format!(
            "--static needs at least {MIN_DOCS} documents to fit a token table; {} has {n}",
            input.display()
        )));
    }
    let dim = teacher.dim();
    let tokenizer = Tokenizer::from_file(&out.join("tokenizer.json"), args.max_tokens)?;
    let vocab = tokenizer.vocab_size();
    let special = |t: &str| {
        tokenizer
            .token_id(t)
            .ok_or_else(|| StaticFitError::Args(format!("tokenizer.json has no {t} token")))
    };
    let (cls, sep) = (special("[CLS]")?, special("[SEP]")?);
    let (fit_idx, test_idx): (Vec<usize>, Vec<usize>) =
        (0..n).partition(|&i| !held_out(args.seed, i));
    let bar = super::progress_bar(vocab as u64, "vocabulary pass");
    let t0 = vocabulary_pass(teacher.as_ref(), vocab, cls, sep, |k| {
        bar.set_position(k as u64)
    })?;
    bar.finish();
    let started = std::time::Instant::now();
    let fit_on = |idx: &[usize]| -> Result<Vec<f32>, StaticFitError> {
        let tokens: Vec<TokenizedText> = idx
            .par_iter()
            .map(|&i| tokenizer.encode(texts[i], false))
            .collect::<Result<_, EncoderError>>()?;
        let a = BagOfTokens::new(&tokens, vocab);
        let e_fit: Vec<f32> = idx
            .iter()
            .flat_map(|&i| e[i * dim..(i + 1) * dim].iter().copied())
            .collect();
        let bar = super::progress_bar(args.iterations as u64, "conjugate gradients");
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "conjugate gradients {bar:40} {pos}/{len} iterations  ETA {eta}",
            )
            .expect("static template"),
        );
        let prior = transferred_prior(&a, &e_fit, &t0, dim, PRIOR_MU);
        let table = ridge(&a, &e_fit, &prior, dim, args.lambda, args.iterations, |k| {
            bar.set_position(k as u64)
        });
        bar.finish();
        Ok(table)
    };
    // Measured on a table that never saw the held-out documents...
    let table = fit_on(&fit_idx)?;
    // Held-out agreement with the teacher, through the bundle's own code space.
    let student = StaticEncoder::new(tokenizer.clone(), table, dim);
    let held: Vec<&str> = test_idx.iter().map(|&i| texts[i]).collect();
    let s = student.embed(&held)?.vectors;
    let t: Vec<f32> = test_idx
        .iter()
        .flat_map(|&i| e[i * dim..(i + 1) * dim].iter().copied())
        .collect();
    let cosine = s
        .chunks_exact(dim)
        .zip(t.chunks_exact(dim))
        .map(|(a, b)| {
            let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
            let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
            f64::from(dot / (na * nb).max(1e-12))
        })
        .sum::<f64>()
        / test_idx.len().max(1) as f64;
    let (cs, ct) = (space.codes(&s)?, space.codes(&t)?);
    let agree = |depth: usize| {
        cs.iter()
            .zip(&ct)
            .filter(|(a, b)| a.0[..depth] == b.0[..depth])
            .count() as f64
            / cs.len().max(1) as f64
    };
    let (l1, l12) = (agree(1), agree(2.min(space.levels().len())));
    tracing::info!(
        "static tier: {} documents fitted, {} held out: mean cosine {cosine:.3}, L1 agreement {l1:.3}, L12 agreement {l12:.3}",
        fit_idx.len(),
        test_idx.len()
    );
    // ...then the table shipped is fitted on every document of the sample.
    let all: Vec<usize> = (0..n).collect();
    let table = fit_on(&all)?;
    let seconds = started.elapsed().as_secs_f64();
    let bytes = table_bytes(&table, vocab, dim);
    let entry = StaticEntry {
        file: FILE.into(),
        sha256: String::new(),
        vocab,
        dim,
        max_tokens: args.max_tokens,
        fit: json!({
            "method": "vocabulary pass T0 = minilm([CLS] t [SEP]); prior T0·W with W a linear map from mean-pooled T0 to the teacher's embeddings; ridge towards the prior onto the teacher's embeddings by conjugate gradients",
            "prior_mu": PRIOR_MU,
            "lambda": (f64::from(args.lambda) * 1e9).round() / 1e9,
            "iterations": args.iterations,
            "n_docs": n,
            "seed": args.seed,
            "seconds": (seconds * 10.0).round() / 10.0,
            "held_out": {
                "docs": test_idx.len(),
                "fitted_without_them": fit_idx.len(),
                "mean_cosine": cosine,
                "agreement_l1": l1,
                "agreement_l12": l12,
            },
        }),
    };
    Ok(add_static_tier(out, &bytes, entry)?)
}
