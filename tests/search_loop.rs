//! Mixture search end to end, small: `scripts/search_loop.py` labels the wiki corpus with token
//! counts, draws and selects a depth-1 swarm, trains a unigram proxy per variant and measures
//! bits per byte on held-out articles of three topics, fits and proposes with `hermes fit-mix`,
//! builds the proposal and the natural mixture with `hermes mix`, then refines inside the pinned
//! proposal with a depth-2 swarm. `make search-demo` runs the full-size version.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn a_swarm_fit_and_proposal_with_a_real_proxy() {
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("search-loop");
    let _ = std::fs::remove_dir_all(&work);
    let o = Command::new(Path::new(ROOT).join(".cache/venv/bin/python"))
        .arg(Path::new(ROOT).join("scripts/search_loop.py"))
        .args(["--hermes", env!("CARGO_BIN_EXE_hermes"), "--work"])
        .arg(&work)
        .args(["--variants", "72", "--refine", "6", "--holdout", "4"])
        .current_dir(ROOT)
        .output()
        .expect("run scripts/search_loop.py");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("report.json")).unwrap()).unwrap();
    let obj = &report["objective"];
    let v = |k: &str| obj[k].as_f64().unwrap();
    // The script exits 1 unless the proposal beats the swarm's median; check it here too, and
    // that every number is a real bits-per-byte figure.
    assert!(v("proposed") < v("swarm_median"), "{obj}");
    for k in [
        "natural",
        "proposed",
        "best_variant",
        "refined_best",
        "refined_median",
    ] {
        assert!((0.5..20.0).contains(&v(k)), "{k}: {obj}");
    }
    assert_eq!(
        report["fit"].as_object().unwrap().len(),
        3,
        "three metrics fitted"
    );
    for f in [
        "fit/fit.json",
        "fit/optimal.toml",
        "fit/optimal.json",
        "fit/fit.svg",
    ] {
        assert!(work.join(f).is_file(), "{f}");
    }
    // The refinement kept the proposal's depth-1 totals.
    let ratios = std::fs::read_to_string(work.join("refine/ratios.csv")).unwrap();
    assert_eq!(ratios.lines().count(), 7);
    println!("{out}");
}
