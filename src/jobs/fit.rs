//! The fit job: corpus → embeddings → transform + codebooks (and, with `static_tier`, the
//! static table) → a bundle directory, verified by loading it as `serve` will. Every argument
//! is checked before the corpus is read or embedded.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::fit_static::{StaticFit, StaticFitError, fit_static};
use crate::batch::BatchError;
use crate::bundle::{
    BundleError, FitInfo, LoadOptions, Manifest, Model, NewBundle, Probe, RuntimeConfig,
    write_bundle,
};
use crate::corpus::{CorpusError, read_jsonl, read_npy, write_npy};
use crate::encoder::{Embedder, EncoderError, MiniLm};
use crate::fit::pca::TransformConfig;
use crate::fit::{FitConfig, FitError, Fitted, fit};
use crate::labeling::open;
use crate::quantize::{Code, CodeSpace, QuantizeError};

/// What to fit and how (`hermes fit`'s flags).
#[derive(Debug, Clone)]
pub struct FitJob {
    /// JSONL corpus, one object a line with a string text field.
    pub input: PathBuf,
    pub out: PathBuf,
    pub levels: Vec<usize>,
    pub text_field: String,
    pub seed: u64,
    pub max_iter: usize,
    /// Principal components kept (0: all).
    pub dim: usize,
    pub whiten: f32,
    /// Precomputed embeddings (`.npy`), rows in corpus order.
    pub embeddings: Option<PathBuf>,
    pub save_embeddings: Option<PathBuf>,
    /// Manifest name; default: the output directory's name.
    pub name: Option<String>,
    /// The bundle whose encoder and tokenizer the new bundle uses.
    pub encoder_from: PathBuf,
    pub max_tokens: usize,
    pub probes: usize,
    /// Also fit the static tier.
    pub static_tier: bool,
    /// Only (re)fit the static tier of the bundle at `out`.
    pub static_only: bool,
    /// Only (re)write the bucket cards of the bundle at `out` from this corpus.
    pub cards_only: bool,
    pub static_fit: StaticFit,
    pub runtime: RuntimeConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum FitJobError {
    /// A flag or the corpus cannot work; the message names it.
    #[error("{0}")]
    Args(String),
    #[error(transparent)]
    Corpus(#[from] CorpusError),
    #[error(transparent)]
    Encoder(#[from] EncoderError),
    #[error("embedding the corpus: {0}")]
    Embed(#[from] BatchError),
    #[error(transparent)]
    Fit(#[from] FitError),
    #[error(transparent)]
    Quantize(#[from] QuantizeError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("the bundle just written does not load: {0}")]
    Verify(BundleError),
    #[error("start the async runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// The static tier's failures, as the fit job has always reported them.
impl From<StaticFitError> for FitJobError {
    fn from(e: StaticFitError) -> Self {
        match e {
            StaticFitError::Args(m) => FitJobError::Args(m),
            StaticFitError::Encoder(e) => FitJobError::Encoder(e),
            StaticFitError::Quantize(e) => FitJobError::Quantize(e),
            StaticFitError::Bundle(e) => FitJobError::Bundle(e),
        }
    }
}

/// What a fit wrote.
#[derive(Debug, Clone)]
pub struct FitSummary {
    /// `None` for `static_only` (the codebooks are untouched).
    pub manifest: Option<Manifest>,
    pub stats: Vec<crate::quantize::stats::LevelStats>,
}

fn args_error(message: String) -> FitJobError {
    FitJobError::Args(message)
}

/// Longest text considered as a probe (probes live in the manifest).
const MAX_PROBE_CHARS: usize = 600;
/// Candidates re-embedded when choosing probes.
const PROBE_CANDIDATES: usize = 64;

/// Refuses arguments that could never fit, before the corpus is read or embedded (minutes).
pub fn check(job: &FitJob) -> Result<(), FitJobError> {
    crate::quantize::check_levels(&job.levels).map_err(|e| args_error(format!("--levels: {e}")))?;
    if !(0.0..=1.0).contains(&job.whiten) {
        return Err(args_error(format!(
            "--whiten must be in [0, 1] (got {})",
            job.whiten
        )));
    }
    if job.static_only && job.cards_only {
        return Err(args_error(
            "--static-only and --cards-only: one at a time".into(),
        ));
    }
    if (job.static_only || job.cards_only) && !job.out.join(crate::bundle::MANIFEST).is_file() {
        return Err(args_error(format!(
            "--static-only/--cards-only need an existing bundle at --out: {} has no {}",
            job.out.display(),
            crate::bundle::MANIFEST
        )));
    }
    if let Some(path) = &job.embeddings
        && !path.is_file()
    {
        return Err(args_error(format!(
            "--embeddings {}: no such file",
            path.display()
        )));
    }
    Ok(())
}

pub fn run(job: &FitJob) -> Result<FitSummary, FitJobError> {
    let args = job;
    check(job)?;
    let docs = read_jsonl(&args.input, &args.text_field, None)?;
    if (args.static_tier || args.static_only) && docs.len() < super::fit_static::MIN_DOCS {
        return Err(args_error(format!(
            "--static needs at least {} documents to fit a token table; {} has {}",
            super::fit_static::MIN_DOCS,
            args.input.display(),
            docs.len()
        )));
    }
    let kmax = args.levels.iter().copied().max().unwrap_or(0);
    if docs.len() < kmax {
        return Err(args_error(format!(
            "{}: {} documents, fewer than the largest codebook ({kmax})",
            args.input.display(),
            docs.len()
        )));
    }
    let enc_cfg = args
        .runtime
        .encoder_config(&args.encoder_from, args.max_tokens);
    let encoder: Arc<dyn Embedder> = Arc::new(MiniLm::load(&enc_cfg)?);
    let texts: Vec<&str> = docs.iter().map(|d| d.text.as_str()).collect();

    let (e, dim) = match &args.embeddings {
        Some(path) => {
            let (e, dim) = read_npy(path)?;
            if e.len() / dim.max(1) != docs.len() {
                return Err(args_error(format!(
                    "{}: {} rows, but {} has {} documents",
                    path.display(),
                    e.len() / dim.max(1),
                    args.input.display(),
                    docs.len()
                )));
            }
            if dim != encoder.dim() {
                return Err(args_error(format!(
                    "{}: dim {dim}, but the encoder produces {}",
                    path.display(),
                    encoder.dim()
                )));
            }
            (e, dim)
        }
        None => (
            super::embed_corpus(encoder.clone(), &texts)??,
            encoder.dim(),
        ),
    };
    if let Some(path) = &args.save_embeddings {
        write_npy(path, &e, dim)?;
    }
    let options = args.runtime.load_options(1, true);
    if args.cards_only {
        // The old cards are being replaced: a missing or damaged cards.json must not stop it.
        crate::bundle::remove_cards(&args.out)?;
        let model = Model::load(&args.out, &options)?;
        write_cards(
            &args.out,
            model.fingerprint(),
            &model.space,
            &docs,
            &e,
            args.seed,
        )?;
        drop(model);
        verify(&args.out, &options)?;
        return Ok(FitSummary {
            manifest: None,
            stats: Vec::new(),
        });
    }
    if args.static_only {
        let model = Model::load(&args.out, &options)?;
        fit_static(
            &args.static_fit,
            &args.input,
            &args.out,
            &encoder,
            &texts,
            &e,
            &model.space,
        )?;
        drop(model);
        verify(&args.out, &options)?;
        return Ok(FitSummary {
            manifest: None,
            stats: Vec::new(),
        });
    }

    let config = FitConfig {
        levels: args.levels.clone(),
        seed: args.seed,
        max_iter: args.max_iter,
        transform: TransformConfig {
            out_dim: (args.dim > 0).then_some(args.dim),
            whiten: args.whiten,
        },
    };
    let started = std::time::Instant::now();
    let fitted = fit(&e, dim, &config)?;
    tracing::info!(
        "fitted {} levels on {} documents in {:.1}s",
        args.levels.len(),
        docs.len(),
        started.elapsed().as_secs_f64()
    );

    let probes = choose_probes(encoder.as_ref(), &fitted, &texts, &e, args.probes)?;
    let name = args.name.clone().unwrap_or_else(|| {
        args.out
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "bundle".into())
    });
    let manifest = write_bundle(
        &args.out,
        NewBundle {
            name,
            encoder_from: &args.encoder_from,
            encoder_dim: dim,
            max_tokens: args.max_tokens,
            transform: &fitted.transform,
            whiten: args.whiten,
            explained_variance: fitted.explained_variance,
            quantizer: &fitted.quantizer,
            fit: FitInfo {
                corpus: args
                    .input
                    .file_name()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                n_docs: docs.len(),
                seed: args.seed,
                max_iter: args.max_iter,
                kmeans: fitted.kmeans.clone(),
                stats: fitted.stats.clone(),
            },
            probes,
        },
    )?;
    let space = CodeSpace::new(fitted.transform.clone(), fitted.quantizer.clone());
    write_cards(
        &args.out,
        &manifest.fingerprint,
        &space,
        &docs,
        &e,
        args.seed,
    )?;
    if args.static_tier {
        fit_static(
            &args.static_fit,
            &args.input,
            &args.out,
            &encoder,
            &texts,
            &e,
            &space,
        )?;
    }
    verify(&args.out, &options)?;
    Ok(FitSummary {
        manifest: Some(manifest),
        stats: fitted.stats,
    })
}

/// Bucket cards of the fitting sample at depths 1 and 2 (docs/cards.md: the
/// defaults of `hermes describe`), written into the bundle.
fn write_cards(
    out: &Path,
    fingerprint: &str,
    space: &CodeSpace,
    docs: &[crate::corpus::Doc],
    e: &[f32],
    seed: u64,
) -> Result<(), FitJobError> {
    use crate::cards::{CardConfig, Sampler, TERM_CHARS};
    let (codes, norms) = space.codes_and_residuals(e)?;
    let levels = space.levels().len();
    let mut sampler = Sampler::new(CardConfig {
        depth: levels.min(2),
        sample: 256,
        terms: 12,
        exemplars: 3,
        seed,
    });
    for (i, (code, doc)) in codes.iter().zip(docs).enumerate() {
        // Levels are checked to fit u16 before any fit.
        let code: Vec<u16> = code.0.iter().map(|&c| c as u16).collect();
        sampler.add(
            &code,
            &norms[i * levels..(i + 1) * levels],
            &doc.id,
            (0, i as u64),
        );
    }
    let texts = sampler
        .wanted()
        .remove(&0)
        .unwrap_or_default()
        .into_keys()
        .map(|r| {
            (
                (0, r),
                docs[r as usize].text.chars().take(TERM_CHARS).collect(),
            )
        })
        .collect();
    let cards = sampler
        .cards(&texts, fingerprint, crate::tier::Tier::Minilm, &|_| {
            "the corpus".into()
        })
        .map_err(FitJobError::Args)?;
    crate::bundle::add_cards(out, &cards)?;
    tracing::info!(
        cards = cards.cards.len(),
        "bucket cards of the fitting sample written"
    );
    Ok(())
}

/// Loads what was written, as `serve` will: checksums, shapes, probes, the static tier.
fn verify(out: &Path, options: &LoadOptions) -> Result<(), FitJobError> {
    super::block_on(open(
        out,
        options,
        crate::batch::BatchConfig::offline(1, 256, 1),
    ))?
    .map_err(FitJobError::Verify)?;
    Ok(())
}

/// Picks probe texts whose codes are far from any tie, so that another CPU's rounding cannot
/// flip them: the best-margin short texts by the corpus embeddings, re-embedded by this
/// encoder (the corpus embeddings may come from elsewhere) and ranked again.
fn choose_probes(
    encoder: &dyn Embedder,
    fitted: &Fitted,
    texts: &[&str],
    e: &[f32],
    count: usize,
) -> Result<Vec<Probe>, FitJobError> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let z = fitted.transform.apply(e);
    let margins = fitted.quantizer.margins(&z)?;
    let mut order: Vec<usize> = (0..texts.len())
        .filter(|&i| texts[i].chars().count() <= MAX_PROBE_CHARS && !texts[i].trim().is_empty())
        .collect();
    order.sort_by(|&a, &b| margins[b].total_cmp(&margins[a]).then(a.cmp(&b)));
    order.truncate(PROBE_CANDIDATES);
    let candidates: Vec<&str> = order.iter().map(|&i| texts[i]).collect();
    let own = encoder.embed(&candidates)?;
    let z = fitted.transform.apply(&own.vectors);
    let margins = fitted.quantizer.margins(&z)?;
    let codes: Vec<Code> = fitted
        .quantizer
        .encode(&z, fitted.quantizer.levels().len())?;
    let mut ranked: Vec<usize> = (0..candidates.len()).collect();
    ranked.sort_by(|&a, &b| margins[b].total_cmp(&margins[a]).then(a.cmp(&b)));
    Ok(ranked
        .into_iter()
        .take(count)
        .map(|i| Probe {
            text: candidates[i].to_string(),
            code: codes[i].0.clone(),
        })
        .collect())
}
