//! `hermes label` and `hermes stats` on real wiki documents, as a user runs them: the real
//! binary, real .jsonl.zst and .parquet inputs, a 4-shard split, `kill -9` and rerun, bad
//! inputs, a real single-node Slurm cluster running the sbatch script, and the Kubernetes
//! Job validated against the Kubernetes schemas.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{UInt16Type, UInt32Type, UInt64Type};
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};

use common::{Proc, Server, client};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn hermes(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hermes"));
    c.args(args).current_dir(ROOT);
    c
}

fn run(args: &[&str]) -> Output {
    hermes(args).output().expect("run hermes")
}

/// Wiki documents spread over the corpus: (id, text).
fn wiki(n: usize) -> Vec<(String, String)> {
    let path = Path::new(ROOT).join(".cache/data/wiki.jsonl");
    let docs = hermes::corpus::read_jsonl(&path, "text", None).expect("run `make setup`");
    let step = docs.len() / n;
    docs.into_iter()
        .step_by(step)
        .take(n)
        .enumerate()
        .map(|(i, d)| (format!("w{i}"), d.text))
        .collect()
}

fn write_zst(path: &Path, docs: &[(String, String)]) {
    let mut text = String::new();
    for (id, t) in docs {
        text.push_str(&json!({"id": id, "text": t}).to_string());
        text.push('\n');
    }
    std::fs::write(path, zstd::encode_all(text.as_bytes(), 3).unwrap()).unwrap();
}

/// Parquet with a `text` column and, when `with_ids`, an `id` column.
fn write_parquet(path: &Path, docs: &[(String, String)], with_ids: bool) {
    let mut fields = vec![Field::new("text", DataType::Utf8, false)];
    let mut cols: Vec<ArrayRef> = vec![Arc::new(StringArray::from_iter_values(
        docs.iter().map(|d| d.1.as_str()),
    ))];
    if with_ids {
        fields.push(Field::new("id", DataType::Utf8, false));
        cols.push(Arc::new(StringArray::from_iter_values(
            docs.iter().map(|d| d.0.as_str()),
        )));
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), cols).unwrap();
    let mut w = ArrowWriter::try_new(File::create(path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// One output row: (id, row, code, cell, truncated).
type Row = (String, u64, Vec<u32>, u32, bool);

fn read_output(out: &Path) -> Vec<Row> {
    let mut rows = Vec::new();
    for f in hermes::corpus::codes::code_files(out).unwrap() {
        let r = ParquetRecordBatchReaderBuilder::try_new(File::open(&f).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in r {
            let b = batch.unwrap();
            let id = b.column_by_name("id").unwrap().as_string::<i32>().clone();
            let row = b
                .column_by_name("row")
                .unwrap()
                .as_primitive::<UInt64Type>()
                .clone();
            let cell = b
                .column_by_name("cell")
                .unwrap()
                .as_primitive::<UInt32Type>()
                .clone();
            let trunc = b.column_by_name("truncated").unwrap().as_boolean().clone();
            let c: Vec<_> = ["c1", "c2", "c3"]
                .iter()
                .map(|n| {
                    b.column_by_name(n)
                        .unwrap()
                        .as_primitive::<UInt16Type>()
                        .clone()
                })
                .collect();
            for i in 0..b.num_rows() {
                rows.push((
                    id.value(i).to_string(),
                    row.value(i),
                    c.iter().map(|a| u32::from(a.value(i))).collect(),
                    cell.value(i),
                    trunc.value(i),
                ));
            }
        }
    }
    rows
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// 8 input files of the same documents, alternately .jsonl.zst and .parquet (one Parquet
/// file without ids, so its rows get `<file>:<row>`), in two directories.
fn corpus(dir: &Path, docs: &[(String, String)]) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir.join("part")).unwrap();
    let per = docs.len().div_ceil(8);
    let mut files = Vec::new();
    for (i, chunk) in docs.chunks(per).enumerate() {
        let sub = if i < 4 {
            dir.to_path_buf()
        } else {
            dir.join("part")
        };
        let path = if i % 2 == 0 {
            let p = sub.join(format!("f{i}.jsonl.zst"));
            write_zst(&p, chunk);
            p
        } else {
            let p = sub.join(format!("f{i}.parquet"));
            write_parquet(&p, chunk, i != 3);
            p
        };
        files.push(path);
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_shards_label_every_document_once_with_the_services_codes_even_after_kill_9() {
    let docs = wiki(1000);
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    corpus(&input, &docs);
    let out = tmp.path().join("out");
    let (inp, outp) = (input.to_str().unwrap(), out.to_str().unwrap());

    // Shard 0 is killed with SIGKILL in the middle of its work, then run again.
    let mut child = Proc::spawn(
        hermes(&[
            "label",
            "--input",
            inp,
            "--out",
            outp,
            "--shard-index",
            "0",
            "--shard-count",
            "4",
            "--chunk-docs",
            "16",
        ])
        .stderr(std::process::Stdio::null()),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let first_done = out.join("done/f0.jsonl.zst.json");
    while !first_done.exists() {
        assert!(
            Instant::now() < deadline,
            "shard 0 never finished its first file"
        );
        assert!(child.try_wait().unwrap().is_none(), "shard 0 ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Its second file is being written now.
    std::thread::sleep(Duration::from_millis(1500));
    child.kill9();
    assert!(
        !out.join("done/part/f4.jsonl.zst.json").exists(),
        "the kill came too late to interrupt the second file"
    );
    for shard in 0..4 {
        let o = run(&[
            "label",
            "--input",
            inp,
            "--out",
            outp,
            "--shard-index",
            &shard.to_string(),
            "--shard-count",
            "4",
        ]);
        assert!(o.status.success(), "shard {shard}: {}", stderr(&o));
        if shard == 0 {
            assert!(
                stderr(&o).contains("skipped f0.jsonl.zst (already done)"),
                "{}",
                stderr(&o)
            );
        }
    }
    // A rerun of a finished task does nothing.
    let o = run(&[
        "label",
        "--input",
        inp,
        "--out",
        outp,
        "--shard-index",
        "1",
        "--shard-count",
        "4",
    ]);
    assert!(stderr(&o).contains("0 files labeled"), "{}", stderr(&o));

    let rows = read_output(&out);
    assert_eq!(rows.len(), docs.len(), "one row per input document");
    let mut seen: HashMap<String, &Row> = HashMap::new();
    for r in &rows {
        assert!(
            seen.insert(r.0.clone(), r).is_none(),
            "{} written twice",
            r.0
        );
    }
    // No stray temporary files.
    let strays: Vec<_> = walk(&out)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(strays.is_empty(), "{strays:?}");

    // Codes equal /v1/label's for every document.
    let server = Server::start(&["--cache-texts", "0"]).await;
    let per = docs.len().div_ceil(8);
    for (file, chunk) in docs.chunks(per).enumerate() {
        let body =
            json!({"documents": chunk.iter().map(|(_, t)| json!({"text": t})).collect::<Vec<_>>()});
        let v: Value = client()
            .post(server.url("/v1/label"))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for (row, ((id, _), want)) in chunk
            .iter()
            .zip(v["results"].as_array().unwrap())
            .enumerate()
        {
            let key = if file == 3 {
                format!("f3.parquet:{row}")
            } else {
                id.clone()
            };
            let got = seen.get(&key).unwrap_or_else(|| panic!("no row for {key}"));
            assert_eq!(got.1, row as u64, "{key}: row");
            assert_eq!(json!(got.2), want["code"], "{key}: code");
            assert_eq!(json!(got.3), want["cell"], "{key}: cell");
            assert_eq!(json!(got.4), want["truncated"], "{key}: truncated");
        }
    }

    // hermes stats over the same output.
    let svg = tmp.path().join("sizes.svg");
    let o = run(&["stats", "--input", outp, "--plot", svg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["documents"], 1000);
    let depths = report["depths"].as_array().unwrap();
    assert_eq!(depths.len(), 3);
    for d in depths {
        let sizes: u64 = d["sizes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["size"].as_u64().unwrap())
            .sum();
        assert_eq!(sizes, 1000);
        assert_eq!(
            d["buckets"].as_u64().unwrap() as usize,
            d["sizes"].as_array().unwrap().len()
        );
        assert!(d["perplexity"].as_f64().unwrap() <= d["buckets"].as_f64().unwrap() + 1e-9);
    }
    let l1: usize = rows
        .iter()
        .map(|r| r.2[0])
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    assert_eq!(depths[0]["buckets"].as_u64().unwrap() as usize, l1);
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(
        plot.starts_with("<svg") && plot.contains("depth 3"),
        "{}",
        &plot[..200.min(plot.len())]
    );
    let csv = run(&["stats", "--input", outp, "--format", "csv", "--depth", "1"]);
    let text = String::from_utf8(csv.stdout).unwrap();
    assert_eq!(text.lines().count(), 1 + l1);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn bad_inputs_fail_by_name_and_row_and_leave_the_rest_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("in");
    std::fs::create_dir_all(&d).unwrap();
    let good = wiki(10);
    write_zst(&d.join("a-good.jsonl.zst"), &good);
    std::fs::write(
        d.join("b-no-text.jsonl"),
        "{\"text\":\"fine\"}\n{\"body\":\"x\"}\n",
    )
    .unwrap();
    std::fs::write(
        d.join("c-number.jsonl"),
        "{\"text\":\"fine\"}\n{\"text\":42}\n",
    )
    .unwrap();
    std::fs::write(
        d.join("d-latin1.jsonl"),
        b"{\"text\":\"fine\"}\n{\"text\":\"caf\xe9\"}\n",
    )
    .unwrap();
    let gz = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&"{\"text\":\"fine\"}\n".repeat(5000).into_bytes())
            .unwrap();
        let mut v = e.finish().unwrap();
        v.truncate(v.len() / 2);
        v
    };
    std::fs::write(d.join("e-cut.jsonl.gz"), gz).unwrap();
    std::fs::write(d.join("f-corrupt.jsonl.zst"), b"\x28\xb5\x2f\xfdgarbage").unwrap();
    std::fs::write(d.join("g-corrupt.parquet"), b"PAR1 not really parquet PAR1").unwrap();
    let out = tmp.path().join("out");
    let missing = d.join("h-missing.jsonl");
    let o = run(&[
        "label",
        "--input",
        d.to_str().unwrap(),
        missing.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    for (file, what) in [
        ("b-no-text.jsonl", "row 1: missing text field `text`"),
        (
            "c-number.jsonl",
            "row 1: field `text` is a number, not a string",
        ),
        ("d-latin1.jsonl", "row 1: not UTF-8"),
        ("e-cut.jsonl.gz", "row "),
        ("f-corrupt.jsonl.zst", "row 0: cannot read"),
        ("g-corrupt.parquet", "not a readable Parquet file"),
        ("h-missing.jsonl", "cannot open"),
    ] {
        assert!(
            err.contains(&format!("{file}: {what}")),
            "no `{file}: {what}` in:\n{err}"
        );
        assert!(
            !out.join(format!("done/{file}.json")).exists(),
            "{file} marked done"
        );
        assert!(
            !out.join(format!("codes/{file}.parquet")).exists(),
            "{file} has output"
        );
    }
    assert!(err.contains("7 input file(s) failed"), "{err}");
    assert!(err.contains("(corrupt or truncated file?)"), "{err}");
    // The good file is labeled and stays so across a rerun that fails again.
    let done = out.join("done/a-good.jsonl.zst.json");
    let before = std::fs::read(&done).unwrap();
    let o = run(&[
        "label",
        "--input",
        d.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert_eq!(std::fs::read(&done).unwrap(), before);
    assert_eq!(read_output(&out).len(), 10);
    assert!(
        walk(&out)
            .iter()
            .all(|p| !p.to_string_lossy().contains(".tmp-"))
    );
}

/// Stops the test cluster however the test ends. slurmctld and slurmd daemonize (they leave
/// the test's process group), so they are found by their pid files: `slurm_cluster.sh stop`
/// sends SIGTERM (and stops munged if it started it); what is still there 10 s later gets
/// SIGKILL.
struct Cluster(PathBuf);

impl Drop for Cluster {
    fn drop(&mut self) {
        let pids: Vec<i32> = ["slurmctld.pid", "slurmd.pid"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(self.0.join(f)).ok())
            .filter_map(|p| p.trim().parse().ok())
            .collect();
        let _ = Command::new("bash")
            .args(["scripts/slurm_cluster.sh", "stop"])
            .arg(&self.0)
            .current_dir(ROOT)
            .status();
        // A daemon's process, not a reused pid: its command line names the daemon.
        let alive = |pid: i32| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("slurm"))
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        for &pid in pids.iter().filter(|&&p| alive(p)) {
            // SAFETY: plain system call, on a slurm daemon this test started.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

#[test]
fn the_sbatch_script_runs_as_a_four_task_slurm_array() {
    let tmp = tempfile::tempdir().unwrap();
    let slurm = tmp.path().join("slurm");
    // Before the start, which may fail half-way with daemons up.
    let _cluster = Cluster(slurm.clone());
    let start = Command::new("bash")
        .args(["scripts/slurm_cluster.sh", "start"])
        .arg(&slurm)
        .current_dir(ROOT)
        .output()
        .unwrap();
    assert!(
        start.status.success(),
        "Slurm did not start: {}",
        stderr(&start)
    );
    let conf = String::from_utf8(start.stdout).unwrap().trim().to_string();
    let docs = wiki(40);
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    for (i, chunk) in docs.chunks(5).enumerate() {
        if i % 2 == 0 {
            write_zst(&input.join(format!("f{i}.jsonl.zst")), chunk);
        } else {
            write_parquet(&input.join(format!("f{i}.parquet")), chunk, true);
        }
    }
    let out = tmp.path().join("out");
    let o = Command::new("sbatch")
        .args(["--wait", "--array=0-3"])
        .arg(Path::new(ROOT).join("deploy/slurm/label.sbatch"))
        .current_dir(tmp.path())
        .env("SLURM_CONF", &conf)
        .env("HERMES_BIN", env!("CARGO_BIN_EXE_hermes"))
        .env("HERMES_BUNDLE", Path::new(ROOT).join("models/minilm-wiki"))
        .env("HERMES_INPUT", &input)
        .env("HERMES_OUT", &out)
        .output()
        .unwrap();
    let logs: BTreeMap<String, String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            let name = p.file_name()?.to_string_lossy().into_owned();
            name.starts_with("hermes-label-")
                .then(|| (name, std::fs::read_to_string(&p).unwrap_or_default()))
        })
        .collect();
    assert!(o.status.success(), "sbatch: {}\n{logs:#?}", stderr(&o));
    assert_eq!(logs.len(), 4, "one log per array task: {logs:#?}");
    for (task, log) in logs.values().enumerate() {
        assert!(
            log.contains(&format!("task {task} of 4: 2 of 8 input files")),
            "{log}"
        );
    }
    let rows = read_output(&out);
    assert_eq!(rows.len(), 40);
    let ids: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(ids.len(), 40);
    assert_eq!(walk(&out.join("done")).len(), 8);
}

#[test]
fn the_kubernetes_manifests_are_valid() {
    // kubernetes-validate --strict rejects unknown fields and wrong types against the
    // Kubernetes 1.33 schemas it ships (offline).
    let py = Path::new(ROOT).join(".cache/venv/bin/kubernetes-validate");
    let dir = Path::new(ROOT).join("deploy/k8s");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    assert!(
        files.iter().any(|f| f.ends_with("label-job.yaml")),
        "{files:?}"
    );
    let o = Command::new(py)
        .args(["--strict", "--kubernetes-version", "1.33.0"])
        .args(&files)
        .output()
        .expect("run `scripts/setup.sh --test` for kubernetes-validate");
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(o.status.success(), "{text}");
    let job = std::fs::read_to_string(dir.join("label-job.yaml")).unwrap();
    for needle in [
        "completionMode: Indexed",
        "HERMES_SHARD_COUNT",
        "hermes",
        "label",
    ] {
        assert!(job.contains(needle), "label-job.yaml lacks {needle}");
    }
    let consume = std::fs::read_to_string(dir.join("consume.yaml")).unwrap();
    for needle in [
        "args: [\"consume\"]",
        "HERMES_SOURCE",
        "HERMES_MAX_IN_FLIGHT",
        "hermes_consume_lag",
    ] {
        assert!(consume.contains(needle), "consume.yaml lacks {needle}");
    }
}

/// The static tier labels a corpus with the contract's extra columns and carried fields; a
/// rerun into the same output with the other tier is refused instead of skipping files
/// whose codes are the static tier's.
#[test]
fn a_tier_never_resumes_another_tiers_output_and_extra_columns_are_written() {
    use arrow_array::Array;
    use arrow_array::types::{Float32Type, Float64Type};
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let docs = wiki(60);
    let mut text = String::new();
    for (i, (id, t)) in docs.iter().enumerate() {
        let mut o = json!({"id": id, "text": t, "src": format!("s{}", i % 3), "flag": i % 2 == 0});
        if i % 5 != 0 {
            o["score"] = json!(i as f64 / 10.0);
        }
        text.push_str(&o.to_string());
        text.push('\n');
    }
    std::fs::write(input.join("a.jsonl"), text).unwrap();
    let out = dir.path().join("out");
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());

    let refused = run(&["label", "--input", i, "--out", o, "--carry", "bytes"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("--carry bytes: collides"),
        "{}",
        stderr(&refused)
    );

    let first = run(&[
        "label",
        "--input",
        i,
        "--out",
        o,
        "--encoder",
        "static",
        "--carry",
        "score,src,flag",
    ]);
    assert!(first.status.success(), "{}", stderr(&first));
    let done: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("done/a.jsonl.json")).unwrap())
            .unwrap();
    assert_eq!(done["encoder"], "static", "{done}");
    assert!(
        done["weights"].as_str().is_some_and(|w| w.len() == 16),
        "{done}"
    );

    let f = File::open(out.join("codes/a.jsonl.parquet")).unwrap();
    let batches: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(batches.len(), 1);
    let b = &batches[0];
    assert_eq!(b.num_rows(), docs.len());
    let bytes = b
        .column_by_name("bytes")
        .unwrap()
        .as_primitive::<UInt32Type>();
    let score = b
        .column_by_name("score")
        .unwrap()
        .as_primitive::<Float64Type>();
    let src = b.column_by_name("src").unwrap().as_string::<i32>();
    let flag = b.column_by_name("flag").unwrap().as_boolean();
    let r: Vec<_> = ["r1", "r2", "r3"]
        .iter()
        .map(|n| {
            b.column_by_name(n)
                .unwrap()
                .as_primitive::<Float32Type>()
                .clone()
        })
        .collect();
    for (k, (_, t)) in docs.iter().enumerate() {
        assert_eq!(bytes.value(k) as usize, t.len(), "row {k}");
        assert_eq!(score.is_null(k), k % 5 == 0, "row {k}");
        if k % 5 != 0 {
            assert_eq!(score.value(k), k as f64 / 10.0);
        }
        assert_eq!(src.value(k), format!("s{}", k % 3));
        assert_eq!(flag.value(k), k % 2 == 0);
        for a in &r {
            assert!(a.value(k).is_finite() && a.value(k) >= 0.0, "row {k}");
        }
    }
    // Each level takes away part of the distance on average: the residuals shrink.
    let mean = |a: &arrow_array::Float32Array| a.values().iter().sum::<f32>() / a.len() as f32;
    assert!(
        mean(&r[0]) > mean(&r[1]) && mean(&r[1]) > mean(&r[2]),
        "{:?}",
        r.iter().map(mean).collect::<Vec<_>>()
    );

    let second = run(&["label", "--input", i, "--out", o, "--encoder", "minilm"]);
    assert!(
        !second.status.success(),
        "a minilm rerun skipped static codes"
    );
    let err = stderr(&second);
    assert!(
        err.contains("static encoder") && err.contains("minilm encoder"),
        "{err}"
    );
}
