//! The label format of the contract: `code` (level indices), `label` (joined by `.`) and `cell`
//! (one mixed-radix integer at the code's depth).

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
        let parts: Vec<String> = self.0.iter().map(u32::to_string).collect();
        parts.join(".")
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
}
