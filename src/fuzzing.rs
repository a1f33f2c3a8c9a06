//! The doors strangers' bytes come through, one function each: what the fuzz targets in
//! `fuzz/` call, and what `tests/fuzz_corpora.rs` replays their committed corpora through on
//! the stable toolchain (docs/testing.md, "Fuzzing").
//!
//! Each function hands the bytes to the real parser, exactly as the service, the jobs or the
//! consumer would, and checks what must hold whatever the input: no panic, an error that
//! says something, and outputs within the limits that were asked for. None of them does I/O
//! beyond memory, so a target runs thousands of inputs a second.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::api::extract::parse_json;
use crate::api::types::{LabelRequest, LookupRequest, StreamLine};
use crate::corpus::reader::{Fields, Format, Reader};
use crate::jobs::mix::quota;
use crate::jobs::mix::spec::Spec;
use crate::labeling::{Document, Limits};
use crate::stream::record::{Coords, Input, Offset, RecordRules};
use crate::stream::{Endpoint, Role};

/// The serving defaults, so a fuzzed body meets the limits a real server has.
fn limits() -> Limits {
    crate::labeling::CoreConfig::serving("fuzz").limits
}

fn said_something(e: &impl std::fmt::Display) {
    assert!(!e.to_string().trim().is_empty(), "an error with no message");
}

/// A `/v1/label` body: parsed and validated as the handler does before any encoding.
pub fn label_body(data: &[u8]) {
    match parse_json::<LabelRequest>(data) {
        Ok(req) => {
            let docs: Vec<Document> = req.documents.into_iter().map(Document::from).collect();
            if let Err(e) = limits().check_documents(&docs) {
                said_something(&e);
            }
        }
        Err(e) => said_something(&e),
    }
}

/// A `/v1/codes/lookup` body.
pub fn lookup_body(data: &[u8]) {
    match parse_json::<LookupRequest>(data) {
        Ok(req) => {
            if let Err(e) = limits().check_lookup(&req.ids) {
                said_something(&e);
            }
        }
        Err(e) => said_something(&e),
    }
}

/// A `/v1/label/stream` body: split into lines as it arrives (in chunks whose sizes the first
/// byte chooses), each line parsed and validated. A line is never longer than the limit given
/// to the splitter, whatever the chunking.
pub fn ndjson_body(data: &[u8]) {
    let Some((&chunk, body)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let max_line = 512;
    let chunks: Vec<Result<bytes::Bytes, axum::Error>> = body
        .chunks(chunk)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let lines = crate::api::stream::split_lines(futures::stream::iter(chunks), max_line);
    let lines: Vec<_> = futures::executor::block_on(futures::StreamExt::collect(lines));
    let mut text_bytes = 0;
    for line in lines {
        if let crate::api::stream::Line::Text(bytes) = line {
            assert!(
                bytes.len() <= max_line + chunk,
                "a line over the limit was buffered"
            );
            text_bytes += bytes.len();
            match parse_json::<StreamLine>(&bytes) {
                Ok(l) => {
                    let doc = Document {
                        id: l.id,
                        text: l.text,
                    };
                    if let Err(e) = limits().check_documents(std::slice::from_ref(&doc)) {
                        said_something(&e);
                    }
                }
                Err(e) => said_something(&e),
            }
        }
    }
    assert!(
        text_bytes <= body.len(),
        "lines hold more bytes than the body"
    );
}

/// A mixture spec (`mix.toml`): parsed, checked against three levels, and when it passes,
/// its Stage-1 shares computed over bucket sizes taken from the input's bytes: the shares are
/// finite, not negative and sum to at most 1.
pub fn mix_spec(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let spec = match Spec::parse(text) {
        Ok(s) => s,
        Err(e) => return said_something(&e),
    };
    if let Err(e) = spec.check(3) {
        return said_something(&e);
    }
    let n: Vec<f64> = data.iter().take(64).map(|&b| f64::from(b)).collect();
    let explicit: Vec<Option<f64>> = match &spec.stage1.weights {
        Some(w) => (0..n.len())
            .map(|i| w.get(&i.to_string()).copied())
            .collect(),
        None => Vec::new(),
    };
    let w = quota::shares(
        spec.stage1.method,
        &n,
        spec.stage1.temperature.unwrap_or(1.0),
        &explicit,
        spec.budget,
        f64::from(spec.max_epochs),
    );
    assert!(
        w.iter().all(|x| x.is_finite() && *x >= 0.0),
        "shares {w:?} for {spec:?}"
    );
    let sum: f64 = w.iter().sum();
    assert!(sum <= 1.0 + 1e-6, "shares sum to {sum} for {spec:?}");
}

/// A bundle's manifest, codebooks and cards, from one input split at the first two `\0`
/// bytes. When all three parse, a zero vector is coded at every depth.
pub fn bundle_files(data: &[u8]) {
    let mut parts = data.splitn(3, |&b| b == 0);
    let (manifest, codebooks, cards) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let Ok(raw) = std::str::from_utf8(manifest) else {
        return;
    };
    let m = match crate::bundle::manifest::parse(raw) {
        Ok(m) => m,
        Err(e) => return said_something(&e),
    };
    if let Ok(raw) = std::str::from_utf8(cards)
        && let Err(e) = crate::bundle::parse_cards(raw, &m)
    {
        said_something(&e);
    }
    match crate::bundle::parse_codebooks(Path::new("fuzz"), &m, codebooks) {
        Ok(space) => {
            let v = vec![0.0f32; space.in_dim()];
            if let Ok(codes) = space.codes(&v) {
                assert_eq!(codes.len(), 1);
            }
        }
        Err(e) => said_something(&e),
    }
}

/// A corpus file in memory; the first byte chooses JSONL, gzip, zstd or Parquet. Every
/// record is read (at most 100,000, so a decompression bomb cannot run for ever); rows
/// increase, and an error ends the file.
pub fn corpus_file(data: &[u8]) {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let format = match kind % 4 {
        0 => Format::Jsonl,
        1 => Format::JsonlGzip,
        2 => Format::JsonlZstd,
        _ => Format::Parquet,
    };
    let fields = Fields {
        text: "text".into(),
        id: "id".into(),
        carry: vec!["quality".into(), "lang".into()],
        max_line_bytes: 4096,
    };
    let reader =
        match Reader::from_bytes(format, bytes::Bytes::copy_from_slice(body), "fuzz", &fields) {
            Ok(r) => r,
            Err(e) => return said_something(&e),
        };
    let mut last = None;
    for record in reader.take(100_000) {
        match record {
            Ok(r) => {
                assert!(last < Some(r.row), "rows out of order");
                assert_eq!(r.carried.len(), fields.carry.len());
                last = Some(r.row);
            }
            Err(e) => {
                said_something(&e);
                assert!(e.to_string().starts_with("fuzz"), "error without the file");
            }
        }
    }
}

/// For the `corpus_file` fuzz target's start: libFuzzer's panic hook aborts before any
/// unwinding, so a panic the reader contains (the parquet crate's, see
/// [`crate::corpus::reader::contained`]) would still count as a crash. This hook lets panics
/// raised inside the parquet crate unwind to the reader, and aborts on every other one.
pub fn let_parquet_panics_unwind() {
    let abort = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let in_parquet = info
            .location()
            .is_some_and(|l| l.file().contains("/parquet-"));
        if !in_parquet {
            abort(info);
        }
    }));
}

/// A stream record's payload, read with the consumer's default rules: a document, or a dead
/// letter with an API error code.
pub fn stream_record(data: &[u8]) {
    let input = Input {
        coords: Coords {
            topic: Arc::from("documents"),
            partition: 0,
            offset: Offset::Kafka(7),
        },
        payload: Some(data.to_vec()),
        fetched: Instant::now(),
    };
    let rules = RecordRules {
        text_field: "text".into(),
        id_field: "id".into(),
        max_text_chars: 64,
        max_id_chars: 16,
    };
    match crate::stream::record::parse(&input, &rules) {
        Ok(doc) => {
            assert!(doc.text.chars().count() <= 64);
            let id = doc.id.expect("a record always gets an id");
            assert!(!id.is_empty() && id.chars().count() <= 16 || id == "documents:0:7");
        }
        Err(bad) => {
            assert!(!bad.code.is_empty());
            said_something(&bad.message);
        }
    }
}

/// A `--source` or `--sink` URL (the first byte chooses the role).
pub fn endpoint_url(data: &[u8]) {
    let Some((&role, url)) = data.split_first() else {
        return;
    };
    let Ok(url) = std::str::from_utf8(url) else {
        return;
    };
    let role = if role % 2 == 0 {
        Role::Source
    } else {
        Role::Sink
    };
    match Endpoint::parse(url, role) {
        Ok(e) => {
            let _ = e.topic();
            if let Endpoint::Redis(r) = &e {
                let _ = r.address();
            }
            if role == Role::Source {
                let _ = e.dead_letter();
            }
        }
        Err(e) => said_something(&e),
    }
}

/// A target: what it is called in `fuzz/`, and its function.
pub type Target = (&'static str, fn(&[u8]));

/// Every target by name: `fuzz/` and the corpus replay test both go through this list.
pub const TARGETS: &[Target] = &[
    ("label_body", label_body),
    ("lookup_body", lookup_body),
    ("ndjson_body", ndjson_body),
    ("mix_spec", mix_spec),
    ("bundle_files", bundle_files),
    ("corpus_file", corpus_file),
    ("stream_record", stream_record),
    ("endpoint_url", endpoint_url),
];
