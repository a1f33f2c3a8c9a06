//! Bucket cards as a user meets them: `hermes describe` over the wiki corpus labeled by the
//! static tier (one task, and three tasks then a merge), checked for the contract's
//! properties; the default bundle's cards over HTTP; and its atlas page in headless Chromium
//! inside a network namespace that holds only loopback.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::Path;
use std::process::Command;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt16Type;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

use common::{Server, client, hermes, stderr};
use hermes::cards::words;
use hermes::quantize::key_hash;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// id → (code, text) over the labeled corpus.
fn corpus(input: &Path, codes: &Path) -> HashMap<String, (Vec<u16>, String)> {
    let mut out = HashMap::new();
    for k in 0..4 {
        let texts: Vec<Value> = std::fs::read_to_string(input.join(format!("part-{k}.jsonl")))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let f = File::open(codes.join(format!("codes/part-{k}.jsonl.parquet"))).unwrap();
        for b in ParquetRecordBatchReaderBuilder::try_new(f)
            .unwrap()
            .build()
            .unwrap()
        {
            let b = b.unwrap();
            let id = b.column_by_name("id").unwrap().as_string::<i32>().clone();
            let row = b
                .column_by_name("row")
                .unwrap()
                .as_primitive::<arrow_array::types::UInt64Type>()
                .clone();
            let c: Vec<_> = ["c1", "c2"]
                .iter()
                .map(|n| {
                    b.column_by_name(n)
                        .unwrap()
                        .as_primitive::<UInt16Type>()
                        .clone()
                })
                .collect();
            for i in 0..b.num_rows() {
                let text = texts[row.value(i) as usize]["text"]
                    .as_str()
                    .unwrap()
                    .to_string();
                out.insert(
                    id.value(i).to_string(),
                    (vec![c[0].value(i), c[1].value(i)], text),
                );
            }
        }
    }
    out
}

fn label(code: &[u16]) -> String {
    code.iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

#[test]
fn cards_hold_the_contract_and_do_not_depend_on_the_task_count() {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("describe");
    let (input, codes) = common::label_wiki(&base, 4, &[], |_, _| {});
    let (i, c) = (input.to_str().unwrap(), codes.to_str().unwrap());
    let one = base.join("one");
    let o = hermes(&[
        "describe",
        "--codes",
        c,
        "--input",
        i,
        "--out",
        one.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Three array tasks over the inputs, then the merge, which needs only --out.
    let three = base.join("three");
    for t in 0..3 {
        let o = hermes(&[
            "describe",
            "--codes",
            c,
            "--input",
            i,
            "--out",
            three.to_str().unwrap(),
            "--shard-index",
            &t.to_string(),
            "--shard-count",
            "3",
        ]);
        assert!(o.status.success(), "task {t}: {}", stderr(&o));
        assert!(!three.join("cards.json").exists() || t == 3);
    }
    let o = hermes(&["describe", "--merge", "--out", three.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let read = |d: &Path| std::fs::read_to_string(d.join("cards.json")).unwrap();
    assert_eq!(
        read(&one),
        read(&three),
        "the cards depend on the number of tasks"
    );
    assert!(
        std::fs::read_to_string(one.join("atlas.html"))
            .unwrap()
            .contains("hermes bucket atlas")
    );

    let cards: Value = serde_json::from_str(&read(&one)).unwrap();
    let docs = corpus(&input, &codes);
    assert_eq!(cards["docs"], docs.len());
    // One card per non-empty bucket at depths 1 and 2, with its size.
    let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
    for (code, _) in docs.values() {
        *sizes.entry(label(&code[..1])).or_default() += 1;
        *sizes.entry(label(code)).or_default() += 1;
    }
    let list = cards["cards"].as_array().unwrap();
    let got: BTreeMap<String, u64> = list
        .iter()
        .map(|c| {
            (
                c["label"].as_str().unwrap().to_string(),
                c["docs"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, sizes);
    for depth in [1, 2] {
        let sum: f64 = list
            .iter()
            .filter(|c| c["depth"] == depth)
            .map(|c| c["share"].as_f64().unwrap())
            .sum();
        assert!(
            (sum - 1.0).abs() < 1e-9,
            "depth {depth}: shares sum to {sum}"
        );
    }
    // Each bucket's sample, recomputed: its 256 rows of smallest hash(0, id).
    let mut members: HashMap<String, Vec<(u64, &str)>> = HashMap::new();
    for (id, (code, text)) in &docs {
        for d in [1, 2] {
            members
                .entry(label(&code[..d]))
                .or_default()
                .push((key_hash(0, id), text.as_str()));
        }
    }
    let mut words_total: HashMap<usize, (HashMap<String, u64>, u64)> = HashMap::new();
    let mut samples: HashMap<String, HashMap<String, u64>> = HashMap::new();
    for (l, m) in &mut members {
        m.sort();
        let depth = l.split('.').count();
        let mut counts = HashMap::new();
        for (_, text) in m.iter().take(256) {
            for w in words(text) {
                *counts.entry(w.clone()).or_default() += 1;
                let t = words_total.entry(depth).or_default();
                *t.0.entry(w).or_default() += 1;
                t.1 += 1;
            }
        }
        samples.insert(l.clone(), counts);
    }
    let mut with_terms = 0;
    for card in list {
        let l = card["label"].as_str().unwrap();
        let depth = card["depth"].as_u64().unwrap() as usize;
        // Exemplars carry the card's label.
        for e in card["exemplars"].as_array().unwrap() {
            let (code, _) = &docs[e["id"].as_str().unwrap()];
            assert_eq!(label(&code[..depth]), l, "exemplar {e} of {l}");
        }
        // Every term is more frequent in the bucket's sample than in all samples of its depth.
        let s = &samples[l];
        let n: u64 = s.values().sum();
        let (all, total) = &words_total[&depth];
        for t in card["terms"].as_array().unwrap() {
            let t = t["term"].as_str().unwrap();
            let lift = (s[t] as f64 / n as f64) / (all[t] as f64 / *total as f64);
            assert!(lift > 1.0, "{l}: term {t} has lift {lift}");
        }
        if depth == 1 {
            assert_eq!(card["terms"].as_array().unwrap().len(), 12, "{l}");
            with_terms += 1;
            let children = card["children"].as_array().unwrap();
            assert!(
                children
                    .iter()
                    .all(|c| c.as_str().unwrap().starts_with(&format!("{l}.")))
            );
        }
    }
    assert_eq!(with_terms, list.iter().filter(|c| c["depth"] == 1).count());

    // Bad arguments.
    let o = hermes(&[
        "describe",
        "--codes",
        c,
        "--input",
        i,
        "--out",
        base.join("bad").to_str().unwrap(),
        "--depth",
        "4",
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("--depth 4 is outside 1..=3"),
        "{}",
        stderr(&o)
    );
    let o = hermes(&[
        "describe",
        "--merge",
        "--out",
        base.join("nothing").to_str().unwrap(),
        "--codes",
        c,
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("run the array tasks first"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test]
async fn the_default_bundles_cards_over_http() {
    let server = Server::start(&[]).await;
    let list = server.get_json("/v1/buckets?depth=1").await;
    let buckets = list["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 64, "{list}");
    assert_eq!(list["model"]["name"], "minilm-wiki");
    let first = &buckets[0];
    let one = server
        .get_json(&format!("/v1/buckets/{}", first["label"].as_str().unwrap()))
        .await;
    assert_eq!(one["bucket"], *first);
    assert_eq!(
        one["children"].as_array().unwrap().len(),
        first["children"].as_array().unwrap().len()
    );
    assert!(
        one["children"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["depth"] == 2)
    );
    let r = client()
        .get(server.url("/v1/buckets/999"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    let r = client()
        .get(server.url("/v1/buckets?depth=3"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = client().get(server.url("/atlas")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(r.text().await.unwrap().contains("hermes bucket atlas"));
}

#[test]
fn the_atlas_renders_offline_and_answers_a_choice_and_a_filter() {
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing: `make setup-test` installs it"
    );
    let cards: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(ROOT).join("models/minilm-wiki/cards.json")).unwrap(),
    )
    .unwrap();
    let top: Vec<&Value> = cards["cards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["depth"] == 1)
        .collect();
    let chosen = top
        .iter()
        .find(|c| c["children"].as_array().unwrap().len() > 1)
        .unwrap();
    let term = chosen["terms"][0]["term"].as_str().unwrap();
    // Whole terms: the filter's words appear in a term as whole words.
    let words = |s: &str| -> Vec<String> {
        s.to_lowercase()
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(String::from)
            .collect()
    };
    let want = words(term);
    let expected_filtered = top
        .iter()
        .filter(|c| {
            let has = |c: &Value| {
                c["terms"].as_array().unwrap().iter().any(|t| {
                    words(t["term"].as_str().unwrap())
                        .windows(want.len())
                        .any(|w| w == want.as_slice())
                })
            };
            has(c)
                || c["children"].as_array().unwrap().iter().any(|l| {
                    cards["cards"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|x| x["label"] == *l && has(x))
                })
        })
        .count();
    let out = tempfile::tempdir().unwrap();
    // In a process group of its own: whatever the script leaves running dies with the group.
    let status = common::Proc::run_group(
        Command::new("unshare")
            .args([
                "-n",
                "bash",
                &format!("{ROOT}/scripts/atlas_browser.sh"),
                env!("CARGO_BIN_EXE_hermes"),
            ])
            .arg(out.path())
            .args([chosen["label"].as_str().unwrap(), term])
            .current_dir(ROOT),
    )
    .expect("run unshare");
    let read = |f: &str| std::fs::read_to_string(out.path().join(f)).unwrap_or_default();
    assert!(
        status.success(),
        "{}\n{}",
        read("chromium.log"),
        read("server.log")
    );
    let dom = read("dom.html");
    assert!(
        dom.contains("data-ready=\"1\""),
        "the page's script did not run:\n{dom}"
    );
    assert_eq!(dom.matches("class=\"tile\"").count(), 64, "tiles");
    assert!(dom.contains("data-tiles=\"64\""));
    let chosen_dom = read("dom-chosen.html");
    let n = chosen["children"].as_array().unwrap().len();
    assert!(
        chosen_dom.contains(&format!("data-children=\"{n}\"")),
        "no sub-buckets shown"
    );
    assert_eq!(chosen_dom.matches("class=\"child\"").count(), n);
    assert!(chosen_dom.contains("class=\"exemplar\""));
    let filtered = read("dom-filtered.html");
    assert!(
        filtered.contains(&format!("data-tiles=\"{expected_filtered}\"")),
        "filter {term}: want {expected_filtered}"
    );
    assert!((1..64).contains(&expected_filtered));
    // Every tile left shows the term that matched it.
    assert_eq!(
        filtered.matches("class=\"match\"").count(),
        expected_filtered,
        "matched terms shown"
    );
    assert!(filtered.contains(&format!("data-match=\"{term}\"")));
    assert!(out.path().join("atlas.png").is_file());
    // Every request the page made went to the server.
    let base = read("url").trim().to_string();
    let urls = common::page_requests(&read("netlog.json"), &base, "/atlas");
    assert!(
        urls.iter().any(|u| u.starts_with(&format!("{base}/atlas"))),
        "{urls:?}"
    );
    let outside: Vec<&String> = urls
        .iter()
        .filter(|u| !u.starts_with(&format!("{base}/")))
        .collect();
    assert!(outside.is_empty(), "requests off the server: {outside:?}");
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("atlas.png");
    let _ = std::fs::copy(out.path().join("atlas.png"), keep);
}
