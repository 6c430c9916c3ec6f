//! Byte-level BPE (`tokenizer.ggml.model` = "gpt2"): the GPT-2 byte↔unicode
//! mapping, the merge table and the merge loop.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use super::TokenizerError;

/// The GPT-2 byte → character table: printable Latin-1 bytes map to
/// themselves, the other 68 bytes to U+0100.. in byte order.
pub(crate) fn byte_to_char(b: u8) -> char {
    tables().0[b as usize]
}

/// The inverse of [`byte_to_char`].
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let cp = c as u32;
    if cp >= 0x100 + 68 {
        return None;
    }
    tables().1[cp as usize]
}

fn keeps_itself(b: u8) -> bool {
    matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF)
}

type ByteTables = ([char; 256], [Option<u8>; 0x100 + 68]);

fn build_tables() -> ByteTables {
    let mut fwd = ['\0'; 256];
    let mut rev = [None; 0x100 + 68];
    let mut extra = 0u32;
    for b in 0..=255u8 {
        let cp = if keeps_itself(b) {
            u32::from(b)
        } else {
            extra += 1;
            0xFF + extra
        };
        // Every value is below U+0144, a valid scalar value.
        let c = char::from_u32(cp).unwrap_or('\u{FFFD}');
        fwd[b as usize] = c;
        rev[cp as usize] = Some(b);
    }
    (fwd, rev)
}

fn tables() -> &'static ByteTables {
    static TABLES: std::sync::OnceLock<ByteTables> = std::sync::OnceLock::new();
    TABLES.get_or_init(build_tables)
}

/// Maps every byte of `word` to its GPT-2 character.
pub(crate) fn byte_encode(word: &str) -> String {
    let mut s = String::with_capacity(word.len() * 2);
    s.extend(word.bytes().map(byte_to_char));
    s
}

/// The merge table: rank of each (left, right) pair, first occurrence wins.
#[derive(Debug, Default, Clone)]
pub(crate) struct Merges {
    /// Every distinct merge side, interned.
    parts: HashMap<String, u32>,
    ranks: HashMap<(u32, u32), u32>,
}

impl Merges {
    /// Parses `tokenizer.ggml.merges` entries ("left right", split at the
    /// first space after the first byte).
    pub(crate) fn parse<S: AsRef<str>>(merges: &[S]) -> Result<Merges, TokenizerError> {
        let mut m = Merges::default();
        for (index, entry) in merges.iter().enumerate() {
            let entry = entry.as_ref();
            // Like llama.cpp, search from the second byte: a merge's left
            // side may itself be a space.
            let skip = entry.chars().next().map_or(0, char::len_utf8);
            let split = entry[skip..].find(' ').map(|p| p + skip);
            let Some(p) = split else {
                return Err(TokenizerError::MalformedMerge {
                    index,
                    merge: phi_gguf::printable(entry),
                });
            };
            let rank = u32::try_from(index).map_err(|_| TokenizerError::TooLarge {
                what: "tokenizer.ggml.merges",
            })?;
            let left = m.intern(&entry[..p]);
            let right = m.intern(&entry[p + 1..]);
            m.ranks.entry((left, right)).or_insert(rank);
        }
        Ok(m)
    }

    fn intern(&mut self, s: &str) -> u32 {
        let next = self.parts.len() as u32;
        *self.parts.entry(s.to_owned()).or_insert(next)
    }

    pub(crate) fn len(&self) -> usize {
        self.ranks.len()
    }

    fn rank(&self, left: &str, right: &str) -> Option<u32> {
        let l = *self.parts.get(left)?;
        let r = *self.parts.get(right)?;
        self.ranks.get(&(l, r)).copied()
    }
}

/// A candidate merge in the queue: lowest rank first, then leftmost.
#[derive(Debug, PartialEq, Eq)]
struct Bigram {
    rank: u32,
    left: usize,
    right: usize,
    /// Byte length of the merged text when queued (stale entries differ).
    size: usize,
}

impl Ord for Bigram {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap pops the greatest: invert both keys.
        other
            .rank
            .cmp(&self.rank)
            .then_with(|| other.left.cmp(&self.left))
            .then_with(|| other.size.cmp(&self.size))
            .then_with(|| other.right.cmp(&self.right))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug, Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// Runs the merges over one byte-encoded word and returns the byte ranges
/// of the resulting symbols, in order. With `whole`, the word is one symbol.
pub(crate) fn merge_word(merges: &Merges, word: &str, whole: bool) -> Vec<(usize, usize)> {
    let mut symbols: Vec<Symbol> = Vec::new();
    if whole {
        symbols.push(Symbol {
            start: 0,
            len: word.len(),
            prev: None,
            next: None,
        });
    } else {
        let n = word.chars().count();
        for (i, (start, c)) in word.char_indices().enumerate() {
            symbols.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: i.checked_sub(1),
                next: (i + 1 < n).then_some(i + 1),
            });
        }
    }
    let text = |s: &Symbol| &word[s.start..s.start + s.len];
    let mut queue = BinaryHeap::new();
    let push =
        |queue: &mut BinaryHeap<Bigram>, symbols: &[Symbol], l: Option<usize>, r: Option<usize>| {
            let (Some(l), Some(r)) = (l, r) else { return };
            let (ls, rs) = (&symbols[l], &symbols[r]);
            if let Some(rank) = merges.rank(text(ls), text(rs)) {
                queue.push(Bigram {
                    rank,
                    left: l,
                    right: r,
                    size: ls.len + rs.len,
                });
            }
        };
    for i in 1..symbols.len() {
        push(&mut queue, &symbols, Some(i - 1), Some(i));
    }
    while let Some(b) = queue.pop() {
        let (l, r) = (symbols[b.left], symbols[b.right]);
        if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
            continue;
        }
        symbols[b.left].len += r.len;
        symbols[b.right].len = 0;
        symbols[b.left].next = r.next;
        if let Some(n) = r.next {
            symbols[n].prev = Some(b.left);
        }
        let prev = symbols[b.left].prev;
        let next = symbols[b.left].next;
        push(&mut queue, &symbols, prev, Some(b.left));
        push(&mut queue, &symbols, Some(b.left), next);
    }
    symbols
        .iter()
        .filter(|s| s.len > 0)
        .map(|s| (s.start, s.len))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_map_roundtrip() {
        let mut seen = std::collections::HashSet::new();
        for b in 0..=255u8 {
            let c = byte_to_char(b);
            assert!(seen.insert(c));
            assert_eq!(char_to_byte(c), Some(b));
        }
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(b'a'), 'a');
        assert_eq!(char_to_byte('€'), None);
    }

    #[test]
    fn merges_rank_order() {
        let m = Merges::parse(&["a b", "b c", "ab c", "a b"]).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m.rank("a", "b"), Some(0));
        // "abc": a+b (rank 0) first, then ab+c.
        assert_eq!(merge_word(&m, "abc", false), vec![(0, 3)]);
        // "bcab": b+c and a+b, then nothing joins "bc" and "ab".
        assert_eq!(merge_word(&m, "bcab", false), vec![(0, 2), (2, 2)]);
        assert!(Merges::parse(&["nospace"]).is_err());
        assert!(Merges::parse(&[" x"]).is_err());
        let sp = Merges::parse(&["  x"]).unwrap();
        assert_eq!(sp.rank(" ", "x"), Some(0));
    }
}
