//! What `hermes label --count-tokens` costs: the wiki corpus (4 files) labeled by the static
//! tier without token counts, with the bundle's WordPiece `tokenizer.json`, and with a
//! byte-level BPE (vocabulary 2,000, trained as tests/tokens.rs does, when the set-up venv
//! is there), median of `HERMES_BENCH_RUNS` (3) runs each: docs/s (wall time of the whole
//! command, bundle load included), CPU seconds (what to read on a shared machine), their
//! ratios to no counts, and peak RSS; then one 10 MB
//! document, counted whole while it is labeled cut to `--max-doc-chars`: its peak RSS is the
//! memory a count of one huge text takes. Run with `make bench-tokens`; the report goes to
//! `target/bench/tokens.md`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The wiki corpus round-robin into 4 files under `dir` (the corpus repeated `times` times);
/// returns the number of documents.
fn corpus(dir: &Path, times: usize) -> usize {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let wiki = std::fs::read_to_string(support::wiki_jsonl()).expect("run `make setup`");
    let mut files = vec![String::new(); 4];
    let mut n = 0;
    for _ in 0..times {
        for line in wiki.lines() {
            files[n % 4].push_str(line);
            files[n % 4].push('\n');
            n += 1;
        }
    }
    for (k, f) in files.iter().enumerate() {
        std::fs::write(dir.join(format!("part-{k}.jsonl")), f).unwrap();
    }
    n
}

/// A byte-level BPE trained on the first 3,000 wiki documents by the venv's `tokenizers`;
/// `None` without the venv.
fn train_bpe(out: &Path) -> Option<PathBuf> {
    let python = support::root().join(".cache/venv/bin/python");
    if !python.is_file() {
        return None;
    }
    let script = r#"
import json, sys
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
texts = []
with open(sys.argv[1], encoding="utf-8") as f:
    for i, line in enumerate(f):
        if i >= 3000:
            break
        texts.append(json.loads(line)["text"])
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tok.train_from_iterator(texts, trainers.BpeTrainer(
    vocab_size=2000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
tok.save(sys.argv[2])
"#;
    let ok = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(support::wiki_jsonl())
        .arg(out)
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| out.to_path_buf())
}

/// Median wall seconds, CPU seconds and peak RSS (MiB) of `runs` labelings of `input`.
fn label(input: &Path, out: &Path, extra: &[&str], runs: usize) -> (f64, f64, f64) {
    let (mut secs, mut cpu, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let u = support::label_static(input, out, extra);
        secs.push(u.wall_s);
        cpu.push(u.cpu_s);
        rss.push(u.peak_rss_mib);
    }
    (
        support::median(secs),
        support::median(cpu),
        support::median(rss),
    )
}

fn main() {
    let base = support::bench_dir().join("tokens");
    std::fs::create_dir_all(&base).unwrap();
    let runs = support::runs();
    let times = if support::quick() { 1 } else { 2 };
    let input = base.join("in");
    let docs = corpus(&input, times);
    let out = base.join("out");
    let wordpiece = support::default_bundle_dir().join("tokenizer.json");
    let mut tokenizers = vec![("WordPiece (bundle)", wordpiece)];
    if let Some(bpe) = train_bpe(&base.join("bpe.json")) {
        tokenizers.push(("byte-level BPE, 2,000", bpe));
    }

    let mut report = format!(
        "# hermes label --count-tokens\n\n{}; `--encoder static`, {docs} wiki documents in 4 \
         files; median of {runs} runs; docs/s over the command's wall time (bundle load \
         included), and CPU seconds (user + system: the cost on a machine shared with other \
         work, where wall time depends on the neighbours).\n\n\
         | tokens | s | docs/s | ratio | CPU s | CPU ratio | peak RSS MiB |\n\
         |---|---|---|---|---|---|---|\n",
        support::cpu_line()
    );
    println!("{}", support::cpu_line());
    let (base_s, base_cpu, base_rss) = label(&input, &out, &[], runs);
    let line = format!(
        "| none | {base_s:.2} | {:.0} | 1.00 | {base_cpu:.2} | 1.00 | {base_rss:.0} |\n",
        docs as f64 / base_s
    );
    print!("{line}");
    report.push_str(&line);
    for (name, path) in &tokenizers {
        let (s, cpu, rss) = label(
            &input,
            &out,
            &["--count-tokens", path.to_str().unwrap()],
            runs,
        );
        let line = format!(
            "| {name} | {s:.2} | {:.0} | {:.2} | {cpu:.2} | {:.2} | {rss:.0} |\n",
            docs as f64 / s,
            base_s / s,
            cpu / base_cpu
        );
        print!("{line}");
        report.push_str(&line);
    }

    // One huge document: counted whole, labeled cut (--max-doc-chars, default 100,000).
    let huge = base.join("huge");
    let _ = std::fs::remove_dir_all(&huge);
    std::fs::create_dir_all(&huge).unwrap();
    let wiki = hermes::corpus::read_jsonl(&support::wiki_jsonl(), "text", None).unwrap();
    let mut text = String::new();
    for d in wiki.iter().cycle() {
        if text.len() >= 10_000_000 {
            break;
        }
        text.push_str(&d.text);
        text.push('\n');
    }
    std::fs::write(
        huge.join("huge.jsonl"),
        serde_json::json!({"id": "huge", "text": text}).to_string() + "\n",
    )
    .unwrap();
    report.push_str(&format!(
        "\nOne document of {:.1} MB (wiki texts end to end), labeled cut at 100,000 characters \
         and counted whole:\n\n| tokens | s | CPU s | peak RSS MiB |\n|---|---|---|---|\n",
        text.len() as f64 / 1e6
    ));
    let (s, cpu, rss) = label(&huge, &out, &[], 1);
    let line = format!("| none | {s:.2} | {cpu:.2} | {rss:.0} |\n");
    print!("{line}");
    report.push_str(&line);
    for (name, path) in &tokenizers {
        let (s, cpu, rss) = label(&huge, &out, &["--count-tokens", path.to_str().unwrap()], 1);
        let line = format!("| {name} | {s:.2} | {cpu:.2} | {rss:.0} |\n");
        print!("{line}");
        report.push_str(&line);
    }
    let path = support::write_report("tokens.md", &report);
    println!("report: {}", path.display());
}
