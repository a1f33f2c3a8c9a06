//! `hermes eval`: code a labeled corpus with a bundle and report statistics and agreement.

use anyhow::{Result, bail};

use super::args::EvalArgs;
use crate::corpus::{read_jsonl, read_npy};
use crate::eval::report::{EvalInput, evaluate};
use crate::labeling::open;

pub fn run(args: EvalArgs) -> Result<()> {
    let options = args.runtime.load_options(1, true);
    let opened = super::block_on(open(
        &args.bundle,
        &options,
        crate::jobs::label::offline_batching(1, 256, 4),
    ))??;
    let labeler = &opened.labeler;
    let model = labeler.model();
    let encoder = model.embedder(args.encoder).ok_or_else(|| {
        anyhow::anyhow!(
            "--encoder {}: the bundle {} has no such tier",
            args.encoder,
            args.bundle.display()
        )
    })?;
    let docs = read_jsonl(&args.input, &args.text_field, Some(&args.label_field))?;
    let dim = encoder.dim();
    let e = match &args.embeddings {
        Some(path) => {
            let (e, d) = read_npy(path)?;
            if d != dim || e.len() / dim != docs.len() {
                bail!(
                    "{}: shape [{}, {d}] does not match {} documents of dim {dim}",
                    path.display(),
                    e.len() / d.max(1),
                    docs.len()
                );
            }
            e
        }
        None => {
            let texts: Vec<&str> = docs.iter().map(|d| d.text.as_str()).collect();
            crate::jobs::embed_corpus(encoder.clone(), &texts)??
        }
    };
    let codes = labeler.quantize(&e)?;
    let z = model.space.transform.apply(&e);
    let labels: Vec<Option<String>> = docs.into_iter().map(|d| d.label).collect();
    let report = evaluate(&EvalInput {
        bundle: model.name().to_string(),
        fingerprint: model.fingerprint().to_string(),
        e: &e,
        e_dim: dim,
        z: &z,
        codes: &codes,
        labels: &labels,
        quantizer: &model.space.quantizer,
        seed: args.seed,
    });
    print!("{}", report.markdown());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")?;
    }
    Ok(())
}
