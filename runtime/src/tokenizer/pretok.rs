//! Pre-tokenizers of byte-level BPE vocabularies: split a text into the
//! "words" that BPE merges never cross.
//!
//! llama.cpp describes each pre-tokenizer (`tokenizer.ggml.pre`) as a list of
//! regular expressions applied one after the other: every expression splits
//! each piece produced by the previous one, and both the matches and the text
//! between matches become pieces. The expressions used by the supported
//! pre-tokenizers are all of a few shapes, implemented here by hand over
//! Unicode general categories (no regex engine):
//!
//! * [`Step::Gpt2`] — `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
//! * [`Step::Llama3`] — `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,K}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
//! * [`Step::Each`] — a one-character class such as `\p{N}` (every match alone)
//! * [`Step::Runs`] — `[class]+` (maximal runs)
//! * [`Step::Digits3`] — `[0-9][0-9][0-9]`
//!
//! Lookahead never sees past the end of the piece being split, exactly as
//! llama.cpp runs each expression on each piece separately.

use unicode_general_category::{get_general_category, GeneralCategory as G};

/// `\p{L}`: any letter (Lu, Ll, Lt, Lm, Lo).
pub(crate) fn is_letter(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphabetic();
    }
    matches!(
        get_general_category(c),
        G::UppercaseLetter
            | G::LowercaseLetter
            | G::TitlecaseLetter
            | G::ModifierLetter
            | G::OtherLetter
    )
}

/// `\p{N}`: any number (Nd, Nl, No).
pub(crate) fn is_number(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    matches!(
        get_general_category(c),
        G::DecimalNumber | G::LetterNumber | G::OtherNumber
    )
}

/// `\p{P}`: any punctuation (Pc, Pd, Ps, Pe, Pi, Pf, Po).
pub(crate) fn is_punctuation(c: char) -> bool {
    matches!(
        get_general_category(c),
        G::ConnectorPunctuation
            | G::DashPunctuation
            | G::OpenPunctuation
            | G::ClosePunctuation
            | G::InitialPunctuation
            | G::FinalPunctuation
            | G::OtherPunctuation
    )
}

/// `\s`: the Unicode `White_Space` property (the same 25 code points
/// llama.cpp's table lists).
pub(crate) fn is_space(c: char) -> bool {
    c.is_whitespace()
}

/// Neither `\s`, `\p{L}` nor `\p{N}`.
fn is_other(c: char) -> bool {
    !is_space(c) && !is_letter(c) && !is_number(c)
}

fn is_cr_or_lf(c: char) -> bool {
    c == '\r' || c == '\n'
}

/// `[\p{P}\$\+<=>\^~\|]` (llama.cpp's "default" BPE pre-tokenizer).
fn is_default_punct(c: char) -> bool {
    matches!(c, '$' | '+' | '<' | '=' | '>' | '^' | '~' | '|') || is_punctuation(c)
}

/// `[\p{P}\$\+<=>\^~\|`]` (the "falcon" pre-tokenizer).
fn is_falcon_punct(c: char) -> bool {
    c == '`' || is_default_punct(c)
}

/// One splitting expression.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Step {
    /// The GPT-2 expression.
    Gpt2,
    /// The Llama-3 expression; `max_digits` is K in `\p{N}{1,K}` (3 for
    /// Llama 3, 1 for Qwen 2).
    Llama3 { max_digits: usize },
    /// Every character of the class is a piece of its own.
    Each(fn(char) -> bool),
    /// Maximal runs of the class are pieces.
    Runs(fn(char) -> bool),
    /// Groups of three ASCII digits, left to right.
    Digits3,
}

/// A pre-tokenizer: the list of steps named by `tokenizer.ggml.pre`.
#[derive(Debug, Clone)]
pub(crate) struct PreTokenizer {
    steps: Vec<Step>,
}

/// What the `tokenizer.ggml.pre` name implies besides the split steps.
#[derive(Debug, Clone)]
pub(crate) struct PreConfig {
    pub pre: PreTokenizer,
    /// Use a whole word as one token when the vocabulary has it.
    pub ignore_merges: bool,
    /// Default of `add_bos` before the `add_bos_token` key is read.
    pub add_bos: bool,
    /// Apply llama.cpp's English punctuation clean-up when detokenizing.
    pub clean_spaces: bool,
}

impl PreConfig {
    /// The configuration llama.cpp associates with a `tokenizer.ggml.pre`
    /// value (`None` or empty: "default"); `None` for unsupported names.
    pub(crate) fn from_name(name: Option<&str>) -> Option<PreConfig> {
        let gpt2 = vec![Step::Gpt2];
        let llama3 = vec![Step::Llama3 { max_digits: 3 }];
        let cfg = |steps: Vec<Step>, ignore_merges: bool, add_bos: bool, clean_spaces: bool| {
            Some(PreConfig {
                pre: PreTokenizer { steps },
                ignore_merges,
                add_bos,
                clean_spaces,
            })
        };
        match name.unwrap_or("") {
            "" | "default" => cfg(
                vec![
                    Step::Runs(is_default_punct),
                    Step::Gpt2,
                    Step::Runs(is_number),
                    Step::Digits3,
                ],
                false,
                false,
                true,
            ),
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" | "jina-v5-nano" => cfg(llama3, true, true, true),
            "dbrx" | "smaug-bpe" => cfg(llama3, false, false, true),
            "falcon" => cfg(
                vec![Step::Runs(is_falcon_punct), Step::Gpt2, Step::Digits3],
                false,
                false,
                true,
            ),
            "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es"
            | "jina-v2-de" | "a.x-4.0" | "mellum" | "modern-bert" | "jina-v1-en"
            | "jina-v2-code" | "roberta-bpe" | "exaone4" | "mpt" | "olmo" | "jais" => {
                cfg(gpt2, false, false, true)
            }
            "trillion" | "granite-docling" => cfg(gpt2, false, false, false),
            "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" => {
                cfg(vec![Step::Each(is_number), Step::Gpt2], false, false, true)
            }
            "smollm" | "command-r" => {
                cfg(vec![Step::Each(is_number), Step::Gpt2], false, false, false)
            }
            "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" => {
                cfg(vec![Step::Llama3 { max_digits: 1 }], false, false, false)
            }
            "stablelm2" | "megrez" => cfg(vec![Step::Llama3 { max_digits: 1 }], false, false, true),
            _ => None,
        }
    }
}

impl PreTokenizer {
    /// Splits `text` into words (as `&str` slices of `text`, in order,
    /// covering it entirely; empty text gives no words).
    pub(crate) fn split<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let chars: Vec<char> = text.chars().collect();
        // Piece lengths in characters.
        let mut pieces: Vec<usize> = if chars.is_empty() {
            Vec::new()
        } else {
            vec![chars.len()]
        };
        for step in &self.steps {
            let mut next = Vec::with_capacity(pieces.len() * 2);
            let mut start = 0;
            for &len in &pieces {
                let piece = &chars[start..start + len];
                split_piece(*step, piece, &mut next);
                start += len;
            }
            pieces = next;
        }
        // Character lengths to byte slices.
        let mut words = Vec::with_capacity(pieces.len());
        let mut byte_pos = 0;
        let mut char_pos = 0;
        for len in pieces {
            let n_bytes: usize = chars[char_pos..char_pos + len]
                .iter()
                .map(|c| c.len_utf8())
                .sum();
            words.push(&text[byte_pos..byte_pos + n_bytes]);
            byte_pos += n_bytes;
            char_pos += len;
        }
        words
    }
}

/// Appends the lengths (in chars) of the pieces `step` cuts `s` into.
fn split_piece(step: Step, s: &[char], out: &mut Vec<usize>) {
    match step {
        Step::Gpt2 => split_gpt2(s, out),
        Step::Llama3 { max_digits } => split_llama3(s, max_digits.max(1), out),
        Step::Each(class) => split_matches(s, out, |s, i| usize::from(class(s[i]))),
        Step::Runs(class) => split_matches(s, out, |s, i| {
            s[i..].iter().take_while(|&&c| class(c)).count()
        }),
        Step::Digits3 => split_matches(s, out, |s, i| {
            if s.len() - i >= 3 && s[i..i + 3].iter().all(char::is_ascii_digit) {
                3
            } else {
                0
            }
        }),
    }
}

/// Generic leftmost matching: `match_at(s, i)` is the length of the match
/// starting at `i` (0: none). Matches and the text between them are pieces.
fn split_matches(s: &[char], out: &mut Vec<usize>, match_at: impl Fn(&[char], usize) -> usize) {
    let mut pending = 0;
    let mut i = 0;
    while i < s.len() {
        let m = match_at(s, i);
        if m == 0 {
            pending += 1;
            i += 1;
            continue;
        }
        if pending > 0 {
            out.push(pending);
            pending = 0;
        }
        out.push(m);
        i += m;
    }
    if pending > 0 {
        out.push(pending);
    }
}

/// Whitespace handling shared by both big expressions, at `pos` where no
/// earlier alternative matched: `\s+(?!\S)|\s+`, then a lone character.
/// Returns the match length.
fn whitespace_tail(s: &[char], pos: usize) -> usize {
    let n_ws = s[pos..].iter().take_while(|&&c| is_space(c)).count();
    if n_ws > 1 && pos + n_ws < s.len() {
        // The last blank goes with the following word.
        n_ws - 1
    } else if n_ws > 0 {
        n_ws
    } else {
        1
    }
}

fn split_gpt2(s: &[char], out: &mut Vec<usize>) {
    let at = |i: usize| s.get(i).copied();
    let mut pos = 0;
    while pos < s.len() {
        let c = s[pos];
        let len = 'm: {
            // 's|'t|'re|'ve|'m|'ll|'d
            if c == '\'' {
                if let Some(n1) = at(pos + 1) {
                    if matches!(n1, 's' | 't' | 'm' | 'd') {
                        break 'm 2;
                    }
                    if let Some(n2) = at(pos + 2) {
                        if matches!((n1, n2), ('r', 'e') | ('v', 'e') | ('l', 'l')) {
                            break 'm 3;
                        }
                    }
                }
            }
            // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`
            let lead = usize::from(c == ' ');
            if let Some(c2) = at(pos + lead) {
                let class: Option<fn(char) -> bool> = if is_letter(c2) {
                    Some(is_letter)
                } else if is_number(c2) {
                    Some(is_number)
                } else if is_other(c2) {
                    Some(is_other)
                } else {
                    None
                };
                if let Some(class) = class {
                    let run = s[pos + lead..].iter().take_while(|&&x| class(x)).count();
                    break 'm lead + run;
                }
            }
            whitespace_tail(s, pos)
        };
        out.push(len);
        pos += len;
    }
}

fn split_llama3(s: &[char], max_digits: usize, out: &mut Vec<usize>) {
    let at = |i: usize| s.get(i).copied();
    let mut pos = 0;
    while pos < s.len() {
        let c = s[pos];
        let len = 'm: {
            // (?i:'s|'t|'re|'ve|'m|'ll|'d)
            if c == '\'' {
                if let Some(n1) = at(pos + 1) {
                    let n1 = n1.to_ascii_lowercase();
                    if matches!(n1, 's' | 't' | 'm' | 'd') {
                        break 'm 2;
                    }
                    if let Some(n2) = at(pos + 2) {
                        let n2 = n2.to_ascii_lowercase();
                        if matches!((n1, n2), ('r', 'e') | ('v', 'e') | ('l', 'l')) {
                            break 'm 3;
                        }
                    }
                }
            }
            // [^\r\n\p{L}\p{N}]?\p{L}+
            if !is_cr_or_lf(c)
                && !is_number(c)
                && (is_letter(c) || at(pos + 1).is_some_and(is_letter))
            {
                let run = s[pos + 1..].iter().take_while(|&&x| is_letter(x)).count();
                break 'm 1 + run;
            }
            // \p{N}{1,K}
            if is_number(c) {
                break 'm s[pos..]
                    .iter()
                    .take(max_digits)
                    .take_while(|&&x| is_number(x))
                    .count();
            }
            // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
            let lead = usize::from(c == ' ');
            if at(pos + lead).is_some_and(is_other) {
                let run = s[pos + lead..].iter().take_while(|&&x| is_other(x)).count();
                let nl = s[pos + lead + run..]
                    .iter()
                    .take_while(|&&x| is_cr_or_lf(x))
                    .count();
                break 'm lead + run + nl;
            }
            // \s*[\r\n]+ : up to the last CR/LF of the blank run
            let n_ws = s[pos..].iter().take_while(|&&x| is_space(x)).count();
            if let Some(last) = s[pos..pos + n_ws].iter().rposition(|&x| is_cr_or_lf(x)) {
                break 'm last + 1;
            }
            whitespace_tail(s, pos)
        };
        out.push(len);
        pos += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(pre: &str, text: &str) -> Vec<String> {
        PreConfig::from_name(Some(pre))
            .unwrap()
            .pre
            .split(text)
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn gpt2_basic() {
        assert_eq!(
            words("gpt-2", "Hello world's  end\n\n x123 !!"),
            ["Hello", " world", "'s", " ", " end", "\n\n", " x", "123", " !!"]
        );
        assert_eq!(words("gpt-2", "   "), ["   "]);
        assert_eq!(words("gpt-2", "a\tb"), ["a", "\t", "b"]);
        assert_eq!(words("gpt-2", ""), Vec::<String>::new());
    }

    #[test]
    fn smollm_splits_digits() {
        assert_eq!(words("smollm", "ab 123x"), ["ab", " ", "1", "2", "3", "x"]);
    }

    #[test]
    fn llama3_basic() {
        assert_eq!(
            words("llama3", "Hello WORLD'S 12345 \n\n  x"),
            ["Hello", " WORLD", "'S", " ", "123", "45", " \n\n", " ", " x"]
        );
    }

    #[test]
    fn default_pre() {
        assert_eq!(
            words("default", "a+b 12345"),
            ["a", "+", "b", " ", "123", "45"]
        );
    }
}
