//! The real MiniLM encoder through ONNX Runtime: reference values, padding invariance and bad input.
//! Needs `make setup` (the Makefile's `test` target runs it first).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use hermes::encoder::{Embedder, EncoderConfig, EncoderError, MiniLm as Encoder};

fn bundle_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/minilm-wiki")
}

fn encoder() -> &'static Encoder {
    static ENC: OnceLock<Encoder> = OnceLock::new();
    ENC.get_or_init(|| {
        let mut cfg = EncoderConfig::for_dir(&bundle_dir());
        cfg.sessions = 2;
        Encoder::load(&cfg).unwrap_or_else(|e| panic!("load encoder (run `make setup`): {e}"))
    })
}

#[test]
fn hello_world_matches_fastembed_reference() {
    let out = encoder().embed(&["hello world"]).unwrap();
    assert_eq!(out.dim, 384);
    let reference = [-0.034478f32, 0.03102, 0.00673, 0.02611, -0.039362];
    for (i, (got, want)) in out.row(0).iter().zip(reference).enumerate() {
        assert!(
            (got - want).abs() < 1e-3,
            "dim {i}: got {got}, fastembed has {want}"
        );
    }
    let norm: f32 = out.row(0).iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!(
        (norm - 1.0).abs() < 1e-5,
        "embedding is L2-normalised, norm {norm}"
    );
    assert_eq!(out.truncated, vec![false]);
}

fn varied_texts() -> Vec<String> {
    let base = "The quick brown fox jumps over the lazy dog while the committee debates tax policy";
    (0..20)
        .map(|i| match i % 5 {
            0 => "x".to_string(),
            1 => format!("doc {i}"),
            2 => base.repeat(1 + i / 3),
            3 => format!("{} {}", base, "photosynthesis ".repeat(i * 7)),
            _ => format!("Question {i}: why is the sky blue?"),
        })
        .collect()
}

#[test]
fn padding_does_not_change_embeddings() {
    let texts = varied_texts();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let batch = encoder().embed(&refs).unwrap();
    let lens: Vec<usize> = refs
        .iter()
        .map(|t| encoder().tokenize(t).unwrap().ids.len())
        .collect();
    assert!(
        lens.iter().max().unwrap() - lens.iter().min().unwrap() > 100,
        "lengths vary: {lens:?}"
    );
    let mut worst = 0f32;
    for (i, text) in refs.iter().enumerate() {
        let alone = encoder().embed(&[text]).unwrap();
        for (a, b) in alone.row(0).iter().zip(batch.row(i)) {
            worst = worst.max((a - b).abs());
        }
    }
    assert!(worst <= 1e-5, "max |alone - batched| = {worst}");
}

#[test]
fn long_text_is_truncated_and_flagged() {
    let long = "word ".repeat(1000);
    let out = encoder().embed(&[&long, "short"]).unwrap();
    assert_eq!(out.truncated, vec![true, false]);
    let tokens = encoder().tokenize(&long).unwrap();
    assert_eq!(tokens.ids.len(), 256);
}

#[test]
fn odd_texts_embed_to_documented_results() {
    let enc = encoder();
    // Empty text: the [CLS] [SEP] embedding, a finite unit vector.
    let empty = enc.embed(&[""]).unwrap();
    assert_eq!(enc.tokenize("").unwrap().ids.len(), 2);
    // NUL and other control characters are dropped by BERT's normaliser.
    let nul = enc.embed(&["\0\0\0"]).unwrap();
    assert!(
        empty
            .row(0)
            .iter()
            .zip(nul.row(0))
            .all(|(a, b)| (a - b).abs() < 1e-6)
    );
    let with_nul = enc.embed(&["hello\0 world"]).unwrap();
    let plain = enc.embed(&["hello world"]).unwrap();
    assert!(
        with_nul
            .row(0)
            .iter()
            .zip(plain.row(0))
            .all(|(a, b)| (a - b).abs() < 1e-5)
    );
    // Lone surrogates cannot live in a Rust string; lossy decoding makes them U+FFFD.
    let surrogates = String::from_utf16_lossy(&[0xD800, 0x0061, 0xDC00]);
    let s = enc.embed(&[&surrogates]).unwrap();
    // 1 MB of text: truncated at max_tokens, flagged, no hang.
    let mega = "abcdefgh ".repeat(1 << 17);
    assert!(mega.len() >= 1 << 20);
    let m = enc.embed(&[&mega]).unwrap();
    assert_eq!(m.truncated, vec![true]);
    for v in [&empty, &s, &m] {
        let norm: f32 = v.row(0).iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!(v.row(0).iter().all(|x| x.is_finite()) && (norm - 1.0).abs() < 1e-4);
    }
}

#[test]
fn concurrent_callers_share_one_encoder() {
    let enc: &'static Encoder = encoder();
    let want = enc.embed(&["concurrency check"]).unwrap();
    let want = Arc::new(want.vectors);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let want = want.clone();
            std::thread::spawn(move || {
                for _ in 0..5 {
                    let got = enc.embed(&["concurrency check"]).unwrap();
                    assert_eq!(&got.vectors, &*want);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn missing_or_corrupt_model_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EncoderConfig::for_dir(dir.path());
    cfg.tokenizer = bundle_dir().join("tokenizer.json");
    let err = Encoder::load(&cfg)
        .err()
        .expect("missing encoder.onnx must fail");
    assert!(matches!(err, EncoderError::Load { .. }));
    assert!(err.to_string().contains("encoder.onnx"), "{err}");

    std::fs::write(&cfg.model, b"this is not an onnx graph").unwrap();
    let err = Encoder::load(&cfg)
        .err()
        .expect("corrupt encoder.onnx must fail");
    assert!(
        err.to_string().contains("encoder.onnx") && err.to_string().contains("ONNX"),
        "{err}"
    );

    // Truncated copy of the real model (a half-finished download).
    let real = std::fs::read(bundle_dir().join("encoder.onnx")).unwrap();
    std::fs::write(&cfg.model, &real[..real.len() / 3]).unwrap();
    let err = Encoder::load(&cfg)
        .err()
        .expect("truncated encoder.onnx must fail");
    assert!(err.to_string().contains("encoder.onnx"), "{err}");

    let mut cfg = EncoderConfig::for_dir(&bundle_dir());
    cfg.tokenizer = dir.path().join("nope.json");
    let err = Encoder::load(&cfg)
        .err()
        .expect("missing tokenizer must fail");
    assert!(err.to_string().contains("nope.json"), "{err}");
}
