//! hermes' own BERT WordPiece tokenizer: the ids HF `tokenizers` gives a `tokenizer.json` of
//! the BERT shape (BertNormalizer, BertPreTokenizer, WordPiece, `[CLS] A [SEP]`), without its
//! per-token strings, offsets and alignment bookkeeping, which took ~80% of the static tier's
//! time.
//!
//! [`WordPiece::from_json`] accepts only that shape and returns `None` for anything else, so
//! the caller falls back to HF. Behaviour follows the `tokenizers` crate (0.22, the version Cargo.lock pins; the tests compare against the Python package pinned in scripts/requirements.txt) step by step, with the very
//! Unicode tables it uses (`unicode_categories`, `unicode-normalization-alignments`):
//! 1. added tokens (`[CLS]`, `[MASK]`, ...) are cut out of the raw text, leftmost-longest;
//! 2. each piece between them is normalised: clean_text drops NUL, U+FFFD and Cc/Cf/Co except
//!    `\t\n\r`, and maps whitespace to ' '; CJK ideographs get a space on each side;
//!    strip_accents is NFD then dropping Mn; lowercase is `char::to_lowercase`;
//! 3. split on whitespace, each punctuation char its own word (ASCII punctuation or P*);
//! 4. WordPiece: a word of more than `max_input_chars_per_word` chars is `[UNK]`; otherwise
//!    the longest vocabulary prefix, then the longest `##` continuation, and so on; a word
//!    with a remainder no token starts is one `[UNK]`.
//!
//! The longest prefix comes from one walk down a byte trie of the vocabulary (linear in the
//! word, where HF tries every shorter substring). Truncation stops early: once a text has
//! more than its budget of tokens, the rest is not tokenized (it is only flagged).

use std::sync::OnceLock;

use serde_json::Value;
use unicode_categories::UnicodeCategories;
use unicode_normalization_alignments::UnicodeNormalization;
use unicode_normalization_alignments::char::{canonical_combining_class, decompose_canonical};

/// Normalised bytes gathered before they are split into words: long texts are tokenized in
/// slices of about this size, so truncation can stop early.
const SLICE_BYTES: usize = 4096;

/// The BertNormalizer's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Normalizer {
    clean_text: bool,
    chinese_chars: bool,
    strip_accents: bool,
    lowercase: bool,
}

/// A byte trie of the vocabulary: node 0 is the root; `##` continuations hang under the
/// node of `##`.
struct Trie {
    /// The root's children by byte (`u32::MAX`: none).
    root: Box<[u32; 256]>,
    /// Per node: its edges' range in `edges`, sorted by byte.
    spans: Vec<(u32, u32)>,
    edges: Vec<(u8, u32)>,
    /// Per node: the token id it completes (`u32::MAX`: none).
    ids: Vec<u32>,
}

const NONE: u32 = u32::MAX;

impl Trie {
    fn build(vocab: &[(String, u32)]) -> Self {
        // Built as sorted children lists, then flattened.
        let mut children: Vec<Vec<(u8, u32)>> = vec![Vec::new()];
        let mut ids = vec![NONE];
        for (token, id) in vocab {
            let mut node = 0usize;
            for &b in token.as_bytes() {
                node = match children[node].binary_search_by_key(&b, |e| e.0) {
                    Ok(k) => children[node][k].1 as usize,
                    Err(k) => {
                        let next = children.len();
                        children[node].insert(k, (b, next as u32));
                        children.push(Vec::new());
                        ids.push(NONE);
                        next
                    }
                };
            }
            ids[node] = *id;
        }
        let mut root = Box::new([NONE; 256]);
        for &(b, c) in &children[0] {
            root[b as usize] = c;
        }
        let mut spans = Vec::with_capacity(children.len());
        let mut edges = Vec::new();
        for c in &children {
            spans.push((edges.len() as u32, c.len() as u32));
            edges.extend_from_slice(c);
        }
        Self {
            root,
            spans,
            edges,
            ids,
        }
    }

    #[inline]
    fn child(&self, node: u32, b: u8) -> u32 {
        if node == 0 {
            return self.root[b as usize];
        }
        let (start, len) = self.spans[node as usize];
        let edges = &self.edges[start as usize..(start + len) as usize];
        if edges.len() <= 8 {
            edges.iter().find(|e| e.0 == b).map_or(NONE, |e| e.1)
        } else {
            edges
                .binary_search_by_key(&b, |e| e.0)
                .map_or(NONE, |k| edges[k].1)
        }
    }

    /// The node `s` leads to from the root.
    fn walk(&self, s: &[u8]) -> u32 {
        s.iter()
            .try_fold(0u32, |node, &b| match self.child(node, b) {
                NONE => None,
                n => Some(n),
            })
            .unwrap_or(NONE)
    }
}

/// Whole tokens of up to [`KEY_BYTES`] bytes by their bytes: most words are one token, found
/// with one probe of one cache line instead of a walk down the trie. Open addressing; each
/// slot holds its key inline, so a look-up touches no other memory.
struct Words {
    slots: Vec<Slot>,
    /// log2 of the slot count.
    bits: u32,
}

/// Longest key held (longer words take the trie).
const KEY_BYTES: usize = 16;

#[derive(Clone, Copy, Default)]
#[repr(C, align(32))]
struct Slot {
    /// The key's bytes, zero-padded, as two little-endian words.
    key: [u64; 2],
    id: u32,
    /// 0: an empty slot.
    len: u32,
}

/// `s` (at most KEY_BYTES) zero-padded into two words.
#[inline]
fn key(s: &[u8]) -> [u64; 2] {
    let mut k = [0u8; KEY_BYTES];
    k[..s.len()].copy_from_slice(s);
    [
        u64::from_le_bytes(k[..8].try_into().expect("8 bytes")),
        u64::from_le_bytes(k[8..].try_into().expect("8 bytes")),
    ]
}

impl Words {
    fn build<'a>(tokens: impl Iterator<Item = (&'a [u8], u32)>) -> Self {
        let tokens: Vec<(&[u8], u32)> = tokens
            .filter(|(t, _)| !t.is_empty() && t.len() <= KEY_BYTES)
            .collect();
        let bits = (tokens.len() * 2)
            .next_power_of_two()
            .max(16)
            .trailing_zeros();
        let mut words = Self {
            slots: vec![Slot::default(); 1 << bits],
            bits,
        };
        for (t, id) in tokens {
            let k = key(t);
            let mask = words.slots.len() - 1;
            let mut i = words.index(k, t.len());
            while words.slots[i].len != 0 {
                i = (i + 1) & mask;
            }
            words.slots[i] = Slot {
                key: k,
                id,
                len: t.len() as u32,
            };
        }
        words
    }

    /// The home slot of a key: the high bits of a multiplicative hash.
    #[inline]
    fn index(&self, k: [u64; 2], len: usize) -> usize {
        const M: u64 = 0x9e37_79b9_7f4a_7c15;
        let h = (k[0] ^ k[1].rotate_left(29) ^ len as u64).wrapping_mul(M);
        let h = (h ^ (h >> 32)).wrapping_mul(M);
        (h >> (64 - self.bits)) as usize
    }

    /// The id of the token `s`; `None` when it is not one (or is longer than KEY_BYTES).
    #[inline]
    fn get(&self, s: &[u8]) -> Option<u32> {
        if s.is_empty() || s.len() > KEY_BYTES {
            return None;
        }
        let k = key(s);
        let mask = self.slots.len() - 1;
        let mut i = self.index(k, s.len());
        loop {
            let slot = &self.slots[i];
            if slot.len == 0 {
                return None;
            }
            if slot.len as usize == s.len() && slot.key == k {
                return Some(slot.id);
            }
            i = (i + 1) & mask;
        }
    }
}

/// A BERT-shaped `tokenizer.json`, compiled for speed. Immutable; share it behind an `Arc`.
pub struct WordPiece {
    normalizer: Normalizer,
    trie: Trie,
    /// Whole tokens that start a word, and continuation tokens without their prefix.
    starts: Words,
    continues: Words,
    /// The node of the continuation prefix (`##`); `NONE` when no token continues a word.
    continuation: u32,
    unk: u32,
    max_word_chars: usize,
    /// Added tokens, matched on the raw text, longest first.
    added: Vec<(String, u32)>,
    /// Whether an added token starts with this byte.
    added_first: [bool; 256],
    /// `[CLS]` and `[SEP]` of the single-sequence template.
    cls: u32,
    sep: u32,
}

/// One text's ids and whether the budget cut it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub truncated: bool,
}

impl WordPiece {
    /// Compiles `tokenizer.json` if it has the BERT WordPiece shape this module reproduces;
    /// `None` for any other shape (the caller keeps HF `tokenizers`).
    pub fn from_json(json: &str) -> Option<Self> {
        let v: Value = serde_json::from_str(json).ok()?;
        let n = &v["normalizer"];
        if n["type"] != "BertNormalizer" || v["pre_tokenizer"]["type"] != "BertPreTokenizer" {
            return None;
        }
        let flag = |k: &str| n[k].as_bool();
        let lowercase = flag("lowercase")?;
        let normalizer = Normalizer {
            clean_text: flag("clean_text")?,
            chinese_chars: flag("handle_chinese_chars")?,
            // `null` follows lowercase, as in BertNormalizer::normalize.
            strip_accents: if n["strip_accents"].is_null() {
                lowercase
            } else {
                flag("strip_accents")?
            },
            lowercase,
        };
        let m = &v["model"];
        if m["type"] != "WordPiece" {
            return None;
        }
        let prefix = m["continuing_subword_prefix"].as_str()?;
        let max_word_chars = usize::try_from(m["max_input_chars_per_word"].as_u64()?).ok()?;
        let vocab: Vec<(String, u32)> = m["vocab"]
            .as_object()?
            .iter()
            .map(|(k, id)| Some((k.clone(), u32::try_from(id.as_u64()?).ok()?)))
            .collect::<Option<_>>()?;
        let lookup = |t: &str| vocab.iter().find(|(k, _)| k == t).map(|(_, id)| *id);
        let unk = lookup(m["unk_token"].as_str()?)?;
        // Added tokens: only the kind matched verbatim on the raw text.
        let mut added = Vec::new();
        for t in v["added_tokens"].as_array()? {
            let plain = t["normalized"] == false
                && t["lstrip"] == false
                && t["rstrip"] == false
                && t["single_word"] == false;
            let content = t["content"].as_str()?;
            if !plain || content.is_empty() {
                return None;
            }
            added.push((content.to_string(), u32::try_from(t["id"].as_u64()?).ok()?));
        }
        added.sort_by_key(|t| std::cmp::Reverse(t.0.len()));
        let mut added_first = [false; 256];
        for (t, _) in &added {
            added_first[t.as_bytes()[0] as usize] = true;
        }
        let special = |name: &str| -> Option<u32> {
            added
                .iter()
                .find(|(t, _)| t == name)
                .map(|(_, id)| *id)
                .or_else(|| lookup(name))
        };
        let (cls, sep) = template(&v["post_processor"], special)?;
        let trie = Trie::build(&vocab);
        let starts = Words::build(vocab.iter().map(|(t, id)| (t.as_bytes(), *id)));
        let continues = Words::build(vocab.iter().filter_map(|(t, id)| {
            let rest = t.strip_prefix(prefix)?;
            Some((rest.as_bytes(), *id))
        }));
        let continuation = if prefix.is_empty() {
            0
        } else {
            trie.walk(prefix.as_bytes())
        };
        Some(Self {
            normalizer,
            trie,
            starts,
            continues,
            continuation,
            unk,
            max_word_chars,
            added,
            added_first,
            cls,
            sep,
        })
    }

    /// The ids of `text` (with `[CLS]`/`[SEP]` when `special`), at most `max_tokens` of them
    /// special tokens included, as HF `encode(text, special)` with right truncation gives.
    pub fn encode(&self, text: &str, special: bool, max_tokens: usize) -> Encoded {
        let budget = if special {
            max_tokens.saturating_sub(2)
        } else {
            max_tokens
        };
        let mut ids = Vec::with_capacity(budget.min(text.len() / 3 + 4) + 2);
        if special {
            ids.push(self.cls);
        }
        let first = ids.len();
        let truncated = NORMALIZED.with(|buf| {
            let mut buf = buf.take();
            let cut = self.tokens(text, &mut ids, first + budget, &mut buf);
            NORMALIZED.set(buf);
            cut
        });
        if truncated {
            ids.truncate(first + budget);
        }
        if special {
            ids.push(self.sep);
        }
        Encoded { ids, truncated }
    }

    /// Appends `text`'s tokens to `ids`; stops (returning true) once it holds more than `limit`.
    fn tokens(&self, text: &str, ids: &mut Vec<u32>, limit: usize, norm: &mut Buffers) -> bool {
        norm.clear();
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if self.added_first[b as usize]
                && let Some((len, id)) = self.added_at(&text[i..])
            {
                self.flush(norm);
                if self.words(&norm.text, ids, limit) {
                    return true;
                }
                norm.text.clear();
                ids.push(id);
                if ids.len() > limit {
                    return true;
                }
                i += len;
                continue;
            }
            if b < 0x80 {
                self.ascii(b, norm);
                i += 1;
            } else {
                let c = text[i..].chars().next().expect("i is a char boundary");
                self.other(c, norm);
                i += c.len_utf8();
            }
            // A long text goes through WordPiece slice by slice, cut at a space with no NFD
            // run pending: a word boundary that nothing reorders across.
            if norm.text.len() >= SLICE_BYTES && norm.run.is_empty() && norm.text.ends_with(' ') {
                if self.words(&norm.text, ids, limit) {
                    return true;
                }
                norm.text.clear();
            }
        }
        self.flush(norm);
        self.words(&norm.text, ids, limit)
    }

    /// The added token that starts `s`, longest first: (its length, its id).
    fn added_at(&self, s: &str) -> Option<(usize, u32)> {
        self.added
            .iter()
            .find(|(t, _)| s.starts_with(t.as_str()))
            .map(|(t, id)| (t.len(), *id))
    }

    /// Normalises one ASCII byte into `norm`.
    #[inline]
    fn ascii(&self, b: u8, norm: &mut Buffers) {
        let n = self.normalizer;
        let mut b = b;
        if n.clean_text {
            match b {
                b'\t' | b'\n' | b'\r' => b = b' ',
                // NUL and the other C0 controls and DEL are Cc: dropped before NFD sees the
                // text (as HF does), so they must not end the pending NFD run either.
                0..=0x1f | 0x7f => return,
                // U+000B/U+000C are Cc too (above); nothing else ASCII is whitespace.
                _ => {}
            }
        }
        if !norm.run.is_empty() {
            self.flush(norm);
        }
        if n.lowercase {
            b = b.to_ascii_lowercase();
        }
        norm.text.push(b as char);
    }

    /// Normalises one non-ASCII char: clean_text and CJK spacing at once; NFD waits in
    /// `norm.run` until the next char that cannot reorder with it.
    fn other(&self, c: char, norm: &mut Buffers) {
        let n = self.normalizer;
        let f = flags(c);
        if n.clean_text {
            if c == '\u{fffd}' || f & OTHER != 0 {
                return;
            }
            if f & WHITESPACE != 0 {
                self.flush(norm);
                norm.text.push(' ');
                return;
            }
        }
        let chinese = n.chinese_chars && f & CHINESE != 0;
        if chinese {
            self.flush(norm);
            norm.text.push(' ');
        }
        if n.strip_accents {
            if f & SIMPLE != 0 {
                // Its own NFD and a starter: nothing reorders across it.
                self.flush(norm);
                if f & MN == 0 {
                    self.lower(c, &mut norm.text);
                }
            } else {
                norm.run.push(c);
            }
        } else {
            self.lower(c, &mut norm.text);
        }
        if chinese {
            self.flush(norm);
            norm.text.push(' ');
        }
    }

    /// Ends a run of chars awaiting NFD: decomposes and reorders it, drops Mn, lowercases.
    fn flush(&self, norm: &mut Buffers) {
        if norm.run.is_empty() {
            return;
        }
        let Buffers { text, run } = norm;
        for (d, _) in run.as_str().nfd() {
            if !d.is_mark_nonspacing() {
                self.lower(d, text);
            }
        }
        run.clear();
    }

    #[inline]
    fn lower(&self, c: char, out: &mut String) {
        if self.normalizer.lowercase {
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }

    /// Pre-tokenizes normalised text and appends each word's WordPiece ids; true as soon as
    /// `ids` holds more than `limit` (checked after whole words: a word may still turn [UNK]).
    fn words(&self, norm: &str, ids: &mut Vec<u32>, limit: usize) -> bool {
        let bytes = norm.as_bytes();
        let mut start = 0;
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            let (len, class) = if b < 0x80 {
                (1, ASCII_CLASS[b as usize])
            } else {
                let c = norm[i..].chars().next().expect("char boundary");
                let f = flags(c);
                let class = if c.is_whitespace() {
                    SPACE
                } else if f & PUNCT != 0 {
                    PUNCTUATION
                } else {
                    WORD
                };
                (c.len_utf8(), class)
            };
            if class != WORD {
                if start < i {
                    self.word(&norm[start..i], ids);
                    if ids.len() > limit {
                        return true;
                    }
                }
                if class == PUNCTUATION {
                    self.word(&norm[i..i + len], ids);
                    if ids.len() > limit {
                        return true;
                    }
                }
                start = i + len;
            }
            i += len;
        }
        if start < bytes.len() {
            self.word(&norm[start..], ids);
        }
        ids.len() > limit
    }

    /// WordPiece of one word: greedy longest match, `[UNK]` for the whole word on failure.
    fn word(&self, word: &str, ids: &mut Vec<u32>) {
        let bytes = word.as_bytes();
        if bytes.len() > self.max_word_chars && word.chars().count() > self.max_word_chars {
            ids.push(self.unk);
            return;
        }
        let mark = ids.len();
        let mut start = 0;
        while start < bytes.len() {
            // The whole rest first: it is the longest match when it is a token.
            let whole = if start == 0 {
                self.starts.get(bytes)
            } else {
                self.continues.get(&bytes[start..])
            };
            if let Some(id) = whole {
                ids.push(id);
                return;
            }
            let mut node = if start == 0 { 0 } else { self.continuation };
            let mut best = None;
            let mut i = start;
            while node != NONE && i < bytes.len() {
                node = self.trie.child(node, bytes[i]);
                i += 1;
                if node != NONE && self.trie.ids[node as usize] != NONE {
                    best = Some((i, self.trie.ids[node as usize]));
                }
            }
            match best {
                Some((end, id)) => {
                    ids.push(id);
                    start = end;
                }
                None => {
                    ids.truncate(mark);
                    ids.push(self.unk);
                    return;
                }
            }
        }
    }
}

/// `[CLS]` and `[SEP]` of a post-processor that wraps one sequence as `[CLS] A [SEP]`
/// (TemplateProcessing or BertProcessing); `None` for any other.
fn template(p: &Value, special: impl Fn(&str) -> Option<u32>) -> Option<(u32, u32)> {
    match p["type"].as_str()? {
        "BertProcessing" => {
            let id = |k: &str| p[k][0].as_str().and_then(&special);
            let (cls, sep) = (id("cls")?, id("sep")?);
            // The pair's ids in the file must be the vocabulary's.
            (p["cls"][1].as_u64()? == u64::from(cls) && p["sep"][1].as_u64()? == u64::from(sep))
                .then_some((cls, sep))
        }
        "TemplateProcessing" => {
            let single = p["single"].as_array()?;
            if single.len() != 3 || single[1]["Sequence"]["id"] != "A" {
                return None;
            }
            let token = |piece: &Value| -> Option<u32> {
                let name = piece["SpecialToken"]["id"].as_str()?;
                let ids = p["special_tokens"][name]["ids"].as_array()?;
                if ids.len() != 1 {
                    return None;
                }
                u32::try_from(ids[0].as_u64()?).ok()
            };
            Some((token(&single[0])?, token(&single[2])?))
        }
        _ => None,
    }
}

/// The normalised text being built, and the run of chars waiting for NFD.
#[derive(Default)]
struct Buffers {
    text: String,
    run: String,
}

impl Buffers {
    fn clear(&mut self) {
        self.text.clear();
        self.run.clear();
    }
}

thread_local! {
    /// Reused per thread: no allocation per text once warm.
    static NORMALIZED: std::cell::Cell<Buffers> = std::cell::Cell::new(Buffers::default());
}

// Pre-tokenizer classes.
const WORD: u8 = 0;
const SPACE: u8 = 1;
const PUNCTUATION: u8 = 2;

/// The class of each ASCII byte in normalised text: `char::is_whitespace`, then
/// `is_ascii_punctuation` (which BertPreTokenizer adds to Unicode's P*).
static ASCII_CLASS: [u8; 128] = {
    let mut t = [WORD; 128];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        t[b] = if matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
            SPACE
        } else if c.is_ascii_punctuation() {
            PUNCTUATION
        } else {
            WORD
        };
        b += 1;
    }
    t
};

// Character flags.
/// Cc, Cf or Co by `unicode_categories` (BertNormalizer's `is_control`).
const OTHER: u8 = 1;
/// BertNormalizer's whitespace: `\t\n\r` or `char::is_whitespace`.
const WHITESPACE: u8 = 2;
/// One of BertNormalizer's CJK ranges.
const CHINESE: u8 = 4;
/// Mn by `unicode_categories` (what strip_accents drops).
const MN: u8 = 8;
/// P* by `unicode_categories`.
const PUNCT: u8 = 16;
/// Its canonical decomposition is itself and its combining class 0: NFD leaves it and
/// reorders nothing across it.
const SIMPLE: u8 = 32;

fn compute_flags(c: char) -> u8 {
    let mut f = 0;
    if c.is_other() {
        f |= OTHER;
    }
    if matches!(c, '\t' | '\n' | '\r') || c.is_whitespace() {
        f |= WHITESPACE;
    }
    if matches!(c as u32,
        0x4E00..=0x9FFF
        | 0x3400..=0x4DBF
        | 0x20000..=0x2A6DF
        | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F
        | 0x2B920..=0x2CEAF
        | 0xF900..=0xFAFF
        | 0x2F800..=0x2FA1F)
    {
        f |= CHINESE;
    }
    if c.is_mark_nonspacing() {
        f |= MN;
    }
    if c.is_punctuation() {
        f |= PUNCT;
    }
    let mut own = true;
    let mut n = 0;
    decompose_canonical(c, |d| {
        n += 1;
        own &= d == c;
    });
    if own && n == 1 && canonical_combining_class(c) == 0 {
        f |= SIMPLE;
    }
    f
}

/// The flags of `c`: a table for the Basic Multilingual Plane (the category tables are
/// binary searches, which took a fifth of HF's time), computed beyond it.
#[inline]
fn flags(c: char) -> u8 {
    static BMP: OnceLock<Box<[u8]>> = OnceLock::new();
    let cp = c as u32;
    if cp < 0x10000 {
        let table = BMP.get_or_init(|| {
            (0..0x10000u32)
                .map(|cp| char::from_u32(cp).map_or(0, compute_flags))
                .collect()
        });
        table[cp as usize]
    } else {
        compute_flags(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trie_finds_longest_prefixes() {
        let vocab: Vec<(String, u32)> = ["a", "ab", "abc", "##c", "##cd", "x"]
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        let trie = Trie::build(&vocab);
        assert_eq!(trie.ids[trie.walk(b"abc") as usize], 2);
        assert_eq!(trie.walk(b"abd"), NONE);
        assert_eq!(trie.ids[trie.walk(b"##") as usize], NONE);
        let words = Words::build(vocab.iter().map(|(t, id)| (t.as_bytes(), *id)));
        assert_eq!(words.get(b"ab"), Some(1));
        assert_eq!(words.get(b"##cd"), Some(4));
        assert_eq!(words.get(b"abcd"), None);
        assert_eq!(words.get(b""), None);
    }

    #[test]
    fn flags_follow_the_unicode_tables() {
        assert_ne!(flags('\u{0301}') & MN, 0);
        assert_eq!(flags('\u{0301}') & SIMPLE, 0);
        assert_eq!(flags('é') & SIMPLE, 0, "é decomposes");
        assert_ne!(flags('«') & PUNCT, 0);
        assert_ne!(flags('\u{200b}') & OTHER, 0, "ZWSP is Cf");
        assert_ne!(flags('\u{3000}') & WHITESPACE, 0);
        assert_ne!(flags('中') & CHINESE, 0);
        assert_ne!(flags('ß') & SIMPLE, 0);
    }
}
