//! The mixture spec (`mix.toml`, docs/mix.md): parsed with every unknown key refused
//! by name, then checked against the codes (depths, columns, labels) before any pass.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The largest budget a spec may ask for (2^53: every integer up to it is an exact f64).
pub const MAX_BUDGET: f64 = 9_007_199_254_740_992.0;

/// A whole spec, as read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    #[serde(default)]
    pub seed: u64,
    /// Stage-1 buckets: the prefixes of this length.
    pub depth: usize,
    /// How much to select, in units of `size`.
    pub budget: f64,
    /// `"docs"`, or a numeric column of the codes files.
    #[serde(default = "docs")]
    pub size: String,
    /// No row is selected more often than this.
    #[serde(default = "one")]
    pub max_epochs: u32,
    pub stage1: Stage1,
    #[serde(default)]
    pub stage2: Option<Stage2>,
}

fn docs() -> String {
    "docs".into()
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Natural,
    Temperature,
    Unimax,
    Explicit,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage1 {
    pub method: Method,
    /// `temperature` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// `explicit` only: bucket labels at `depth` → weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<BTreeMap<String, f64>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rule {
    Coverage,
    Proportional,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage2 {
    /// Sub-buckets: prefixes of this length; absent: the stage-1 buckets are the groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<usize>,
    #[serde(default = "coverage")]
    pub rule: Rule,
    /// A numeric column: only the top `top` fraction of each group are candidates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top: Option<f64>,
    /// Thin pools: a stage-1 bucket's groups with fewer candidates than this are merged into
    /// one group `<bucket>.*` (0: off). Not written when 0, so the JSON of a spec without it
    /// (and so its digest) is what it was before the key existed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub min_candidates: u64,
}

fn coverage() -> Rule {
    Rule::Coverage
}

fn is_zero(x: &u64) -> bool {
    *x == 0
}

impl Spec {
    /// Parses TOML; unknown keys are named in the error.
    pub fn parse(text: &str) -> Result<Spec, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim().replace('\n', " "))
    }

    /// The spec as TOML that [`Spec::parse`] reads back to the same spec (a swarm's variants,
    /// fit-mix's `optimal.toml`).
    pub fn to_toml(&self) -> String {
        let value = toml::Value::try_from(self).expect("a spec is a TOML table");
        toml::to_string_pretty(&value).expect("a TOML table prints")
    }

    /// This spec with stage 1 replaced by explicit `weights` (labels at `depth`).
    pub fn with_weights(&self, weights: BTreeMap<String, f64>) -> Spec {
        Spec {
            stage1: Stage1 {
                method: Method::Explicit,
                temperature: None,
                weights: Some(weights),
            },
            ..self.clone()
        }
    }

    /// Whether sizes are document counts (quotas are then integers).
    pub fn by_docs(&self) -> bool {
        self.size == "docs"
    }

    /// The prefix length of a group: stage 2's depth, else stage 1's.
    pub fn group_depth(&self) -> usize {
        self.stage2
            .as_ref()
            .and_then(|s| s.depth)
            .unwrap_or(self.depth)
    }

    /// Thin pools: the smallest candidate count a group keeps to itself (0: off).
    pub fn min_candidates(&self) -> u64 {
        self.stage2.as_ref().map_or(0, |s| s.min_candidates)
    }

    pub fn quality(&self) -> Option<(&str, f64)> {
        let s = self.stage2.as_ref()?;
        Some((s.quality.as_deref()?, s.top.unwrap_or(1.0)))
    }

    /// Everything that can be checked without the codes, then against `levels` and the
    /// numeric columns the codes files have.
    pub fn check(&self, levels: usize) -> Result<(), String> {
        if !(1..=levels).contains(&self.depth) {
            return Err(format!("depth = {} is outside 1..={levels}", self.depth));
        }
        if !self.budget.is_finite() || self.budget < 0.0 {
            return Err(format!("budget = {:e} must be a number >= 0", self.budget));
        }
        // Sizes and quotas are f64: past 2^53 a unit more or less cannot be represented.
        if self.budget > MAX_BUDGET {
            return Err(format!(
                "budget = {:e} is above 2^53 ({MAX_BUDGET:e}), beyond what sizes can count exactly",
                self.budget
            ));
        }
        if self.by_docs() && self.budget.fract() != 0.0 {
            return Err(format!(
                "budget = {}: with size = \"docs\" the budget is a whole number of documents",
                self.budget
            ));
        }
        if self.max_epochs < 1 || self.max_epochs > u32::from(u16::MAX) {
            return Err(format!(
                "max_epochs = {} must be in 1..=65535 (copies are u16)",
                self.max_epochs
            ));
        }
        let s1 = &self.stage1;
        match (s1.method, s1.temperature, &s1.weights) {
            (Method::Temperature, Some(t), None) if t.is_finite() && t > 0.0 => {}
            (Method::Temperature, Some(t), None) => {
                return Err(format!("stage1.temperature = {t} must be > 0"));
            }
            (Method::Temperature, None, _) => {
                return Err("stage1.method = \"temperature\" needs stage1.temperature".into());
            }
            (Method::Explicit, None, Some(w)) => {
                if let Some((label, x)) = w.iter().find(|(_, x)| !x.is_finite()) {
                    return Err(format!(
                        "stage1.weights.\"{label}\" = {x} is not a finite number"
                    ));
                }
                if let Some((label, x)) = w.iter().find(|(_, x)| **x < 0.0) {
                    return Err(format!("stage1.weights.\"{label}\" = {x} is negative"));
                }
                let sum: f64 = w.values().sum();
                if sum > 1.0 + 1e-9 {
                    return Err(format!("stage1.weights sum to {sum}, more than 1"));
                }
            }
            (Method::Explicit, _, None) => {
                return Err("stage1.method = \"explicit\" needs stage1.weights".into());
            }
            (Method::Natural | Method::Unimax, None, None) => {}
            (m, _, _) => {
                let extra = if s1.temperature.is_some() {
                    "temperature"
                } else {
                    "weights"
                };
                return Err(format!(
                    "stage1.{extra} does not apply to method = \"{}\"",
                    serde_json::to_value(m)
                        .unwrap_or_default()
                        .as_str()
                        .unwrap_or("?")
                ));
            }
        }
        if let Some(s2) = &self.stage2 {
            if let Some(d) = s2.depth
                && !(self.depth + 1..=levels).contains(&d)
            {
                return Err(format!(
                    "stage2.depth = {d} must be in {}..={levels} (deeper than depth = {})",
                    self.depth + 1,
                    self.depth
                ));
            }
            match (&s2.quality, s2.top) {
                (None, Some(_)) => return Err("stage2.top needs stage2.quality".into()),
                (Some(_), Some(t)) if !(t > 0.0 && t <= 1.0) => {
                    return Err(format!("stage2.top = {t} must be in (0, 1]"));
                }
                _ => {}
            }
            if s2.min_candidates > 0 && s2.depth.is_none() {
                return Err(format!(
                    "stage2.min_candidates = {} needs stage2.depth deeper than depth = {}: without it the groups are the stage-1 buckets and there is nothing to merge",
                    s2.min_candidates, self.depth
                ));
            }
        }
        Ok(())
    }

    /// The numeric columns the spec reads: size (unless docs) and quality.
    pub fn columns(&self) -> Vec<(&'static str, &str)> {
        let mut cols = Vec::new();
        if !self.by_docs() {
            cols.push(("size", self.size.as_str()));
        }
        if let Some((q, _)) = self.quality() {
            cols.push(("stage2.quality", q));
        }
        cols
    }
}

#[cfg(test)]
mod tests {
    use super::Spec;

    const GOOD: &str = r#"
seed = 3
depth = 1
budget = 100
max_epochs = 2
[stage1]
method = "temperature"
temperature = 2.0
[stage2]
depth = 2
rule = "proportional"
quality = "score"
top = 0.3
"#;

    #[test]
    fn a_full_spec_parses_and_checks() {
        let s = Spec::parse(GOOD).unwrap();
        assert_eq!(s.group_depth(), 2);
        assert_eq!(s.quality(), Some(("score", 0.3)));
        s.check(3).unwrap();
    }

    #[test]
    fn bad_specs_are_refused_by_name() {
        let err = Spec::parse(&GOOD.replace("seed = 3", "sed = 3")).unwrap_err();
        assert!(err.contains("unknown field `sed`"), "{err}");
        let err = Spec::parse(&GOOD.replace("top = 0.3", "top = 0.3\nbogus = 1")).unwrap_err();
        assert!(err.contains("bogus"), "{err}");
        for (from, to, want) in [
            (
                "top = 0.3",
                "top = 1.5",
                "stage2.top = 1.5 must be in (0, 1]",
            ),
            ("top = 0.3", "top = 0.0", "must be in (0, 1]"),
            (
                "depth = 2",
                "depth = 1",
                "stage2.depth = 1 must be in 2..=3",
            ),
            ("depth = 1\n", "depth = 4\n", "depth = 4 is outside 1..=3"),
            ("budget = 100", "budget = 10.5", "whole number"),
            ("budget = 100", "budget = 1e300", "above 2^53"),
            ("max_epochs = 2", "max_epochs = 0", "max_epochs = 0"),
            ("temperature = 2.0", "temperature = -1.0", "must be > 0"),
        ] {
            let s = Spec::parse(&GOOD.replace(from, to)).unwrap();
            let err = s.check(3).unwrap_err();
            assert!(err.contains(want), "{to}: {err}");
        }
        let s = Spec::parse(
            "depth = 1\nbudget = 5\n[stage1]\nmethod = \"explicit\"\nweights = { \"1\" = 0.7, \"2\" = 0.4 }\n",
        )
        .unwrap();
        assert!(s.check(3).unwrap_err().contains("more than 1"));
        let s = Spec::parse(
            "depth = 1\nbudget = 5\n[stage1]\nmethod = \"explicit\"\nweights = { \"1\" = -0.1 }\n",
        )
        .unwrap();
        assert!(s.check(3).unwrap_err().contains("negative"));
        let s = Spec::parse(
            "depth = 1\nbudget = 5\n[stage1]\nmethod = \"explicit\"\nweights = { \"1\" = nan }\n",
        )
        .unwrap();
        assert!(s.check(3).unwrap_err().contains("not a finite number"));
    }

    #[test]
    fn min_candidates_is_read_needs_a_stage2_depth_and_is_not_written_when_off() {
        let s = Spec::parse(&GOOD.replace("top = 0.3", "top = 0.3\nmin_candidates = 50")).unwrap();
        assert_eq!(s.min_candidates(), 50);
        s.check(3).unwrap();
        assert!(s.to_toml().contains("min_candidates = 50"));
        assert_eq!(Spec::parse(&s.to_toml()).unwrap(), s);
        // Off (the default): the spec's JSON, hashed into a plan's spec_digest, has no such key.
        let off = Spec::parse(GOOD).unwrap();
        assert_eq!(off.min_candidates(), 0);
        let json = serde_json::to_string(&off).unwrap();
        assert!(!json.contains("min_candidates"), "{json}");
        let zero =
            Spec::parse(&GOOD.replace("top = 0.3", "top = 0.3\nmin_candidates = 0")).unwrap();
        assert_eq!(serde_json::to_string(&zero).unwrap(), json);
        // Without a stage-2 depth the groups are the buckets: nothing to merge.
        let s = Spec::parse(&GOOD.replace("depth = 2\n", "min_candidates = 5\n")).unwrap();
        let err = s.check(3).unwrap_err();
        assert!(
            err.contains("stage2.min_candidates = 5 needs stage2.depth"),
            "{err}"
        );
        let err =
            Spec::parse(&GOOD.replace("top = 0.3", "top = 0.3\nmin_candidates = -1")).unwrap_err();
        assert!(err.contains("min_candidates"), "{err}");
    }
}
