//! The peers the service is measured against: the in-process ceiling (the default bundle's
//! encoder + transform + quantizer called directly, no HTTP), Python `onnxruntime` on the same
//! graph, and `hermes label` (the batch command) on the same texts.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use hermes::bundle::{LoadOptions, Model};
use hermes::encoder::{Embedder, EncoderConfig, MiniLm, TokenizedText};
use hermes::quantize::CodeSpace;
use serde_json::json;

use crate::support::load::Texts;
use crate::support::{default_bundle_dir, hermes_bin, root, wiki_jsonl};

/// The batch sizes the ceiling is measured at: on some CPUs a batch is cheaper per document
/// than one text alone, on others (this project's AVX2 machine) dearer.
pub const BATCHES: [usize; 4] = [1, 4, 16, 32];

/// The default bundle, its encoder warmed up.
pub fn load_default_bundle() -> Model {
    let model = Model::load(&default_bundle_dir(), &LoadOptions::default())
        .expect("load the default bundle");
    let _ = model.encoder.embed(&["warm-up"]);
    model
}

/// The default bundle's encoder with some session option changed.
pub fn encoder_with(change: impl FnOnce(&mut EncoderConfig)) -> MiniLm {
    let mut config = EncoderConfig::for_dir(&default_bundle_dir());
    change(&mut config);
    MiniLm::load(&config).expect("load the encoder")
}

/// The ceiling at every size in [`BATCHES`], docs/s over `seconds_each`: chunks of 256 texts
/// sorted by token count and cut into batches (almost no padding).
pub fn by_batch(model: &Model, texts: &Texts, seconds_each: f64) -> Vec<(usize, f64)> {
    BATCHES
        .iter()
        .map(|&b| {
            let rate = at(model.encoder.as_ref(), &model.space, texts, b, seconds_each);
            (b, rate)
        })
        .collect()
}

/// The ceiling at one batch size, docs/s over `seconds`.
pub fn at(encoder: &dyn Embedder, space: &CodeSpace, texts: &Texts, b: usize, seconds: f64) -> f64 {
    let started = Instant::now();
    let mut docs = 0;
    while started.elapsed().as_secs_f64() < seconds {
        let chunk = texts.take(256);
        let mut tokens: Vec<TokenizedText> = chunk
            .iter()
            .map(|(_, t)| encoder.tokenize(t).expect("tokenize"))
            .collect();
        tokens.sort_by_key(|t| t.ids.len());
        for batch in tokens.chunks(b) {
            let refs: Vec<&TokenizedText> = batch.iter().collect();
            let e = encoder.embed_tokens(&refs).expect("embed");
            space.codes(&e).expect("code");
        }
        docs += tokens.len();
    }
    docs as f64 / started.elapsed().as_secs_f64()
}

/// The session options hermes leaves off (ONNX Runtime's CPU arena and memory pattern, off
/// because they let RSS creep): the best batch size's rate with them on, so the report shows
/// whether the ceiling is a ceiling over session options too.
pub fn arena_rate(model: &Model, texts: &Texts, b: usize, seconds: f64) -> f64 {
    let encoder = encoder_with(|c| c.arena = true);
    at(&encoder, &model.space, texts, b, seconds)
}

/// One session per core, one ONNX Runtime thread each, every session busy at once (one
/// thread per core feeding it): parallel batches instead of parallel operators.
pub fn per_core(
    encoder: Arc<MiniLm>,
    model: &Model,
    texts: &Arc<Texts>,
    b: usize,
    seconds: f64,
) -> f64 {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..crate::support::cores())
            .map(|_| {
                let encoder = encoder.clone();
                s.spawn(move || at(encoder.as_ref(), &model.space, texts, b, seconds))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

/// Python `onnxruntime` (the set-up venv's wheel) on the same encoder.onnx and wiki texts,
/// length-sorted batches of 32, default session options: a check that the Rust path's
/// ceiling is not below what ONNX Runtime can do. `None` when the venv is missing.
pub fn python_ort(seconds: f64) -> Option<f64> {
    let root = root();
    let out = Command::new(root.join(".cache/venv/bin/python"))
        .arg(root.join("scripts/ort_throughput.py"))
        .arg(default_bundle_dir())
        .arg(wiki_jsonl())
        .arg(format!("{seconds}"))
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// `hermes label` on `n` texts: `(n, docs/s with start-up, docs/s steady)`.
#[derive(Clone, Copy, Default)]
pub struct LabelRate {
    pub docs: usize,
    pub with_startup: f64,
    pub steady: f64,
}

/// `hermes label` (release binary, default flags) on `n` wiki texts in 4 `.jsonl` files:
/// documents per second of the whole run, model loading (and, for minilm, the start-up
/// measurement of the batch size) included, and the steady rate: the same run less the wall
/// time of a run on 4 documents (that fixed start-up cost is seconds; a corpus job runs hours).
pub fn label_throughput(texts: &Texts, n: usize, encoder: &str) -> LabelRate {
    let tiny = label_wall(texts, 4, encoder);
    let wall = label_wall(texts, n, encoder);
    LabelRate {
        docs: n,
        with_startup: n as f64 / wall,
        steady: n as f64 / (wall - tiny).max(1e-3),
    }
}

fn label_wall(texts: &Texts, n: usize, encoder: &str) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let docs = texts.take(n);
    for (f, chunk) in docs.chunks(docs.len().div_ceil(4)).enumerate() {
        let lines: String = chunk
            .iter()
            .map(|(i, t)| json!({"id": format!("l{i}"), "text": t}).to_string() + "\n")
            .collect();
        std::fs::write(dir.path().join(format!("part{f}.jsonl")), lines).expect("write input");
    }
    let started = Instant::now();
    let status = Command::new(hermes_bin())
        .args(["label", "--encoder", encoder, "--input"])
        .arg(dir.path())
        .arg("--out")
        .arg(dir.path().join("out"))
        .current_dir(root())
        .stderr(Stdio::null())
        .status()
        .expect("run hermes label");
    assert!(status.success(), "hermes label failed");
    started.elapsed().as_secs_f64()
}
