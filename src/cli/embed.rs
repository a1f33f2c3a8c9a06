//! `hermes embed`: print the first dimensions of each text's embedding.

use anyhow::Result;

use super::args::EmbedArgs;
use crate::encoder::{Embedder, EncoderConfig, MiniLm};

pub fn run(args: EmbedArgs) -> Result<()> {
    let mut cfg = EncoderConfig::for_dir(&args.bundle);
    cfg.max_tokens = args.max_tokens;
    cfg.intra_threads = args.runtime.intra_threads;
    cfg.ort_lib = args.runtime.ort_lib;
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
