//! `hermes fit` and `hermes eval` as a user runs them: the real binary, real wiki documents,
//! and the errors a bad corpus gets.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn hermes(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hermes"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run hermes")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `n` wiki lines spread over the whole corpus (the file is grouped by topic).
fn wiki_lines(n: usize) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/data/wiki.jsonl");
    let all: Vec<String> = std::fs::read_to_string(path)
        .expect("run `make setup`")
        .lines()
        .map(str::to_owned)
        .collect();
    let step = (all.len() / n).max(1);
    all.into_iter().step_by(step).take(n).collect()
}

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

#[test]
fn bad_corpora_get_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let good = wiki_lines(3).join("\n");
    let cases = [
        (
            "empty.jsonl",
            format!("{good}\n\n{good}\n"),
            "empty.jsonl:4: empty line",
        ),
        (
            "notjson.jsonl",
            format!("{good}\nthis is not json\n"),
            "notjson.jsonl:4: not JSON",
        ),
        (
            "nofield.jsonl",
            format!("{good}\n{{\"body\": \"x\"}}\n"),
            "nofield.jsonl:4: missing text field `text`",
        ),
        (
            "few.jsonl",
            format!("{good}\n"),
            "3 documents, fewer than the largest codebook (64)",
        ),
    ];
    for (name, body, want) in cases {
        let input = write(tmp.path(), name, &body);
        let out = tmp.path().join(format!("{name}.bundle"));
        let o = hermes(&[
            "fit",
            "--input",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(!o.status.success(), "{name} was accepted");
        assert!(stderr(&o).contains(want), "{name}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
        assert!(!out.exists(), "{name}: a bundle was written");
    }
    // A missing input is named once, with its cause once.
    let missing = tmp.path().join("missing.jsonl");
    let o = hermes(&[
        "fit",
        "--input",
        missing.to_str().unwrap(),
        "--out",
        tmp.path().join("m").to_str().unwrap(),
    ]);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert_eq!(err.matches("missing.jsonl").count(), 1, "{err}");
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
}

#[test]
fn non_finite_embeddings_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let lines = wiki_lines(80);
    let input = write(tmp.path(), "c.jsonl", &(lines.join("\n") + "\n"));
    let mut e = vec![0.01f32; 80 * 384];
    e[17 * 384 + 3] = f32::NAN;
    let npy = tmp.path().join("e.npy");
    hermes::corpus::write_npy(&npy, &e, 384).unwrap();
    let o = hermes(&[
        "fit",
        "--input",
        input.to_str().unwrap(),
        "--out",
        tmp.path().join("b").to_str().unwrap(),
        "--embeddings",
        npy.to_str().unwrap(),
        "--levels",
        "4,4,2",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("embedding 17 contains NaN or infinity"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn fit_then_eval_a_small_real_corpus() {
    let tmp = tempfile::tempdir().unwrap();
    let input = write(
        tmp.path(),
        "wiki400.jsonl",
        &(wiki_lines(400).join("\n") + "\n"),
    );
    let out = tmp.path().join("small");
    let npy = tmp.path().join("small.npy");
    let o = hermes(&[
        "fit",
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--levels",
        "8,6,4",
        "--dim",
        "32",
        "--seed",
        "3",
        "--save-embeddings",
        npy.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["levels"], serde_json::json!([8, 6, 4]));
    assert_eq!(manifest["transform"]["out_dim"], 32);
    assert_eq!(manifest["fit"]["n_docs"], 400);
    assert!(!manifest["probes"].as_array().unwrap().is_empty());
    // The fit writes the bucket cards of its sample, pinned in the manifest.
    let cards: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("cards.json")).unwrap()).unwrap();
    assert_eq!(manifest["cards"]["file"], "cards.json");
    assert_eq!(cards["fingerprint"], manifest["fingerprint"]);
    assert_eq!(cards["docs"], 400);
    let depth1: Vec<_> = cards["cards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["depth"] == 1)
        .collect();
    assert!(!depth1.is_empty() && depth1.len() <= 8);
    assert!(
        depth1
            .iter()
            .all(|c| !c["terms"].as_array().unwrap().is_empty())
    );

    // Refitting from the saved embeddings with the same seed gives the same bytes.
    let again = tmp.path().join("again");
    let o = hermes(&[
        "fit",
        "--input",
        input.to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
        "--name",
        "small",
        "--levels",
        "8,6,4",
        "--dim",
        "32",
        "--seed",
        "3",
        "--embeddings",
        npy.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(out.join("codebooks.safetensors")).unwrap(),
        std::fs::read(again.join("codebooks.safetensors")).unwrap()
    );
    assert_eq!(
        std::fs::read(out.join("cards.json")).unwrap(),
        std::fs::read(again.join("cards.json")).unwrap()
    );
    // --cards-only rewrites the cards of an existing bundle and keeps its codebooks.
    std::fs::remove_file(again.join("cards.json")).unwrap();
    let o = hermes(&[
        "fit",
        "--input",
        input.to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
        "--cards-only",
        "--embeddings",
        npy.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(out.join("cards.json")).unwrap(),
        std::fs::read(again.join("cards.json")).unwrap()
    );

    let json = tmp.path().join("eval.json");
    let o = hermes(&[
        "eval",
        "--bundle",
        out.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--embeddings",
        npy.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("| depth 3 |") && table.contains("| flat k-means |"),
        "{table}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    assert_eq!(report["n_docs"], 400);
    let depths = report["depths"].as_array().unwrap();
    assert_eq!(depths.len(), 3);
    let err: Vec<f64> = depths
        .iter()
        .map(|d| d["relative_error"].as_f64().unwrap())
        .collect();
    assert!(err[0] > err[1] && err[1] > err[2], "{err:?}");
    // Wiki topics are real structure: even 8 coarse buckets agree with them far above chance.
    assert!(
        depths[0]["labels"]["ami"].as_f64().unwrap() > 0.15,
        "{report}"
    );
    assert!(
        report["n_labeled"].as_u64().unwrap() < 400,
        "Uncategorized documents are not scored"
    );
}

/// Arguments that can never fit are refused before the corpus is embedded (which takes
/// minutes): a bound of a few seconds holds on any machine, embedding 300 documents does not.
#[test]
fn bad_arguments_fail_before_any_embedding() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = write(tmp.path(), "c.jsonl", &(wiki_lines(300).join("\n") + "\n"));
    let out = tmp.path().join("b");
    let (c, o) = (corpus.to_str().unwrap(), out.to_str().unwrap());
    for (flags, want) in [
        (vec!["--whiten", "7"], "--whiten must be in [0, 1]"),
        (vec!["--levels", "64,1"], "--levels: levels [64, 1]"),
        (vec!["--levels", "70000"], "65,536"),
        (
            vec!["--static-only"],
            "--static-only/--cards-only need an existing bundle",
        ),
    ] {
        let started = std::time::Instant::now();
        let mut args = vec!["fit", "--input", c, "--out", o];
        args.extend(flags.iter().copied());
        let r = hermes(&args);
        let took = started.elapsed();
        assert!(!r.status.success(), "{flags:?} was accepted");
        assert!(stderr(&r).contains(want), "{flags:?}: {}", stderr(&r));
        assert!(
            took.as_secs_f64() < 3.0,
            "{flags:?} took {took:?}: it embedded first"
        );
    }
}
