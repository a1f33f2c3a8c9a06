//! The README matches the code: every `--flag` it names is a flag of some `hermes` command.

use std::collections::BTreeSet;
use std::process::Command;

/// Flags the README names that belong to other tools (cargo, scripts/setup.sh, sbatch,
/// kubernetes-validate).
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
fn every_flag_the_readme_names_exists() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
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
    let missing: Vec<String> = flags_in(&readme)
        .into_iter()
        .filter(|f| !known.contains(f) && !OTHER_TOOLS.contains(&f.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "README names flags no command has: {missing:?}"
    );
}
