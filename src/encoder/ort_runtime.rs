//! Finding and loading the ONNX Runtime shared library (the `ort` crate's `load-dynamic` mode).
//!
//! hermes never downloads ONNX Runtime at build or run time: `scripts/setup.sh` unpacks the
//! library from the PyPI `onnxruntime` wheel into `.cache/ort/`. The search order is the
//! explicit path (`--ort-lib` / `ORT_DYLIB_PATH`), then that set-up cache, then the system's
//! library path. Loading happens once per process; a failure is a one-line error that names
//! the set-up command, never a panic.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The library file name the set-up script produces.
pub const ORT_LIB_NAME: &str = "libonnxruntime.so.1.31.1";
/// What a user runs to get the library.
pub const SETUP_HINT: &str =
    "run `make setup` (scripts/setup.sh) or pass --ort-lib / set ORT_DYLIB_PATH";

static ENVIRONMENT: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

/// Candidate locations of the set-up cache, most specific first: the working directory,
/// the directories above the executable (a `target/release/hermes` inside a checkout),
/// and the checkout this binary was built from.
fn cache_candidates() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        dirs.push(cwd);
    }
    if let Ok(exe) = std::env::current_exe() {
        dirs.extend(exe.ancestors().skip(1).take(4).map(Path::to_path_buf));
    }
    dirs.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    dirs.into_iter()
        .map(|d| d.join(".cache/ort").join(ORT_LIB_NAME))
        .collect()
}

/// Resolves which library file to load. `explicit` is `--ort-lib` (clap already folds in
/// `ORT_DYLIB_PATH`). Returns `None` for "let the dynamic loader search the system".
pub fn resolve_library(explicit: Option<&Path>) -> Result<Option<PathBuf>, String> {
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(Some(path.to_path_buf()))
        } else {
            Err(format!(
                "ONNX Runtime library {} does not exist: {SETUP_HINT}",
                path.display()
            ))
        };
    }
    Ok(cache_candidates().into_iter().find(|p| p.is_file()))
}

/// Loads ONNX Runtime once for the process and returns its environment. Later calls return
/// the first result, whatever path they pass.
pub fn environment(explicit: Option<&Path>) -> Result<ort::environment::Environment, String> {
    ENVIRONMENT
        .get_or_init(|| {
            let path =
                resolve_library(explicit)?.unwrap_or_else(|| PathBuf::from("libonnxruntime.so"));
            let builder = ort::init_from(&path).map_err(|e| {
                format!(
                    "cannot load ONNX Runtime from {}: {e}; {SETUP_HINT}",
                    path.display()
                )
            })?;
            builder
                .with_name("hermes")
                .build()
                .map_err(|e| format!("cannot start ONNX Runtime from {}: {e}", path.display()))
        })
        .clone()
}
