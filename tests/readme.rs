//! The README and the pages under `docs/` match the code and stay inside the repository:
//! every `--flag` they name is a flag of some `hermes` command, and every relative link they
//! hold leads to a file of the repository (and, with `#anchor`, to a heading of that page).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Flags the README and docs name that belong to other tools (cargo, scripts/setup.sh, sbatch,
/// kubernetes-validate, the test harness).
const OTHER_TOOLS: [&str; 8] = [
    "--bench",
    "--release",
    "--locked",
    "--test",
    "--help",
    "--array",
    "--strict",
    "--ignored",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `README.md`, then every `docs/*.md` in name order, as (path relative to the root, text).
fn pages() -> Vec<(String, String)> {
    let mut names = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| p.strip_prefix(root()).unwrap().to_path_buf())
        .collect();
    docs.sort();
    assert!(!docs.is_empty(), "docs/ holds no .md page");
    names.extend(docs);
    names
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(root().join(&p))
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.display().to_string(), text)
        })
        .collect()
}

fn flags_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("--") {
        let start = i + pos;
        let prev_ok =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'-');
        let mut end = start + 2;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'-')
        {
            end += 1;
        }
        if prev_ok && end > start + 2 && bytes[start + 2].is_ascii_lowercase() {
            out.insert(text[start..end].trim_end_matches('-').to_string());
        }
        i = end.max(start + 2);
    }
    out
}

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_hermes"))
        .args(args)
        .arg("--help")
        .output()
        .expect("run hermes --help");
    assert!(out.status.success(), "hermes {args:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_flag_the_readme_and_docs_name_exists() {
    let top = help(&[]);
    let commands: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.contains(&"serve".to_string()), "{commands:?}");
    let mut known = BTreeSet::new();
    for c in &commands {
        known.extend(flags_in(&help(&[c])));
    }
    let mut problems = Vec::new();
    for (name, text) in pages() {
        let missing: Vec<String> = flags_in(&text)
            .into_iter()
            .filter(|f| !known.contains(f) && !OTHER_TOOLS.contains(&f.as_str()))
            .collect();
        if !missing.is_empty() {
            problems.push(format!("{name} names flags no command has: {missing:?}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The anchors GitHub gives a page's headings: lower-case, punctuation dropped, spaces as
/// hyphens, `-1`, `-2`, … on repeats. Headings inside code fences do not count.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        if fenced {
            continue;
        }
        let heading = heading.trim_start_matches('#');
        if !heading.starts_with(' ') {
            continue;
        }
        let slug: String = heading
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut candidate = slug.clone();
        let mut n = 0;
        while out.contains(&candidate) {
            n += 1;
            candidate = format!("{slug}-{n}");
        }
        out.insert(candidate);
    }
    out
}

/// The targets of the page's inline links `[text](target)`, outside code fences.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut rest = line;
        while let Some(pos) = rest.find("](") {
            let after = &rest[pos + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn every_link_of_the_readme_and_docs_stays_in_the_repository() {
    let root = root().canonicalize().unwrap();
    let pages = pages();
    let mut problems = Vec::new();
    for (name, text) in &pages {
        // Nothing points at a contract that lives outside the repository.
        if text.contains("DESIGN.md") {
            problems.push(format!(
                "{name} mentions DESIGN.md, which is not in the repository"
            ));
        }
        let dir = root.join(name).parent().unwrap().to_path_buf();
        for link in links(text) {
            if link.starts_with("http://") || link.starts_with("https://") {
                continue;
            }
            let (file, anchor) = match link.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (link.as_str(), None),
            };
            let target = if file.is_empty() {
                root.join(name)
            } else {
                dir.join(file)
            };
            let Ok(target) = target.canonicalize() else {
                problems.push(format!("{name}: link {link:?} leads to no file"));
                continue;
            };
            if !target.starts_with(&root) {
                problems.push(format!("{name}: link {link:?} leaves the repository"));
                continue;
            }
            if let Some(anchor) = anchor
                && target.extension().is_some_and(|e| e == "md")
            {
                let page = std::fs::read_to_string(&target).unwrap();
                if !anchors(&page).contains(anchor) {
                    problems.push(format!(
                        "{name}: link {link:?}: no heading with anchor #{anchor} in {}",
                        target.strip_prefix(&root).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_readme_is_a_front_page() {
    let (_, readme) = pages().swap_remove(0);
    let lines = readme.lines().count();
    assert!(
        lines <= 250,
        "README.md has {lines} lines; move depth into docs/"
    );
    for must in ["make serve", "make test", "docs/"] {
        assert!(readme.contains(must), "README.md does not mention {must:?}");
    }
}
