//! `hermes fit`: corpus → embeddings → transform + codebooks → a verified bundle directory.

use anyhow::{Context, Result, bail};

use std::sync::Arc;

use super::args::FitArgs;
use crate::bundle::{FitInfo, LoadOptions, Model, NewBundle, Probe, write_bundle};
use crate::corpus::{read_jsonl, read_npy, write_npy};
use crate::encoder::{Embedder, EncoderConfig, MiniLm};
use crate::fit::pca::TransformConfig;
use crate::fit::{FitConfig, Fitted, fit};
use crate::labeling::open;
use crate::quantize::{Code, CodeSpace};

/// Longest text considered as a probe (probes live in the manifest).
const MAX_PROBE_CHARS: usize = 600;
/// Candidates re-embedded when choosing probes.
const PROBE_CANDIDATES: usize = 64;

/// Refuses arguments that could never fit, before the corpus is read or embedded (minutes).
fn check_args(args: &FitArgs) -> Result<()> {
    crate::quantize::check_levels(&args.levels).map_err(|e| anyhow::anyhow!("--levels: {e}"))?;
    if !(0.0..=1.0).contains(&args.whiten) {
        bail!("--whiten must be in [0, 1] (got {})", args.whiten);
    }
    if args.static_only && !args.out.join(crate::bundle::MANIFEST).is_file() {
        bail!(
            "--static-only needs an existing bundle at --out: {} has no {}",
            args.out.display(),
            crate::bundle::MANIFEST
        );
    }
    if let Some(path) = &args.embeddings
        && !path.is_file()
    {
        bail!("--embeddings {}: no such file", path.display());
    }
    Ok(())
}

pub fn run(args: FitArgs) -> Result<()> {
    check_args(&args)?;
    let docs = read_jsonl(&args.input, &args.text_field, None)?;
    if (args.static_tier || args.static_only) && docs.len() < super::fit_static::MIN_DOCS {
        bail!(
            "--static needs at least {} documents to fit a token table; {} has {}",
            super::fit_static::MIN_DOCS,
            args.input.display(),
            docs.len()
        );
    }
    let kmax = args.levels.iter().copied().max().unwrap_or(0);
    if docs.len() < kmax {
        bail!(
            "{}: {} documents, fewer than the largest codebook ({kmax})",
            args.input.display(),
            docs.len()
        );
    }
    let mut enc_cfg = EncoderConfig::for_dir(&args.encoder_from);
    enc_cfg.max_tokens = args.max_tokens;
    enc_cfg.intra_threads = args.runtime.intra_threads;
    enc_cfg.ort_lib = args.runtime.ort_lib.clone();
    enc_cfg.spinning = args.runtime.ort_spinning.unwrap_or(true);
    let encoder: Arc<dyn Embedder> = Arc::new(MiniLm::load(&enc_cfg)?);
    let texts: Vec<&str> = docs.iter().map(|d| d.text.as_str()).collect();

    let (e, dim) = match &args.embeddings {
        Some(path) => {
            let (e, dim) = read_npy(path)?;
            if e.len() / dim.max(1) != docs.len() {
                bail!(
                    "{}: {} rows, but {} has {} documents",
                    path.display(),
                    e.len() / dim.max(1),
                    args.input.display(),
                    docs.len()
                );
            }
            if dim != encoder.dim() {
                bail!(
                    "{}: dim {dim}, but the encoder produces {}",
                    path.display(),
                    encoder.dim()
                );
            }
            (e, dim)
        }
        None => (super::embed_corpus(encoder.clone(), &texts)?, encoder.dim()),
    };
    if let Some(path) = &args.save_embeddings {
        write_npy(path, &e, dim)?;
    }
    let options = args.runtime.load_options(1, true);
    if args.static_only {
        let model = Model::load(&args.out, &options)
            .context("--static-only needs an existing bundle at --out")?;
        super::fit_static::fit_static(&args, &args.out, &encoder, &texts, &e, &model.space)?;
        drop(model);
        return verify(&args.out, &options);
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
    if args.static_tier {
        let space = CodeSpace::new(fitted.transform.clone(), fitted.quantizer.clone());
        super::fit_static::fit_static(&args, &args.out, &encoder, &texts, &e, &space)?;
    }
    verify(&args.out, &options)?;
    println!(
        "bundle {} (fingerprint {})",
        args.out.display(),
        manifest.fingerprint
    );
    println!("| depth | k | utilization | perplexity | cells used | relative error |");
    println!("|---|---|---|---|---|---|");
    for s in &fitted.stats {
        println!(
            "| {} | {} | {:.3} | {:.1} | {} | {:.4} |",
            s.depth, s.k, s.utilization, s.perplexity, s.cells_used, s.relative_error
        );
    }
    Ok(())
}

/// Loads what was written, as `serve` will: checksums, shapes, probes, the static tier.
fn verify(out: &std::path::Path, options: &LoadOptions) -> Result<()> {
    super::block_on(open(
        out,
        options,
        crate::jobs::label::offline_batching(1, 256, 1),
    ))?
    .context("the bundle just written does not load")?;
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
) -> Result<Vec<Probe>> {
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
