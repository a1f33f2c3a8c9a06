//! Which input files a `hermes label` task takes.
//!
//! Every `--input` (a file, a directory searched recursively, or a glob) expands to files
//! with a known extension, each with the root it is relative to (the directory, the glob's
//! fixed prefix, or a file's parent). The list is sorted by path and split across tasks as
//! datatrove does: task I of N takes files I, I+N, I+2N, … A missing file given by name stays
//! in the list, so the task that owns it reports it.

use std::path::{Path, PathBuf};

/// Why the `--input` arguments give no usable file list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputsError {
    #[error("{0}")]
    Invalid(String),
    /// Two inputs that would be written to one output (same path relative to their roots):
    /// refused before any work, since the second would be taken for done or race the first.
    #[error(
        "{} and {} would both be written to codes/{}.parquet: two inputs must not share an output (label them into different --out directories, or give their common parent as one --input)",
        first.display(),
        second.display(),
        rel.display()
    )]
    Collision {
        first: PathBuf,
        second: PathBuf,
        rel: PathBuf,
    },
}

/// File name endings hermes reads.
pub const EXTENSIONS: [&str; 4] = [".jsonl", ".jsonl.gz", ".jsonl.zst", ".parquet"];

/// One input file and where its output goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct InputFile {
    pub path: PathBuf,
    /// The path relative to its root: output is `codes/<rel>.parquet`, `done/<rel>.json`.
    pub rel: PathBuf,
}

fn is_input(path: &Path) -> bool {
    let name = path.to_string_lossy();
    EXTENSIONS.iter().any(|e| name.ends_with(e))
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn rel_to(path: &Path, root: &Path) -> PathBuf {
    path.strip_prefix(root)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| path.file_name().map(PathBuf::from).unwrap_or_default())
}

fn walk(dir: &Path, root: &Path, out: &mut Vec<InputFile>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, root, out)?;
        } else if is_input(&path) {
            out.push(InputFile {
                rel: rel_to(&path, root),
                path,
            });
        }
    }
    Ok(())
}

/// Expands `--input` arguments into the sorted, de-duplicated file list; refuses two files
/// with the same output (see [`InputsError::Collision`]). Every task of an array expands the
/// whole list, so each refuses the same collision before any of them writes.
pub fn expand(inputs: &[PathBuf]) -> Result<Vec<InputFile>, InputsError> {
    let files = list(inputs).map_err(InputsError::Invalid)?;
    let mut by_rel: std::collections::HashMap<&Path, &Path> = std::collections::HashMap::new();
    for f in &files {
        if let Some(first) = by_rel.insert(&f.rel, &f.path) {
            return Err(InputsError::Collision {
                first: first.to_path_buf(),
                second: f.path.clone(),
                rel: f.rel.clone(),
            });
        }
    }
    Ok(files)
}

fn list(inputs: &[PathBuf]) -> Result<Vec<InputFile>, String> {
    let mut out = Vec::new();
    for input in inputs {
        let s = input.to_string_lossy();
        if has_glob(&s) {
            let root: PathBuf = input
                .components()
                .take_while(|c| !has_glob(&c.as_os_str().to_string_lossy()))
                .collect();
            let paths = glob::glob(&s).map_err(|e| format!("{s}: not a valid glob: {e}"))?;
            let before = out.len();
            for path in paths {
                let path = path.map_err(|e| format!("{s}: {e}"))?;
                if path.is_file() && is_input(&path) {
                    out.push(InputFile {
                        rel: rel_to(&path, &root),
                        path,
                    });
                }
            }
            if out.len() == before {
                return Err(format!(
                    "{s}: the glob matches no input file ({})",
                    EXTENSIONS.join(", ")
                ));
            }
        } else if input.is_dir() {
            let before = out.len();
            walk(input, input, &mut out).map_err(|e| format!("{s}: {e}"))?;
            if out.len() == before {
                return Err(format!(
                    "{s}: the directory holds no input file ({})",
                    EXTENSIONS.join(", ")
                ));
            }
        } else {
            // A file, or a missing one: the task that owns it reports it.
            let root = input.parent().unwrap_or(Path::new(""));
            out.push(InputFile {
                rel: rel_to(input, root),
                path: input.clone(),
            });
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.path == b.path);
    Ok(out)
}

/// Which task this is: the flags (`--shard-index`/`--shard-count`, or `HERMES_SHARD_INDEX`/
/// `HERMES_SHARD_COUNT`), else a Slurm array (`SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN` of
/// `SLURM_ARRAY_TASK_COUNT`), else a Kubernetes Indexed Job (`JOB_COMPLETION_INDEX` of
/// `HERMES_SHARD_COUNT`), else 0 of 1. `env` reads an environment variable.
pub fn resolve_shard(
    index: Option<usize>,
    count: Option<usize>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(usize, usize), String> {
    let num = |name: &str| -> Result<Option<usize>, String> {
        env(name)
            .map(|v| {
                v.trim()
                    .parse::<usize>()
                    .map_err(|_| format!("{name}={v:?} is not a non-negative integer"))
            })
            .transpose()
    };
    let (index, count, source) = if let Some(i) = index {
        let c = count.ok_or("--shard-index needs --shard-count (or HERMES_SHARD_COUNT)")?;
        (i, c, "--shard-index/--shard-count")
    } else if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
        let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let c = match count {
            Some(c) => c,
            None => num("SLURM_ARRAY_TASK_COUNT")?
                .ok_or("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not")?,
        };
        let i = id.checked_sub(min).ok_or(format!(
            "SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}"
        ))?;
        (i, c, "the Slurm array")
    } else if let Some(i) = num("JOB_COMPLETION_INDEX")? {
        let c = count.ok_or(
            "JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but HERMES_SHARD_COUNT is not",
        )?;
        (i, c, "JOB_COMPLETION_INDEX/HERMES_SHARD_COUNT")
    } else {
        match count {
            None | Some(1) => (0, 1, "the default"),
            Some(c) => return Err(format!("--shard-count {c} needs --shard-index")),
        }
    };
    if count == 0 || index >= count {
        return Err(format!(
            "shard {index} of {count} (from {source}) is not a valid task"
        ));
    }
    Ok((index, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn shard_sources_in_order_of_precedence() {
        assert_eq!(resolve_shard(None, None, env(&[])), Ok((0, 1)));
        assert_eq!(resolve_shard(Some(2), Some(4), env(&[])), Ok((2, 4)));
        let slurm = [
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_MIN", "5"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ];
        assert_eq!(resolve_shard(None, None, env(&slurm)), Ok((2, 4)));
        assert_eq!(resolve_shard(Some(1), Some(3), env(&slurm)), Ok((1, 3)));
        let k8s = [("JOB_COMPLETION_INDEX", "3")];
        assert_eq!(resolve_shard(None, Some(8), env(&k8s)), Ok((3, 8)));
        assert!(
            resolve_shard(None, None, env(&k8s))
                .unwrap_err()
                .contains("HERMES_SHARD_COUNT")
        );
        assert!(resolve_shard(Some(4), Some(4), env(&[])).is_err());
        assert!(resolve_shard(None, Some(3), env(&[])).is_err());
        assert!(resolve_shard(None, None, env(&[("SLURM_ARRAY_TASK_ID", "x")])).is_err());
    }

    #[test]
    fn two_roots_with_one_relative_name_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["a", "b"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
            std::fs::write(dir.path().join(sub).join("x.jsonl"), "").unwrap();
        }
        let err = expand(&[dir.path().join("a"), dir.path().join("b")]).unwrap_err();
        let InputsError::Collision { first, second, rel } = &err else {
            panic!("{err}");
        };
        assert_eq!(rel, Path::new("x.jsonl"));
        assert_eq!(first, &dir.path().join("a").join("x.jsonl"));
        assert_eq!(second, &dir.path().join("b").join("x.jsonl"));
        // The same directory twice is one input, not a collision.
        assert_eq!(
            expand(&[dir.path().join("a"), dir.path().join("a")])
                .unwrap()
                .len(),
            1
        );
        // Their common parent keeps them apart (a/x.jsonl, b/x.jsonl).
        assert_eq!(expand(&[dir.path().to_path_buf()]).unwrap().len(), 2);
    }
}
