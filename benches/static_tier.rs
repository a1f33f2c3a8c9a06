//! The static tier end to end against its peer, and where its time goes.
//!
//! Input: the wiki corpus copied into 10 JSONL files (100,330 documents). Each run, back to
//! back on the same machine:
//! 1. `hermes label --encoder static` over the 10 files: docs/s over the command's wall time
//!    (bundle load and Parquet writing included) and its CPU seconds;
//! 2. the peer (`scripts/static_peer.py`): model2vec's `StaticModel` built from the bundle's
//!    own table and tokenizer, then the bundle's transform and greedy quantizer in numpy, on
//!    texts already in memory (its set-up untimed); the ratio of the two is taken per run;
//! 3. hermes' stages in this process, one thread each, on the same texts: tokenization by
//!    hermes' WordPiece and by the HF `tokenizers` crate, the table gather (sum and
//!    normalisation), and quantization (transform and residual quantizer).
//!
//! The first run's peer codes are compared with hermes' codes (share agreeing per depth).
//! Medians of `HERMES_BENCH_RUNS` (3) runs; `HERMES_BENCH_QUICK=1` uses one copy of the corpus.
//! Run with `make bench-static`; the report goes to `target/bench/static_tier.md`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use hermes::encoder::{Embedder, StaticEncoder, TokenizedText, Tokenizer};

/// `copies` copies of the wiki corpus, one file each, under `dir`; returns the documents.
fn corpus(dir: &Path, copies: usize) -> usize {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let wiki = std::fs::read_to_string(support::wiki_jsonl()).expect("run `make setup`");
    for k in 0..copies {
        std::fs::write(dir.join(format!("part-{k}.jsonl")), &wiki).unwrap();
    }
    copies * wiki.lines().count()
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// One `hermes label --encoder static` run: (wall s, CPU s).
fn hermes_label(input: &Path, out: &Path) -> (f64, f64) {
    let u = support::label_static(input, out, &[]);
    (u.wall_s, u.cpu_s)
}

/// One peer run: (its timed seconds, agreement per depth when `codes` is given).
fn peer(files: &[PathBuf], result: &Path, codes: Option<&Path>) -> (f64, Option<Vec<f64>>) {
    let mut cmd = Command::new(support::root().join(".cache/venv/bin/python"));
    cmd.arg(support::root().join("scripts/static_peer.py"))
        .arg(support::default_bundle_dir())
        .arg(result)
        .args(files);
    if let Some(c) = codes {
        cmd.arg("--codes").arg(c);
    }
    let o = cmd.output().expect("run the venv's python (make setup)");
    assert!(
        o.status.success(),
        "static_peer.py: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(result).unwrap()).unwrap();
    let agree = v["agree"]
        .as_array()
        .map(|a| a.iter().map(|x| x.as_f64().unwrap()).collect());
    (v["seconds"].as_f64().unwrap(), agree)
}

/// Seconds `f` takes, once.
fn timed<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let started = Instant::now();
    let out = f();
    (started.elapsed().as_secs_f64(), out)
}

/// The bundle's static tier and code space, loaded as `hermes::bundle` does (no ONNX Runtime).
fn load() -> (StaticEncoder, Tokenizer, hermes::quantize::CodeSpace) {
    let dir = support::default_bundle_dir();
    let raw = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    let m = hermes::bundle::manifest::parse(&raw).unwrap();
    let entry = m
        .static_encoder
        .as_ref()
        .expect("the bundle has a static tier");
    let tokenizer = Tokenizer::from_file(&dir.join(&m.tokenizer.file), entry.max_tokens).unwrap();
    assert!(tokenizer.is_wordpiece(), "the bundle's tokenizer is BERT's");
    let encoder = StaticEncoder::load(
        &dir.join(&entry.file),
        tokenizer.clone(),
        entry.vocab,
        entry.dim,
    )
    .unwrap();
    let books = std::fs::read(dir.join(&m.codebooks.file)).unwrap();
    let space = hermes::bundle::parse_codebooks(&dir, &m, &books).unwrap();
    (encoder, tokenizer, space)
}

/// Seconds per stage, one thread: hermes' tokenizer, HF's, gather, quantize.
fn stages(
    texts: &[String],
    encoder: &StaticEncoder,
    tokenizer: &Tokenizer,
    space: &hermes::quantize::CodeSpace,
) -> [f64; 4] {
    let (tok_s, tokens) = timed(|| {
        texts
            .iter()
            .map(|t| tokenizer.encode(t, false).unwrap())
            .collect::<Vec<TokenizedText>>()
    });
    let (hf_s, hf) = timed(|| {
        texts
            .iter()
            .map(|t| tokenizer.encode_hf(t, false).unwrap())
            .collect::<Vec<TokenizedText>>()
    });
    assert!(tokens == hf, "hermes' WordPiece and HF tokenizers disagree");
    let refs: Vec<&TokenizedText> = tokens.iter().collect();
    let (gather_s, vectors) = timed(|| {
        refs.chunks(256)
            .flat_map(|batch| encoder.embed_tokens(batch).unwrap())
            .collect::<Vec<f32>>()
    });
    let (quantize_s, _) = timed(|| {
        vectors
            .chunks(256 * encoder.dim())
            .map(|batch| space.codes_and_residuals(batch).unwrap().0.len())
            .sum::<usize>()
    });
    [tok_s, hf_s, gather_s, quantize_s]
}

fn main() {
    let base = support::bench_dir().join("static_tier");
    std::fs::create_dir_all(&base).unwrap();
    let runs = support::runs();
    let copies = if support::quick() { 1 } else { 10 };
    let input = base.join("in");
    let docs = corpus(&input, copies);
    let files = inputs(&input);
    let out = base.join("out");
    let (encoder, tokenizer, space) = load();
    let texts: Vec<String> = hermes::corpus::read_jsonl(&support::wiki_jsonl(), "text", None)
        .unwrap()
        .into_iter()
        .map(|d| d.text)
        .collect();

    let (mut e2e, mut cpu, mut peer_s, mut ratio) = (vec![], vec![], vec![], vec![]);
    let mut stage: [Vec<f64>; 4] = Default::default();
    let mut agree = None;
    for run in 0..runs {
        let (wall, cpu_s) = hermes_label(&input, &out);
        let codes = out.join("codes");
        let (p, a) = peer(
            &files,
            &base.join("peer.json"),
            (run == 0).then_some(codes.as_path()),
        );
        if a.is_some() {
            agree = a;
        }
        let (h_rate, p_rate) = (docs as f64 / wall, docs as f64 / p);
        eprintln!(
            "run {run}: hermes {h_rate:.0} docs/s ({cpu_s:.2} CPU s), peer {p_rate:.0} docs/s"
        );
        e2e.push(h_rate);
        cpu.push(cpu_s);
        peer_s.push(p_rate);
        ratio.push(h_rate / p_rate);
        let s = stages(&texts, &encoder, &tokenizer, &space);
        for (v, x) in stage.iter_mut().zip(s) {
            v.push(texts.len() as f64 / x);
        }
    }
    let med = |v: &[f64]| support::median(v.to_vec());
    let agree = agree.unwrap_or_default();
    let pct = |d: usize| {
        agree
            .get(d)
            .map_or("-".to_string(), |a| format!("{:.2}%", a * 100.0))
    };
    let per_doc = |rate: f64| 1e6 / rate;
    let [tok, hf, gather, quantize] = stage.map(|v| med(&v));
    let report = format!(
        "# The static tier\n\n{}\n\n\
         {docs} wiki documents in {} JSONL files; median of {runs} runs, hermes and the peer \
         back to back in each run (the ratio is taken per run, then its median).\n\n\
         ## End to end\n\n\
         | | docs/s | |\n|---|---|---|\n\
         | `hermes label --encoder static` (wall, bundle load and Parquet included) | {:.0} | {:.2} CPU s |\n\
         | peer: model2vec `StaticModel` (bundle table and tokenizer) + numpy transform and quantizer, texts in memory | {:.0} | |\n\
         | ratio hermes / peer | {:.2}x | |\n\n\
         Codes agree with the peer's (first run): {} at depth 1, {} at depth 2, {} at depth 3 \
         (model2vec drops `[UNK]` tokens from the mean; hermes keeps them).\n\n\
         ## hermes' stages, one thread, in-process ({} texts)\n\n\
         | stage | docs/s per core | µs/doc |\n|---|---|---|\n\
         | tokenization, hermes' WordPiece | {tok:.0} | {:.1} |\n\
         | tokenization, HF `tokenizers` crate (same ids) | {hf:.0} | {:.1} |\n\
         | table gather (sum of rows, L2 norm) | {gather:.0} | {:.1} |\n\
         | quantization (transform, 3-level residual quantizer) | {quantize:.0} | {:.1} |\n",
        support::cpu_line(),
        files.len(),
        med(&e2e),
        med(&cpu),
        med(&peer_s),
        med(&ratio),
        pct(0),
        pct(1),
        pct(2),
        texts.len(),
        per_doc(tok),
        per_doc(hf),
        per_doc(gather),
        per_doc(quantize),
    );
    let path = support::write_report("static_tier.md", &report);
    println!("{report}\nreport: {}", path.display());
}
