//! `hermes eval`: code a labeled corpus with a bundle and report statistics and agreement.

use anyhow::{Result, bail};

use super::args::EvalArgs;
use crate::corpus::{read_jsonl, read_npy};
use crate::eval::report::{EvalInput, evaluate};
use crate::labeling::{Batching, Tiers, build};

pub fn run(args: EvalArgs) -> Result<()> {
    let corpus = &args.corpus;
    let mut core = args.tier.core(Tiers::One);
    // A corpus job has nothing else to run: ONNX Runtime's threads may spin.
    core.runtime.spinning = core.runtime.spinning.or(Some(true));
    core.encoder_sessions = 1;
    core.batching = Batching {
        max_batch_docs: Some(corpus.batch.max(1)),
        ..Batching::offline(256, 4)
    };
    let core = super::block_on(build(&core))??;
    let labeler = core.labeler();
    let model = labeler.model();
    let docs = read_jsonl(
        &corpus.input,
        &corpus.text.text_field,
        Some(&args.label_field),
    )?;
    let dim = labeler.batcher().encoder().dim();
    let e = match &corpus.embeddings {
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
            crate::jobs::embed_with(labeler.batcher(), &texts)??
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
