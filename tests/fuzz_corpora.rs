//! Replays every fuzz target's committed corpus (`fuzz/corpus/<target>/`) and its regressions
//! (`fuzz/regressions/<target>/`: inputs that once crashed, hung or over-allocated) through
//! the same functions the fuzzers call, on the stable toolchain. `make fuzz` grows the
//! corpora; this keeps what they found from coming back.

use std::path::Path;

#[test]
fn every_committed_fuzz_input_is_handled() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (name, target) in hermes::fuzzing::TARGETS {
        let mut replayed = 0;
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
                continue;
            };
            let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
            paths.sort();
            for path in paths {
                let data = std::fs::read(&path).unwrap();
                let ok = std::panic::catch_unwind(|| target(&data));
                assert!(ok.is_ok(), "{name}: {} panicked", path.display());
                replayed += 1;
            }
        }
        println!("{name}: {replayed} inputs");
        assert!(replayed > 0, "{name} has no committed corpus");
    }
}

#[test]
fn every_target_has_a_fuzz_binary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    for (name, _) in hermes::fuzzing::TARGETS {
        let file = root.join("fuzz_targets").join(format!("{name}.rs"));
        let source =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            source.contains(&format!("hermes::fuzzing::{name}(")),
            "{name}"
        );
        assert!(manifest.contains(&format!("name = \"{name}\"")), "{name}");
    }
}
