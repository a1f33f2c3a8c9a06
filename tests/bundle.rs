//! The default bundle `models/minilm-wiki` with the real encoder: start-up verification,
//! quality recorded at fit time, and codes that do not depend on batch neighbours.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hermes::batch::BatchConfig;
use hermes::bundle::{LoadOptions, Manifest, Model};
use hermes::quantize::Code;
use rand::SeedableRng;
use rand::seq::SliceRandom;

fn bundle_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/minilm-wiki")
}

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        Model::load(&bundle_dir(), &LoadOptions::default()).unwrap_or_else(|e| panic!("{e}"))
    })
}

/// Full codes and truncation flags of `texts` embedded as one batch.
fn label(m: &Model, texts: &[&str]) -> Vec<(Code, bool)> {
    let e = m.encoder.embed(texts).unwrap();
    let codes = m.space.codes(&e.vectors).unwrap();
    codes.into_iter().zip(e.truncated).collect()
}

fn wiki_texts(n: usize) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/data/wiki.jsonl");
    let docs = hermes::corpus::read_jsonl(&path, "text", None).expect("run `make setup`");
    docs.into_iter().take(n).map(|d| d.text).collect()
}

#[test]
fn default_bundle_loads_and_codes_text() {
    let m = model();
    assert_eq!(m.levels(), &[64, 64, 32]);
    assert_eq!(m.fingerprint().len(), 16);
    let codes = label(
        m,
        &[
            "The mitochondria is the powerhouse of the cell.",
            "Stock markets fell sharply.",
        ],
    );
    assert_eq!(codes.len(), 2);
    for (code, truncated) in &codes {
        assert_eq!(code.depth(), 3);
        assert!(!truncated);
        assert!(
            code.0
                .iter()
                .zip(m.levels())
                .all(|(&c, &k)| (c as usize) < k)
        );
    }
    assert_ne!(
        codes[0].0.0[0], codes[1].0.0[0],
        "biology and finance share a top-level bucket"
    );
}

#[test]
fn fit_statistics_meet_the_quality_bar() {
    let m = model();
    let stats = &m.manifest.fit.stats;
    assert_eq!(stats.len(), 3);
    for s in stats {
        assert!(
            s.utilization >= 0.98,
            "depth {} utilization {}",
            s.depth,
            s.utilization
        );
    }
    assert!(
        stats[0].relative_error > stats[1].relative_error
            && stats[1].relative_error > stats[2].relative_error
    );
    assert_eq!(m.manifest.fit.n_docs, 10_033);
}

#[test]
fn codes_do_not_depend_on_batch_neighbours() {
    let m = model();
    let texts = wiki_texts(1000);
    let one_at_a_time: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| label(m, &[t])[0].0.0.clone())
        .collect();
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(9));
    let mut batched = vec![Vec::new(); texts.len()];
    for chunk in order.chunks(64) {
        let refs: Vec<&str> = chunk.iter().map(|&i| texts[i].as_str()).collect();
        for (&i, (code, _)) in chunk.iter().zip(label(m, &refs)) {
            batched[i] = code.0;
        }
    }
    let diffs = (0..texts.len())
        .filter(|&i| batched[i] != one_at_a_time[i])
        .count();
    assert_eq!(
        diffs,
        0,
        "{diffs} of {} documents changed code with their batch",
        texts.len()
    );
}

/// A scratch copy of the default bundle (the encoder hard-linked) to break on purpose.
fn scratch() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    std::fs::create_dir(&dir).unwrap();
    for f in [
        "manifest.json",
        "codebooks.safetensors",
        "tokenizer.json",
        "encoder.onnx",
        "static.safetensors",
        "cards.json",
    ] {
        if std::fs::hard_link(bundle_dir().join(f), dir.join(f)).is_err() {
            std::fs::copy(bundle_dir().join(f), dir.join(f)).unwrap();
        }
    }
    (tmp, dir)
}

/// What opening the bundle for labeling (load, verify, probes) says.
fn load_err(dir: &Path) -> String {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let batch = BatchConfig {
        max_batch_tokens: 8192,
        max_batch_docs: 32,
        max_wait: std::time::Duration::from_millis(1),
        max_queue_docs: 64,
        workers: 1,
        min_window_docs: 0,
    };
    match rt.block_on(hermes::labeling::open(dir, &LoadOptions::default(), batch)) {
        Ok(_) => panic!("a broken bundle loaded"),
        Err(e) => e.to_string(),
    }
}

fn edit_manifest(dir: &Path, f: impl FnOnce(&mut Manifest)) {
    let path = dir.join("manifest.json");
    let mut m: Manifest = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    f(&mut m);
    std::fs::remove_file(&path).unwrap(); // break the hard link before writing
    std::fs::write(&path, serde_json::to_string_pretty(&m).unwrap()).unwrap();
}

#[test]
fn bad_static_tables_are_refused_with_file_and_field() {
    // A wrong checksum.
    let (_t, dir) = scratch();
    let mut bytes = std::fs::read(dir.join("static.safetensors")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::remove_file(dir.join("static.safetensors")).unwrap();
    std::fs::write(dir.join("static.safetensors"), bytes).unwrap();
    let e = load_err(&dir);
    assert!(
        e.contains("static.safetensors") && e.contains("static.sha256"),
        "{e}"
    );

    // A vocabulary that is not the tokenizer's.
    let (_t, dir) = scratch();
    edit_manifest(&dir, |m| m.static_encoder.as_mut().unwrap().vocab = 30_000);
    let e = load_err(&dir);
    assert!(
        e.contains("manifest.json") && e.contains("static.vocab"),
        "{e}"
    );

    // A width that is not the teacher's.
    let (_t, dir) = scratch();
    edit_manifest(&dir, |m| m.static_encoder.as_mut().unwrap().dim = 383);
    let e = load_err(&dir);
    assert!(
        e.contains("manifest.json") && e.contains("static.dim"),
        "{e}"
    );

    // A table of the wrong shape (with a matching checksum).
    let (_t, dir) = scratch();
    let table = vec![0.01f32; 30_521 * 384];
    let path = dir.join("static.safetensors");
    std::fs::remove_file(&path).unwrap();
    std::fs::write(
        &path,
        hermes::encoder::static_table::table_bytes(&table, 30_521, 384),
    )
    .unwrap();
    let sha = hermes::bundle::sha256_file(&path).unwrap();
    edit_manifest(&dir, |m| m.static_encoder.as_mut().unwrap().sha256 = sha);
    let e = load_err(&dir);
    assert!(
        e.contains("static.safetensors")
            && e.contains("shape [30521, 384]")
            && e.contains("static.vocab"),
        "{e}"
    );
}

#[test]
fn static_codes_do_not_depend_on_batch_neighbours() {
    let m = model();
    let enc = m
        .static_encoder
        .as_ref()
        .expect("the default bundle has a static tier");
    let texts = wiki_texts(1000);
    let alone: Vec<Code> = texts
        .iter()
        .map(|t| {
            m.space
                .codes(&enc.embed(&[t]).unwrap().vectors)
                .unwrap()
                .remove(0)
        })
        .collect();
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(3));
    for chunk in order.chunks(100) {
        let refs: Vec<&str> = chunk.iter().map(|&i| texts[i].as_str()).collect();
        let codes = m.space.codes(&enc.embed(&refs).unwrap().vectors).unwrap();
        for (&i, c) in chunk.iter().zip(codes) {
            assert_eq!(c, alone[i], "document {i} changed code with its batch");
        }
    }
}

#[test]
fn broken_bundles_are_refused_with_file_and_field() {
    let (_t, dir) = scratch();
    std::fs::remove_file(dir.join("codebooks.safetensors")).unwrap();
    let e = load_err(&dir);
    assert!(
        e.contains("codebooks.safetensors") && e.contains("codebooks.file"),
        "{e}"
    );

    let (_t, dir) = scratch();
    std::fs::remove_file(dir.join("encoder.onnx")).unwrap();
    let e = load_err(&dir);
    assert!(
        e.contains("encoder.onnx") && e.contains("make setup"),
        "{e}"
    );

    let (_t, dir) = scratch();
    let mut bytes = std::fs::read(dir.join("codebooks.safetensors")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::remove_file(dir.join("codebooks.safetensors")).unwrap();
    std::fs::write(dir.join("codebooks.safetensors"), bytes).unwrap();
    let e = load_err(&dir);
    assert!(
        e.contains("codebooks.safetensors") && e.contains("codebooks.sha256"),
        "{e}"
    );

    let (_t, dir) = scratch();
    edit_manifest(&dir, |m| m.levels = vec![64, 64, 16]);
    let e = load_err(&dir);
    assert!(e.contains("codebook.3") && e.contains("levels[2]"), "{e}");

    let (_t, dir) = scratch();
    edit_manifest(&dir, |m| m.transform.out_dim += 1);
    let e = load_err(&dir);
    assert!(
        e.contains("transform.mean") || e.contains("transform.matrix"),
        "{e}"
    );

    let (_t, dir) = scratch();
    edit_manifest(&dir, |m| m.fingerprint = "0000000000000000".into());
    let e = load_err(&dir);
    assert!(
        e.contains("manifest.json") && e.contains("fingerprint"),
        "{e}"
    );

    let (_t, dir) = scratch();
    edit_manifest(&dir, |m| {
        m.probes[0].code[2] = (m.probes[0].code[2] + 1) % 32
    });
    let e = load_err(&dir);
    assert!(
        e.contains("manifest.json") && e.contains("probes[0].code"),
        "{e}"
    );

    let (_t, dir) = scratch();
    std::fs::remove_file(dir.join("manifest.json")).unwrap();
    std::fs::write(dir.join("manifest.json"), "{\"format_version\": 1}").unwrap();
    let e = load_err(&dir);
    assert!(
        e.contains("manifest.json") && e.contains("missing field"),
        "{e}"
    );
}

#[test]
fn bad_cards_are_refused_and_a_bundle_without_them_loads() {
    // A changed byte: the checksum names the file and field.
    let (_tmp, dir) = scratch();
    let mut bytes = std::fs::read(dir.join("cards.json")).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::remove_file(dir.join("cards.json")).unwrap();
    std::fs::write(dir.join("cards.json"), &bytes).unwrap();
    let e = load_err(&dir);
    assert!(
        e.contains("cards.json") && e.contains("cards.sha256"),
        "{e}"
    );
    // Cards of another bundle (right checksum, wrong fingerprint).
    let (_tmp, dir) = scratch();
    let text = std::fs::read_to_string(dir.join("cards.json")).unwrap();
    let m: Manifest =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let other = text.replacen(&m.fingerprint, "0123456789abcdef", 1);
    std::fs::remove_file(dir.join("cards.json")).unwrap();
    std::fs::write(dir.join("cards.json"), &other).unwrap();
    let sha = hermes::bundle::sha256_file(&dir.join("cards.json")).unwrap();
    edit_manifest(&dir, |m| m.cards.as_mut().unwrap().sha256 = sha);
    let e = load_err(&dir);
    assert!(
        e.contains("cards.json") && e.contains("describe other codes"),
        "{e}"
    );
    // No cards at all: the bundle loads (and the HTTP API answers 404 for them).
    let (_tmp, dir) = scratch();
    edit_manifest(&dir, |m| m.cards = None);
    std::fs::remove_file(dir.join("cards.json")).unwrap();
    let m = Model::load(&dir, &LoadOptions::default()).unwrap();
    assert!(m.cards.is_none());
}
