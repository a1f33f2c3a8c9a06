//! The label format of the contract: `code` (level indices), `label` (joined by `.`) and `cell`
//! (one mixed-radix integer at the code's depth); and a code prefix [`pack`]ed into one
//! integer, the key buckets and groups are counted by (at most [`MAX_DEPTH`] levels).

use serde::{Deserialize, Serialize};

/// A full or truncated code: one codeword index per level, coarse first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Code(pub Vec<u32>);

impl Code {
    pub fn depth(&self) -> usize {
        self.0.len()
    }

    /// The first `depth` levels. Greedy encoding makes this equal to encoding at that depth.
    pub fn truncate(&self, depth: usize) -> Code {
        Code(self.0[..depth.min(self.0.len())].to_vec())
    }

    /// `"17.3.9"`.
    pub fn label(&self) -> String {
        label(&self.0)
    }

    /// Mixed-radix index of the code at its own depth: `c1·K2·K3 + c2·K3 + c3` at depth 3,
    /// `c1·K2 + c2` at depth 2, `c1` at depth 1. `levels` are the codebook sizes.
    pub fn cell(&self, levels: &[usize]) -> u64 {
        self.0
            .iter()
            .zip(levels)
            .fold(0u64, |acc, (&c, &k)| acc * k as u64 + u64::from(c))
    }
}

/// The label of a code or code prefix: its level indices joined by `.` (`"17.3.9"`).
pub fn label<T: std::fmt::Display>(code: &[T]) -> String {
    code.iter().map(T::to_string).collect::<Vec<_>>().join(".")
}

/// Most levels a [`pack`]ed prefix holds (16 bits a level in a u128).
pub const MAX_DEPTH: usize = 8;

/// A code prefix of at most [`MAX_DEPTH`] levels packed for hashing: 16 bits a level. The
/// depth is not in the value (`[0, 1]` and `[1]` pack alike): prefixes of several depths are
/// keyed by `(depth, pack)`.
pub fn pack(code: &[u16]) -> u128 {
    code.iter()
        .fold(0u128, |acc, &c| (acc << 16) | u128::from(c))
}

/// Codebook sizes hermes can store: each in `2..=65,536` (indices are u16 in the codes files
/// and the id store), at most 255 levels (a u8 depth), and a full-depth cell that fits the
/// codes files' u32 `cell` column. Checked by `hermes fit` before any work and by every load.
pub fn check_levels(levels: &[usize]) -> Result<(), String> {
    if levels.is_empty() || levels.len() > 255 {
        return Err(format!(
            "levels {levels:?}: need 1 to 255 levels, got {}",
            levels.len()
        ));
    }
    if let Some(&k) = levels.iter().find(|&&k| !(2..=65_536).contains(&k)) {
        return Err(format!(
            "levels {levels:?}: every codebook needs 2 to 65,536 entries, not {k}"
        ));
    }
    let cells = levels
        .iter()
        .try_fold(1u64, |acc, &k| acc.checked_mul(k as u64));
    if cells.is_none_or(|c| c > u64::from(u32::MAX) + 1) {
        return Err(format!(
            "levels {levels:?}: more than 2^32 full-depth cells (the u32 `cell` column)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_beyond_the_stored_widths_are_refused() {
        assert!(check_levels(&[64, 64, 32]).is_ok());
        assert!(check_levels(&[65_536, 2]).is_ok());
        assert!(check_levels(&[64, 1]).unwrap_err().contains("not 1"));
        assert!(check_levels(&[65_537]).unwrap_err().contains("65,536"));
        assert!(check_levels(&[]).is_err());
        assert!(
            check_levels(&[65_536, 65_536, 2])
                .unwrap_err()
                .contains("2^32")
        );
    }

    #[test]
    fn label_and_cell_follow_the_contract() {
        let levels = [64, 64, 32];
        let code = Code(vec![17, 3, 9]);
        assert_eq!(code.label(), "17.3.9");
        assert_eq!(code.cell(&levels), 17 * 64 * 32 + 3 * 32 + 9);
        assert_eq!(code.truncate(2).label(), "17.3");
        assert_eq!(code.truncate(2).cell(&levels), 17 * 64 + 3);
        assert_eq!(code.truncate(1).cell(&levels), 17);
        assert_eq!(Code(vec![63, 63, 31]).cell(&levels), 64 * 64 * 32 - 1);
    }

    #[test]
    fn a_prefix_labels_and_packs_level_by_level() {
        assert_eq!(label::<u16>(&[17, 3, 9]), "17.3.9");
        assert_eq!(label::<u16>(&[]), "");
        assert_eq!(pack(&[1, 2]), (1 << 16) | 2);
        // The depth is not in the packed value: who mixes depths keys by (depth, pack).
        assert_eq!(pack(&[0, 1]), pack(&[1]));
        assert_ne!(pack(&[1, 0]), pack(&[0, 1]));
        assert_eq!(pack(&[u16::MAX; MAX_DEPTH]), u128::MAX);
    }
}
