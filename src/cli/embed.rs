//! `hermes embed`: print the first dimensions of each text's embedding.

use anyhow::Result;

use super::args::EmbedArgs;
use crate::encoder::{Embedder, EncoderConfig, MiniLm};

pub fn run(args: EmbedArgs) -> Result<()> {
    let mut cfg = EncoderConfig::for_dir(&args.model.bundle);
    // The bundle's own budget unless --max-tokens says otherwise: embeddings equal serve's.
    cfg.max_tokens = match args.max_tokens {
        Some(n) => n,
        None => bundle_max_tokens(&args.model.bundle)?,
    };
    let runtime = args.model.runtime;
    cfg.intra_threads = runtime.intra_threads;
    cfg.ort_lib = runtime.ort_lib;
    cfg.spinning = runtime.ort_spinning.unwrap_or(true);
    let encoder = MiniLm::load(&cfg)?;
    let texts: Vec<&str> = args.texts.iter().map(String::as_str).collect();
    let out = encoder.embed(&texts)?;
    for (i, text) in texts.iter().enumerate() {
        let head: Vec<String> = out
            .row(i)
            .iter()
            .take(5)
            .map(|x| format!("{x:.6}"))
            .collect();
        println!(
            "{text:?}: dim {} truncated {} [{} ...]",
            out.dim,
            out.truncated[i],
            head.join(", ")
        );
    }
    Ok(())
}

fn bundle_max_tokens(dir: &std::path::Path) -> Result<usize> {
    let path = dir.join(crate::bundle::MANIFEST);
    let raw =
        std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let manifest: crate::bundle::Manifest = serde_json::from_str(&raw)
        .map_err(|e| anyhow::anyhow!("{}: invalid: {e}", path.display()))?;
    Ok(manifest.encoder.max_tokens)
}
