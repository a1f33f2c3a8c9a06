//! [`Tier`]: which encoder maps text into the teacher's space. The one type for that concept
//! from the command line to the done markers, the store's keys and the HTTP answers; the
//! name is spelled out only by its serde, clap and `Display` forms.

use serde::{Deserialize, Serialize};

/// An encoder tier: `minilm` (the reference ONNX encoder, always in a bundle) or `static`
/// (the bundle's fitted token table: much faster, approximating minilm's codes in the same
/// code space).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lowercase")]
pub enum Tier {
    Minilm,
    Static,
}

impl Tier {
    pub const ALL: [Tier; 2] = [Tier::Minilm, Tier::Static];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Minilm => "minilm",
            Tier::Static => "static",
        }
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Tier;

    #[test]
    fn one_spelling_in_every_form() {
        for tier in Tier::ALL {
            let json = serde_json::to_string(&tier).unwrap();
            assert_eq!(json, format!("\"{tier}\""));
            let parsed = <Tier as clap::ValueEnum>::from_str(tier.as_str(), false).unwrap();
            assert_eq!(parsed, tier);
        }
    }
}
