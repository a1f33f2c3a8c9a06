//! `hermes label --count-tokens`: the `tokens` column against an independent re-computation in
//! Python (`tokenizers`, the venv's pinned version) on the same texts, row by row, for a
//! byte-level BPE and a Unigram trained here on the wiki corpus and for the bundle's WordPiece;
//! the flag's refusals; the done marker's tokenizer; `hermes stats`' tokens per bucket; and
//! `hermes mix` reading the column as its size unit.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow_array::cast::AsArray;
use arrow_array::types::{UInt16Type, UInt32Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use common::{hermes, stderr};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn python() -> PathBuf {
    Path::new(ROOT).join(".cache/venv/bin/python")
}

/// Runs a Python script (with `args`) to its end; panics with its stderr on failure.
fn py(script: &str, args: &[&Path]) -> String {
    let o = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run the venv's python (make setup)");
    assert!(
        o.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// A byte-level BPE (vocabulary 2,000) trained on the first wiki documents, saved with a
/// post-processor that adds a special token and with truncation at 50: neither may touch a
/// count.
const TRAIN_BPE: &str = r#"
import json, sys
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers, processors
corpus, out = sys.argv[1], sys.argv[2]
texts = []
with open(corpus, encoding="utf-8") as f:
    for i, line in enumerate(f):
        if i >= 3000:
            break
        texts.append(json.loads(line)["text"])
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(vocab_size=2000, special_tokens=["<|endoftext|>"],
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
tok.train_from_iterator(texts, trainer)
tok.post_processor = processors.TemplateProcessing(
    single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", 0)])
tok.enable_truncation(50)
tok.save(out)
"#;

/// A Unigram (vocabulary 1,000; NFKC, Metaspace), as SentencePiece-style tokenizers are.
const TRAIN_UNIGRAM: &str = r#"
import json, sys
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers, normalizers
corpus, out = sys.argv[1], sys.argv[2]
texts = []
with open(corpus, encoding="utf-8") as f:
    for i, line in enumerate(f):
        if i >= 1000:
            break
        texts.append(json.loads(line)["text"])
tok = Tokenizer(models.Unigram())
tok.normalizer = normalizers.NFKC()
tok.pre_tokenizer = pre_tokenizers.Metaspace()
tok.decoder = decoders.Metaspace()
tok.train_from_iterator(texts, trainers.UnigramTrainer(
    vocab_size=1000, special_tokens=["<unk>"], unk_token="<unk>"))
tok.save(out)
"#;

/// The reference: `{id: len(encode(text, add_special_tokens=False).ids)}` over JSONL files,
/// with the file's truncation and padding turned off (a count is of the whole text).
const COUNT: &str = r#"
import json, sys
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
tok.no_truncation()
tok.no_padding()
counts = {}
for path in sys.argv[2:]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            o = json.loads(line)
            counts[o["id"]] = len(tok.encode(o["text"], add_special_tokens=False).ids)
print(json.dumps(counts))
"#;

/// Texts that tokenizers disagree on when anything is off: normalization, bytes, special
/// tokens in the text, a text cut by `--max-doc-chars 1000`.
fn hard_cases(wiki: &[String]) -> Vec<(String, String)> {
    let long = wiki.iter().fold(String::new(), |mut s, t| {
        if s.chars().count() < 20_000 {
            s.push_str(t);
            s.push_str("\n\n日本語の段落。 café 👩‍👩‍👧‍👦\n");
        }
        s
    });
    let cases = [
        "Café naïve résumé Ångström — e\u{301} combining, n\u{303}, \u{301} leading mark",
        "ﬁ ligature, Ｆｕｌｌｗｉｄｔｈ, ⅷ, ㎞, ﬀ: NFKC folds these",
        "日本語のテキストです。中文文本没有空格分词。한국어 텍스트입니다.",
        "👩‍👩‍👧‍👦 family, 🏳️‍🌈 flag, 👍🏽 skin tone, 🇫🇷🇩🇪 flags, ❤️‍🔥",
        "a\u{0}b\u{1}c\u{7}\u{1b}[0m\td\r\ne\u{7f}\u{85}f\u{2028}g\u{200b}h\u{feff}i\u{200d}j",
        "<|endoftext|> in the text [CLS] [SEP] [UNK] [PAD] [MASK] <s></s>",
        "שלום עולם مرحبا بالعالم Привет мир Γειά σου κόσμε",
        "\u{e000}\u{10fffd} private use, 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math, 𓀀 hieroglyph",
        "   \n\t  \r\n ",
        "x",
    ];
    let mut out: Vec<(String, String)> = cases
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("hard{i}"), t.to_string()))
        .collect();
    out.push((
        "longword".into(),
        format!(
            "{}{} end",
            "a".repeat(5000),
            "supercalifragilistic".repeat(200)
        ),
    ));
    out.push(("cjkrun".into(), "漢字仮名交じり文".repeat(400)));
    out.push(("long".into(), long));
    out
}

fn write_jsonl(path: &Path, docs: &[(String, String)]) {
    let mut s = String::new();
    for (id, t) in docs {
        s.push_str(&json!({"id": id, "text": t}).to_string());
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
}

/// Every row of `out`'s codes: id → (c1, tokens, truncated).
fn read_tokens(out: &Path) -> BTreeMap<String, (u16, u32, bool)> {
    let mut rows = BTreeMap::new();
    for f in hermes::corpus::codes::code_files(out).unwrap() {
        let r = ParquetRecordBatchReaderBuilder::try_new(File::open(&f).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for b in r {
            let b = b.unwrap();
            let id = b.column_by_name("id").unwrap().as_string::<i32>().clone();
            let c1 = b
                .column_by_name("c1")
                .unwrap()
                .as_primitive::<UInt16Type>()
                .clone();
            let tokens = b
                .column_by_name("tokens")
                .expect("a tokens column")
                .as_primitive::<UInt32Type>()
                .clone();
            let cut = b.column_by_name("truncated").unwrap().as_boolean().clone();
            for i in 0..b.num_rows() {
                rows.insert(
                    id.value(i).to_string(),
                    (c1.value(i), tokens.value(i), cut.value(i)),
                );
            }
        }
    }
    rows
}

fn label(input: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "label",
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--encoder",
        "static",
        "--max-doc-chars",
        "1000",
    ];
    args.extend_from_slice(extra);
    hermes(&args)
}

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// Labels the wiki texts and the hard cases with `--count-tokens tokenizer` and compares
/// every row's count with Python's on the same text.
fn compare(input: &Path, files: &[&Path], out: &Path, tokenizer: &Path) {
    let o = label(input, out, &["--count-tokens", tokenizer.to_str().unwrap()]);
    assert!(o.status.success(), "label: {}", stderr(&o));
    let mut args = vec![tokenizer];
    args.extend_from_slice(files);
    let want: HashMap<String, u32> = serde_json::from_str(&py(COUNT, &args)).unwrap();
    let got = read_tokens(out);
    assert_eq!(got.len(), want.len(), "rows");
    let mut wrong = Vec::new();
    for (id, (_, n, _)) in &got {
        if want[id] != *n {
            wrong.push(format!("{id}: hermes {n}, python {}", want[id]));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} ({}) rows differ: {wrong:?}",
        wrong.len(),
        tokenizer.display()
    );
    // The long text was cut for labeling, and counted whole all the same.
    let (_, n, cut) = got["long"];
    assert!(cut, "the long text is marked truncated");
    assert!(n > 2000, "the long text's count ({n}) is of its whole text");
    let done: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("done/hard.jsonl.json")).unwrap())
            .unwrap();
    assert_eq!(done["tokens_tokenizer"], json!(sha256(tokenizer)));
}

#[test]
fn token_counts_equal_python_row_by_row() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (bpe, unigram) = (dir.join("bpe.json"), dir.join("unigram.json"));
    let wiki_jsonl = Path::new(ROOT).join(".cache/data/wiki.jsonl");
    py(TRAIN_BPE, &[&wiki_jsonl, &bpe]);
    py(TRAIN_UNIGRAM, &[&wiki_jsonl, &unigram]);
    let wordpiece = Path::new(ROOT).join("models/minilm-wiki/tokenizer.json");

    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let wiki = common::wiki_texts(300);
    let docs: Vec<(String, String)> = wiki
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("w{i}"), t.clone()))
        .collect();
    let (wiki_file, hard_file) = (input.join("wiki.jsonl"), input.join("hard.jsonl"));
    write_jsonl(&wiki_file, &docs);
    write_jsonl(&hard_file, &hard_cases(&wiki));
    let files = [wiki_file.as_path(), hard_file.as_path()];

    let (out_bpe, out_wp) = (dir.join("out-bpe"), dir.join("out-wp"));
    compare(&input, &files, &out_bpe, &bpe);
    compare(&input, &files, &out_wp, &wordpiece);
    compare(&input, &files, &dir.join("out-unigram"), &unigram);

    // The same tokenizer again: every file is done.
    let o = label(&input, &out_bpe, &["--count-tokens", bpe.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("2 already done"), "{}", stderr(&o));

    // Another tokenizer, or none, into the same --out: refused before anything is labeled,
    // naming both tokenizers; the output is left as it was.
    let before = std::fs::read(out_bpe.join("codes/hard.jsonl.parquet")).unwrap();
    let o = label(
        &input,
        &out_bpe,
        &["--count-tokens", wordpiece.to_str().unwrap()],
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains(&sha256(&bpe)) && e.contains(&sha256(&wordpiece)),
        "names both tokenizers: {e}"
    );
    let o = label(&input, &out_bpe, &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no token counts"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(out_bpe.join("codes/hard.jsonl.parquet")).unwrap(),
        before
    );

    // stats: tokens per bucket are the sums of the column, in JSON and CSV.
    let rows = read_tokens(&out_wp);
    let mut per_c1: HashMap<String, u64> = HashMap::new();
    for (c1, n, _) in rows.values() {
        *per_c1.entry(c1.to_string()).or_default() += u64::from(*n);
    }
    let total: u64 = per_c1.values().sum();
    let o = hermes(&["stats", "--input", out_wp.to_str().unwrap(), "--depth", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stats: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(stats["tokens"], json!(total));
    assert_eq!(stats["tokens_tokenizer"], json!(sha256(&wordpiece)));
    let buckets = stats["depths"][0]["sizes"].as_array().unwrap();
    assert_eq!(buckets.len(), per_c1.len());
    for b in buckets {
        assert_eq!(
            b["tokens"].as_u64().unwrap(),
            per_c1[b["label"].as_str().unwrap()],
            "{b}"
        );
    }
    let o = hermes(&[
        "stats",
        "--input",
        out_wp.to_str().unwrap(),
        "--depth",
        "1",
        "--format",
        "csv",
    ]);
    let csv = String::from_utf8(o.stdout).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "depth,label,size,buckets,entropy_bits,perplexity,tokens"
    );
    let mut n = 0;
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f[6].parse::<u64>().unwrap(), per_c1[f[1]], "{line}");
        n += 1;
    }
    assert_eq!(n, per_c1.len());

    // mix reads the column as a size unit: its plan's total is the column's sum.
    let spec = dir.join("spec.toml");
    std::fs::write(
        &spec,
        "seed = 0\ndepth = 1\nbudget = 10000\nsize = \"tokens\"\nmax_epochs = 4\n\
         [stage1]\nmethod = \"temperature\"\ntemperature = 2.0\n",
    )
    .unwrap();
    let plan = dir.join("mix");
    let o = hermes(&[
        "mix",
        "--codes",
        out_wp.to_str().unwrap(),
        "--spec",
        spec.to_str().unwrap(),
        "--out",
        plan.to_str().unwrap(),
        "--plan-only",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let plan: Value =
        serde_json::from_str(&std::fs::read_to_string(plan.join("plan.json")).unwrap()).unwrap();
    assert_eq!(plan["unit"], "tokens");
    assert_eq!(plan["totals"]["size"].as_f64().unwrap(), total as f64);

    // An output pieced together from two tokenizers' files (tasks run with different flags):
    // stats refuses to sum them.
    let mixed = dir.join("mixed");
    for (from, file) in [(&out_bpe, "hard.jsonl"), (&out_wp, "wiki.jsonl")] {
        for (sub, ext) in [("codes", "parquet"), ("done", "json")] {
            std::fs::create_dir_all(mixed.join(sub)).unwrap();
            let name = format!("{sub}/{file}.{ext}");
            std::fs::copy(from.join(&name), mixed.join(&name)).unwrap();
        }
    }
    let o = hermes(&["stats", "--input", mixed.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not comparable"), "{}", stderr(&o));

    // Without --count-tokens: no tokens column, and stats says nothing of tokens.
    let out_none = dir.join("out-none");
    let o = label(&input, &out_none, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = hermes(&["stats", "--input", out_none.to_str().unwrap()]);
    let stats: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(stats.get("tokens").is_none(), "{stats}");
}

#[test]
fn bad_flags_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    write_jsonl(
        &input.join("a.jsonl"),
        &[("a".into(), "hello".into()), ("b".into(), "world".into())],
    );
    let out = dir.join("out");
    let wordpiece = Path::new(ROOT).join("models/minilm-wiki/tokenizer.json");

    // --carry tokens beside --count-tokens: both named, nothing written.
    let o = label(
        &input,
        &out,
        &[
            "--count-tokens",
            wordpiece.to_str().unwrap(),
            "--carry",
            "tokens",
        ],
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("--carry tokens") && e.contains("--count-tokens"),
        "{e}"
    );
    assert!(!out.exists());
    // --carry tokens alone is still how a precomputed count is carried.
    let o = label(&input, &out, &["--carry", "tokens"]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::remove_dir_all(&out).unwrap();

    // A missing file and a file that is not a tokenizer: named, and refused before the model
    // loads (a missing bundle is not what the error is about).
    let missing = dir.join("missing/tokenizer.json");
    let garbage = dir.join("garbage.json");
    std::fs::write(&garbage, "{\"model\": 42}").unwrap();
    for bad in [&missing, &garbage] {
        let o = label(
            &input,
            &out,
            &[
                "--count-tokens",
                bad.to_str().unwrap(),
                "--bundle",
                "/nonexistent/bundle",
            ],
        );
        assert!(!o.status.success());
        let e = stderr(&o);
        assert!(e.contains(bad.to_str().unwrap()), "names the file: {e}");
        assert!(!e.contains("/nonexistent/bundle"), "before the model: {e}");
        assert!(!out.exists());
    }
}
