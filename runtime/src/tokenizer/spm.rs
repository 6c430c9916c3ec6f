//! SentencePiece-style BPE (`tokenizer.ggml.model` = "llama"): greedy
//! merging of adjacent pieces by vocabulary score.
//!
//! Start from one symbol per character; repeatedly merge the adjacent pair
//! whose concatenation is a vocabulary token with the highest score (ties:
//! the leftmost pair). Symbols that are not tokens in the end are emitted as
//! byte-fallback tokens, one per UTF-8 byte.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A candidate merge: highest score first, then leftmost.
#[derive(Debug)]
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    /// Byte length of the merged text when queued (stale entries differ).
    size: usize,
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

#[derive(Debug, Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// Tokenizes `text` (spaces already escaped to `▁`). `lookup` maps a piece
/// to its id and score; `byte_token` maps a byte to its fallback id.
pub(crate) fn tokenize(
    text: &str,
    lookup: impl Fn(&str) -> Option<(u32, f32)>,
    byte_token: impl Fn(u8) -> Option<u32>,
    out: &mut Vec<u32>,
) {
    let n = text.chars().count();
    let mut symbols: Vec<Symbol> = text
        .char_indices()
        .enumerate()
        .map(|(i, (start, c))| Symbol {
            start,
            len: c.len_utf8(),
            prev: i.checked_sub(1),
            next: (i + 1 < n).then_some(i + 1),
        })
        .collect();
    if symbols.is_empty() {
        return;
    }

    let mut queue = BinaryHeap::new();
    let push =
        |queue: &mut BinaryHeap<Bigram>, symbols: &[Symbol], l: Option<usize>, r: Option<usize>| {
            let (Some(l), Some(r)) = (l, r) else { return };
            let (ls, rs) = (&symbols[l], &symbols[r]);
            let size = ls.len + rs.len;
            // Adjacent symbols: the merged text is contiguous.
            if let Some((_, score)) = lookup(&text[ls.start..ls.start + size]) {
                queue.push(Bigram {
                    score,
                    left: l,
                    right: r,
                    size,
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

    let mut i = Some(0);
    while let Some(idx) = i {
        let s = symbols[idx];
        let piece = &text[s.start..s.start + s.len];
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
