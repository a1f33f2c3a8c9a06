//! Where a labeled corpus's outputs go and how its readers find them again, as a user meets
//! it: two inputs that would share an output are refused before any row is written, a
//! corpus labeled from Parquet mixes and describes, and `describe` refuses inputs that are not
//! the ones the codes were labeled from.

mod common;

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;

use common::{hermes, stderr};

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn two_roots_with_one_relative_name_are_refused_before_any_row_is_written() {
    let base = tmp("collision");
    let texts = common::wiki_texts(40);
    for (k, sub) in ["a", "b"].iter().enumerate() {
        let dir = base.join("two").join(sub);
        std::fs::create_dir_all(&dir).unwrap();
        let lines: String = texts[k * 20..(k + 1) * 20]
            .iter()
            .enumerate()
            .map(|(i, t)| {
                serde_json::json!({"id": format!("{sub}{i}"), "text": t}).to_string() + "\n"
            })
            .collect();
        std::fs::write(dir.join("x.jsonl"), lines).unwrap();
    }
    let out = base.join("o");
    let (a, b) = (base.join("two/a"), base.join("two/b"));
    let o = hermes(&[
        "label",
        "--input",
        s(&a),
        s(&b),
        "--out",
        s(&out),
        "--encoder",
        "static",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(s(&a.join("x.jsonl"))), "{err}");
    assert!(err.contains(s(&b.join("x.jsonl"))), "{err}");
    assert!(!out.join("codes").exists(), "nothing may be written");
    assert!(!out.join("done").exists(), "nothing may be written");
    // An array task refuses it too, whichever files it would take.
    let o = hermes(&[
        "label",
        "--input",
        s(&a),
        s(&b),
        "--out",
        s(&out),
        "--encoder",
        "static",
        "--shard-index",
        "1",
        "--shard-count",
        "2",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // Their common parent keeps them apart: every row is labeled.
    let o = hermes(&[
        "label",
        "--input",
        s(&base.join("two")),
        "--out",
        s(&out),
        "--encoder",
        "static",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for sub in ["a", "b"] {
        let done: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join(format!("done/{sub}/x.jsonl.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(done["rows"], 20, "{sub}");
    }
}

#[test]
fn a_corpus_labeled_from_parquet_mixes_and_describes() {
    let base = tmp("parquet-mix");
    let texts = common::wiki_texts(300);
    let input = base.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("text", DataType::Utf8, false),
    ]));
    let ids: Vec<String> = (0..texts.len()).map(|i| format!("p{i}")).collect();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(ids.iter())),
        Arc::new(StringArray::from_iter_values(texts.iter())),
    ];
    let batch = RecordBatch::try_new(schema.clone(), cols).unwrap();
    let mut w =
        ArrowWriter::try_new(File::create(input.join("n.parquet")).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();

    let codes = base.join("codes");
    let o = hermes(&[
        "label",
        "--input",
        s(&input),
        "--out",
        s(&codes),
        "--encoder",
        "static",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(codes.join("codes/n.parquet.parquet").is_file());
    assert!(codes.join("done/n.parquet.json").is_file());

    let spec = base.join("mix.toml");
    std::fs::write(
        &spec,
        "seed = 0\ndepth = 1\nbudget = 100\nsize = \"docs\"\nmax_epochs = 1\n[stage1]\nmethod = \"natural\"\n",
    )
    .unwrap();
    let mixed = base.join("mix");
    let o = hermes(&[
        "mix",
        "--codes",
        s(&codes),
        "--spec",
        s(&spec),
        "--out",
        s(&mixed),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(mixed.join("plan.json")).unwrap()).unwrap();
    assert_eq!(
        plan["totals"]["selected_size"].as_f64(),
        Some(100.0),
        "{plan}"
    );
    assert!(mixed.join("selection/n.parquet.parquet").is_file());

    let cards = base.join("cards");
    let o = hermes(&[
        "describe",
        "--codes",
        s(&codes),
        "--input",
        s(&input),
        "--out",
        s(&cards),
        "--depth",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cards.join("cards.json")).unwrap()).unwrap();
    assert_eq!(c["docs"], 300, "{c}");
}

#[test]
fn describe_refuses_inputs_that_are_not_the_labeled_ones() {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("describe-swapped");
    let (input, codes) = common::label_wiki(&base, 2, &[], |_, _| {});
    // Swap the two inputs' contents: same names and row counts give or take one, other rows.
    let (p0, p1) = (input.join("part-0.jsonl"), input.join("part-1.jsonl"));
    let (t0, t1) = (std::fs::read(&p0).unwrap(), std::fs::read(&p1).unwrap());
    std::fs::write(&p0, t1).unwrap();
    std::fs::write(&p1, t0).unwrap();
    let out = base.join("cards");
    let o = hermes(&[
        "describe",
        "--codes",
        s(&codes),
        "--input",
        s(&input),
        "--out",
        s(&out),
        "--depth",
        "1",
    ]);
    let err = stderr(&o);
    assert!(!o.status.success(), "swapped inputs were accepted");
    assert!(
        err.contains("part-0.jsonl") || err.contains("part-1.jsonl"),
        "{err}"
    );
    assert!(err.contains("not the inputs"), "{err}");
    assert!(!out.join("cards.json").exists());
}

#[test]
fn stats_refuses_codes_of_two_labelers_and_mix_reports_its_overshoot() {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("stats-two-labelers");
    let (_, codes) = common::label_wiki(&base, 2, &[], |_, _| {});

    // A byte budget over many depth-2 groups: each group keeps its crossing row (rule 5),
    // and the plan says by how much the selection passes the quotas.
    let spec = base.join("bytes.toml");
    std::fs::write(
        &spec,
        "seed = 0\ndepth = 1\nbudget = 200000\nsize = \"bytes\"\nmax_epochs = 1\n[stage1]\nmethod = \"natural\"\n[stage2]\ndepth = 2\nrule = \"proportional\"\n",
    )
    .unwrap();
    let mixed = base.join("mix");
    let o = hermes(&[
        "mix",
        "--codes",
        s(&codes),
        "--spec",
        s(&spec),
        "--out",
        s(&mixed),
        "--plan-only",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(mixed.join("plan.json")).unwrap()).unwrap();
    let t = &plan["totals"];
    let (selected, quota, over) = (
        t["selected_size"].as_f64().unwrap(),
        t["quota"].as_f64().unwrap(),
        t["overshoot"].as_f64().unwrap(),
    );
    assert!(over > 0.0, "{t}");
    assert!((over - (selected - quota)).abs() < 1e-6, "{t}");
    let svg = std::fs::read_to_string(mixed.join("plan.svg")).unwrap();
    assert!(
        svg.contains("of a budget of 200000 bytes"),
        "the caption names the budget"
    );

    // One file's marker now says another tier wrote it: its buckets must not be summed.
    let marker = codes.join("done/part-1.jsonl.json");
    let mut done: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&marker).unwrap()).unwrap();
    done["encoder"] = "minilm".into();
    std::fs::write(&marker, done.to_string()).unwrap();
    let o = hermes(&["stats", "--input", s(&codes)]);
    let err = stderr(&o);
    assert!(!o.status.success(), "stats summed codes of two labelers");
    assert!(err.contains("not comparable"), "{err}");
}

/// Peak RSS (VmHWM, KiB) of a child, polled until it exits.
fn run_peak_kib(args: &[&str]) -> (std::process::ExitStatus, u64, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hermes"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    let status = loop {
        if let Ok(s) = std::fs::read_to_string(&status_path)
            && let Some(kib) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    (status, peak, err)
}

#[test]
fn a_20_mb_document_is_cut_before_tokenization_and_labels_in_bounded_memory() {
    let base = tmp("huge-doc");
    let texts = common::wiki_texts(20);
    // A 20 MB text of real words (the wiki texts repeated), then 19 ordinary documents.
    let mut huge = String::new();
    while huge.len() < 20 << 20 {
        huge.push_str(&texts[0]);
        huge.push(' ');
    }
    let small = base.join("small");
    let big = base.join("big");
    let cut = base.join("cut");
    for d in [&small, &big, &cut] {
        std::fs::create_dir_all(d).unwrap();
    }
    let line = |id: &str, t: &str| serde_json::json!({"id": id, "text": t}).to_string() + "\n";
    let rest: String = texts[1..]
        .iter()
        .enumerate()
        .map(|(i, t)| line(&format!("d{i}"), t))
        .collect();
    std::fs::write(small.join("x.jsonl"), line("h", &texts[0]) + &rest).unwrap();
    std::fs::write(big.join("x.jsonl"), line("h", &huge) + &rest).unwrap();
    let first: String = huge.chars().take(100_000).collect();
    std::fs::write(cut.join("x.jsonl"), line("h", &first)).unwrap();

    let label = |input: &Path, out: &str| {
        let out = base.join(out);
        let (status, peak, err) = run_peak_kib(&[
            "label",
            "--input",
            s(input),
            "--out",
            s(&out),
            "--encoder",
            "static",
        ]);
        assert!(status.success(), "{err}");
        (out, peak)
    };
    let (_, small_peak) = label(&small, "o-small");
    let (big_out, big_peak) = label(&big, "o-big");
    let (cut_out, _) = label(&cut, "o-cut");
    // The line itself is read whole (20 MB, a few copies while parsed); tokenizing it whole
    // took 2.5 GB. What is allowed beyond the small run: a few copies of the line.
    let extra_mib = big_peak.saturating_sub(small_peak) / 1024;
    assert!(
        extra_mib < 200,
        "a 20 MB line cost {extra_mib} MiB more than a small one ({big_peak} vs {small_peak} KiB)"
    );
    let row = |out: &Path| -> (Vec<u16>, bool, u32) {
        let f = File::open(out.join("codes/x.jsonl.parquet")).unwrap();
        let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
            .unwrap()
            .build()
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        use arrow_array::cast::AsArray;
        let code = ["c1", "c2", "c3"]
            .iter()
            .map(|c| {
                b.column_by_name(c)
                    .unwrap()
                    .as_primitive::<arrow_array::types::UInt16Type>()
                    .value(0)
            })
            .collect();
        let truncated = b.column_by_name("truncated").unwrap().as_boolean().value(0);
        let bytes = b
            .column_by_name("bytes")
            .unwrap()
            .as_primitive::<arrow_array::types::UInt32Type>()
            .value(0);
        (code, truncated, bytes)
    };
    let (code, truncated, bytes) = row(&big_out);
    assert!(truncated, "a cut document is marked truncated");
    assert_eq!(
        bytes as usize,
        huge.len(),
        "bytes is the whole text's length"
    );
    // The code is the code of the text's first 100,000 characters.
    assert_eq!(code, row(&cut_out).0);
}

#[test]
fn carried_fields_name_the_input_when_they_go_wrong() {
    let base = tmp("carry-errors");
    let texts = common::wiki_texts(3);
    let input = base.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let lines: String = [
        serde_json::json!({"id": "a", "text": texts[0], "score": 0.5}),
        serde_json::json!({"id": "b", "text": texts[1], "score": 0.7}),
        serde_json::json!({"id": "c", "text": texts[2], "score": "high"}),
    ]
    .iter()
    .map(|v| v.to_string() + "\n")
    .collect();
    let file = input.join("x.jsonl");
    std::fs::write(&file, lines).unwrap();
    // A type clash names the input file and its row, not the output being written.
    let o = hermes(&[
        "label",
        "--input",
        s(&input),
        "--out",
        s(&base.join("o1")),
        "--encoder",
        "static",
        "--carry",
        "score",
        "--chunk-docs",
        "2",
    ]);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains(&format!("{}: row 2: carried field `score`", s(&file))),
        "{err}"
    );
    // A field no row has (a misspelt --carry) is labeled, with a warning naming it.
    let o = hermes(&[
        "label",
        "--input",
        s(&input),
        "--out",
        s(&base.join("o2")),
        "--encoder",
        "static",
        "--carry",
        "scroe",
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("no row has the carried field `scroe`"),
        "{err}"
    );
}

/// What Python writes labels: a byte order mark before the first line, bare `NaN` and
/// `-Infinity` (read as null); a lone surrogate escape fails its own file only, named by
/// row and column, and the exit code says a file failed.
#[test]
fn python_written_jsonl_labels_and_a_bad_escape_stops_only_its_file() {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let base = tmp("python-jsonl");
    let texts = common::wiki_texts(4);
    let input = base.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let line = |id: &str, t: &str, q: &str| {
        format!(
            "{{\"id\": \"{id}\", \"text\": {}, \"quality\": {q}}}\n",
            serde_json::json!(t)
        )
    };
    let a = format!(
        "\u{feff}{}{}",
        line("a0", &texts[0], "NaN"),
        line("a1", &texts[1], "-Infinity")
    );
    std::fs::write(input.join("a.jsonl"), a).unwrap();
    std::fs::write(input.join("b.jsonl"), line("b0", &texts[2], "0.5")).unwrap();
    let c = line("c0", &texts[3], "1") + "{\"id\": \"c1\", \"text\": \"ab\\ud800\"}\n";
    std::fs::write(input.join("c.jsonl"), c).unwrap();
    let out = base.join("o");
    let o = hermes(&[
        "label",
        "--input",
        s(&input),
        "--out",
        s(&out),
        "--encoder",
        "static",
        "--carry",
        "quality",
    ]);
    let err = stderr(&o);
    assert!(
        !o.status.success(),
        "a failed file must show in the exit code: {err}"
    );
    assert!(
        err.contains("c.jsonl: row 1: not JSON: \\ud800 at column 25"),
        "{err}"
    );
    let quality = |name: &str| -> Vec<Option<f64>> {
        let path = out.join(name);
        let file = File::open(&path).unwrap_or_else(|e| panic!("{}: {e}\n{err}", path.display()));
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let mut values = Vec::new();
        for batch in reader {
            let batch = batch.unwrap();
            let col = batch.column_by_name("quality").unwrap();
            let col = arrow_cast::cast(col, &DataType::Float64).unwrap();
            let col = col
                .as_any()
                .downcast_ref::<arrow_array::Float64Array>()
                .unwrap();
            values.extend(col.iter());
        }
        values
    };
    assert_eq!(quality("codes/a.jsonl.parquet"), vec![None, None], "{err}");
    assert_eq!(quality("codes/b.jsonl.parquet"), vec![Some(0.5)], "{err}");
    assert!(!out.join("codes/c.jsonl.parquet").exists());
}

/// A line longer than `--max-line-bytes` fails its file with the row and the flag named, and
/// is never read whole; the other files are labeled.
#[test]
fn a_line_over_max_line_bytes_fails_its_file_only() {
    let base = tmp("long-line");
    let texts = common::wiki_texts(2);
    let input = base.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let ok = serde_json::json!({"id": "a", "text": texts[0]}).to_string() + "\n";
    std::fs::write(input.join("a.jsonl"), &ok).unwrap();
    // 2 MB without a newline: the kind of line a broken export leaves.
    let long = format!("{ok}{{\"id\": \"b\", \"text\": \"{}", "x".repeat(2_000_000));
    std::fs::write(input.join("b.jsonl"), long).unwrap();
    let out = base.join("o");
    let o = hermes(&[
        "label",
        "--input",
        s(&input),
        "--out",
        s(&out),
        "--encoder",
        "static",
        "--max-line-bytes",
        "100000",
    ]);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("b.jsonl: row 1: the line is longer than 100000 bytes (--max-line-bytes)"),
        "{err}"
    );
    assert!(out.join("codes/a.jsonl.parquet").is_file(), "{err}");
    assert!(!out.join("codes/b.jsonl.parquet").exists());
}
