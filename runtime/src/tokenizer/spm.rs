//! SentencePiece-style BPE (`tokenizer.ggml.model` = "llama"): greedy
//! merging of adjacent pieces by vocabulary score.
//!
//! Start from one symbol per character; repeatedly merge the adjacent pair
//! whose concatenation is a vocabulary token with the highest score (ties:
//! the leftmost pair). Symbols that are not tokens in the end are emitted as
//! byte-fallback tokens, one per UTF-8 byte.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// "No symbol" in the linked list.
const NONE: u32 = u32::MAX;

/// A candidate merge: highest score first, then leftmost. Kept to 16 bytes:
/// the queue holds about two entries per character of the fragment.
#[derive(Debug)]
struct Bigram {
    score: f32,
    left: u32,
    right: u32,
    /// Byte length of the merged text when queued (stale entries differ).
    size: u32,
}

impl Ord for Bigram {
    fn cmp(&self, other: &Self) -> Ordering {
        // Scores are never NaN (sanitized at load), so this is a total order.
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(Ordering::Equal)
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

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bigram {}

/// A run of the text: byte offset and length, neighbours (or [`NONE`]).
#[derive(Debug, Clone, Copy)]
struct Symbol {
    start: u32,
    len: u32,
    prev: u32,
    next: u32,
}

impl Symbol {
    fn range(&self) -> std::ops::Range<usize> {
        self.start as usize..(self.start + self.len) as usize
    }
}

/// Tokenizes `text` (spaces already escaped to `▁`). `lookup` maps a piece
/// to its id and score; `byte_token` maps a byte to its fallback id.
///
/// Fragments of 4 GiB or more (impossible to hold as symbols anyway) are
/// emitted as byte-fallback tokens.
pub(crate) fn tokenize(
    text: &str,
    lookup: impl Fn(&str) -> Option<(u32, f32)>,
    byte_token: impl Fn(u8) -> Option<u32>,
    out: &mut Vec<u32>,
) {
    if text.len() >= NONE as usize {
        out.extend(text.bytes().filter_map(&byte_token));
        return;
    }
    // Offsets and counts below fit in u32: text.len() < u32::MAX.
    let n = text.chars().count() as u32;
    let mut symbols: Vec<Symbol> = text
        .char_indices()
        .zip(0u32..)
        .map(|((start, c), i)| Symbol {
            start: start as u32,
            len: c.len_utf8() as u32,
            prev: if i == 0 { NONE } else { i - 1 },
            next: if i + 1 < n { i + 1 } else { NONE },
        })
        .collect();
    if symbols.is_empty() {
        return;
    }

    let candidate = |symbols: &[Symbol], l: u32, r: u32| -> Option<Bigram> {
        if l == NONE || r == NONE {
            return None;
        }
        let (ls, rs) = (&symbols[l as usize], &symbols[r as usize]);
        let size = ls.len + rs.len;
        // Adjacent symbols: the merged text is contiguous.
        let start = ls.start as usize;
        lookup(&text[start..start + size as usize]).map(|(_, score)| Bigram {
            score,
            left: l,
            right: r,
            size,
        })
    };
    let initial: Vec<Bigram> = (1..n)
        .filter_map(|i| candidate(&symbols, i - 1, i))
        .collect();
    let mut queue = BinaryHeap::from(initial);
    while let Some(b) = queue.pop() {
        let (l, r) = (symbols[b.left as usize], symbols[b.right as usize]);
        if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
            continue;
        }
        let left = &mut symbols[b.left as usize];
        left.len += r.len;
        left.next = r.next;
        let (prev, next) = (left.prev, left.next);
        symbols[b.right as usize].len = 0;
        if next != NONE {
            symbols[next as usize].prev = b.left;
        }
        queue.extend(candidate(&symbols, prev, b.left));
        queue.extend(candidate(&symbols, b.left, next));
    }

    let mut i = 0;
    while i != NONE {
        let s = symbols[i as usize];
        let piece = &text[s.range()];
        match lookup(piece) {
            Some((id, _)) => out.push(id),
            None => out.extend(piece.bytes().filter_map(&byte_token)),
        }
        i = s.next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_by_score_then_leftmost() {
        let vocab = [("ab", 1.0f32), ("bc", 2.0), ("abc", 0.5), ("cd", 1.0)];
        let lookup = |s: &str| {
            vocab
                .iter()
                .position(|(t, _)| *t == s)
                .map(|i| (1000 + i as u32, vocab[i].1))
        };
        let bytes = |b: u8| Some(u32::from(b));
        let mut out = Vec::new();
        // "abcd": bc (2.0) wins over ab and cd, then a+bc → abc; "d" is
        // not a token → byte fallback.
        tokenize("abcd", lookup, bytes, &mut out);
        assert_eq!(out, [1002, u32::from(b'd')]);
        out.clear();
        // "xcd": only cd.
        tokenize("xcd", lookup, bytes, &mut out);
        assert_eq!(out, [u32::from(b'x'), 1003]);
        out.clear();
        // "abab": tie between the two "ab" → both merge; no "abab" token.
        tokenize("abab", lookup, bytes, &mut out);
        assert_eq!(out, [1000, 1000]);
        out.clear();
        // Unknown multi-byte character → its UTF-8 bytes.
        tokenize("é", lookup, bytes, &mut out);
        assert_eq!(out, [0xC3, 0xA9]);
    }
}
