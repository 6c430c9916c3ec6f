//! Showing strings taken from a file (tensor names, metadata keys and
//! values, chat templates, token pieces) on a terminal.
//!
//! A GGUF file is written by a stranger: its strings can hold terminal
//! escape sequences (which recolour, move the cursor, retitle the window or
//! worse), line breaks that fake extra output lines, bidirectional overrides
//! that reorder what is shown, invalid UTF-8, or megabytes of text. Every
//! such string goes through this module before it is printed:
//!
//! * [`escaped`] / [`escaped_bytes`] keep printable text as it is and write
//!   everything else as an escape: `\n`, `\t`, `\r`, `\\`, `\xNN` (other C0
//!   controls and DEL, and bytes that are not UTF-8), `\u{NN}` (C1 controls,
//!   bidi controls, line/paragraph separators). The result contains no
//!   control character at all, and the escaping is reversible
//!   ([`unescaped`]), so two different inputs never look the same.
//! * [`shortened`] does the same and cuts the result at a given number of
//!   characters with an explicit marker `...(N bytes)`, for one-line
//!   summaries and table columns; [`cell`] also pads it to a column width.
//!
//! This file needs only std and `phi-gguf`: the fuzz target `show`
//! (`fuzz/fuzz_targets/show.rs`) includes it with `#[path]`.

use std::fmt::Write as _;

/// Whether `c` is shown as an escape rather than as itself: the backslash
/// (so that escapes are unambiguous) and the characters of
/// [`phi_gguf::is_unsafe_to_show`] (controls, which drive terminals: U+009B
/// is an 8-bit CSI; line separators; bidi controls).
pub fn needs_escape(c: char) -> bool {
    c == '\\' || phi_gguf::is_unsafe_to_show(c)
}

/// Appends `c`, escaped if it must be.
fn push_char(out: &mut String, c: char) {
    if !needs_escape(c) {
        out.push(c);
        return;
    }
    match c {
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        '\\' => out.push_str("\\\\"),
        // ASCII controls as \xNN: the byte a terminal would have received.
        c if (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

/// One shown unit of `bytes`: a character or an invalid byte, escaped.
/// Calls `f` with each unit's text until it returns `false`.
fn for_each_unit(mut bytes: &[u8], mut f: impl FnMut(&str) -> bool) {
    let mut unit = String::new();
    while !bytes.is_empty() {
        let (valid, rest) = match std::str::from_utf8(bytes) {
            Ok(s) => (s, &[][..]),
            Err(e) => {
                let (head, tail) = bytes.split_at(e.valid_up_to());
                // `head` is valid UTF-8 by construction (`valid_up_to`).
                (std::str::from_utf8(head).unwrap_or_default(), tail)
            }
        };
        for c in valid.chars() {
            unit.clear();
            push_char(&mut unit, c);
            if !f(&unit) {
                return;
            }
        }
        let Some((&bad, tail)) = rest.split_first() else {
            return;
        };
        unit.clear();
        let _ = write!(unit, "\\x{bad:02x}");
        if !f(&unit) {
            return;
        }
        bytes = tail;
    }
}

/// `s` with every control, bidi and line-breaking character escaped.
pub fn escaped(s: &str) -> String {
    escaped_bytes(s.as_bytes())
}

/// `bytes` shown as text: UTF-8 as in [`escaped`], other bytes as `\xNN`.
pub fn escaped_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for_each_unit(bytes, |u| {
        out.push_str(u);
        true
    });
    out
}

/// [`escaped_bytes`], cut to at most `max_chars` characters plus a marker
/// `...(N bytes)` (N = the length of the original) when it is longer.
/// Escapes are never cut in half.
pub fn shortened_bytes(bytes: &[u8], max_chars: usize) -> String {
    let mut out = String::new();
    let mut chars = 0usize;
    let mut cut = false;
    for_each_unit(bytes, |u| {
        let n = u.chars().count();
        if chars + n > max_chars {
            cut = true;
            return false;
        }
        out.push_str(u);
        chars += n;
        true
    });
    if cut {
        let _ = write!(out, "...({} bytes)", bytes.len());
    }
    out
}

/// [`shortened_bytes`] of a string.
pub fn shortened(s: &str, max_chars: usize) -> String {
    shortened_bytes(s.as_bytes(), max_chars)
}

/// `s` for a table column `width` characters wide: escaped, shortened
/// with its marker when it does not fit, and padded with spaces to `width`.
/// (Only a column narrower than the marker itself is overflowed.) Never uses
/// a formatting width argument, so no width from a file can make formatting
/// fail.
pub fn cell(s: &str, width: usize) -> String {
    let mut out = if escaped_width(s, width) <= width {
        escaped(s)
    } else {
        let marker = format!("...({} bytes)", s.len()).len();
        shortened(s, width.saturating_sub(marker))
    };
    let n = out.chars().count();
    out.extend(std::iter::repeat_n(' ', width.saturating_sub(n)));
    out
}

/// The number of characters of `escaped(s)`, counted up to `cap + 1` at
/// most (so a huge `s` is not walked to its end): `min(len, cap + 1)`.
pub fn escaped_width(s: &str, cap: usize) -> usize {
    let mut n = 0usize;
    for_each_unit(s.as_bytes(), |u| {
        n += u.chars().count();
        n <= cap
    });
    n.min(cap.saturating_add(1))
}

/// Inverse of [`escaped_bytes`] (for tests and the fuzz target): `None` for
/// text that [`escaped_bytes`] cannot produce.
#[allow(dead_code)]
pub fn unescaped(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            if needs_escape(c) {
                return None;
            }
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next()? {
            'n' => out.push(b'\n'),
            't' => out.push(b'\t'),
            'r' => out.push(b'\r'),
            '\\' => out.push(b'\\'),
            'x' => {
                let hex: String = chars.by_ref().take(2).collect();
                if hex.len() != 2 || hex.chars().any(|c| c.is_ascii_uppercase()) {
                    return None;
                }
                let b = u8::from_str_radix(&hex, 16).ok()?;
                // Printable ASCII and \n \t \r are never written as \xNN.
                let plain = b < 0x80 && !needs_escape(b as char);
                if plain || matches!(b, b'\n' | b'\t' | b'\r') {
                    return None;
                }
                out.push(b);
            }
            'u' => {
                if chars.next()? != '{' {
                    return None;
                }
                let hex: String = chars.by_ref().take_while(|&c| c != '}').collect();
                let c = char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?;
                if (c as u32) < 0x80 || !needs_escape(c) || format!("{:x}", c as u32) != hex {
                    return None;
                }
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_text_is_unchanged() {
        for s in [
            "",
            "blk.0.attn_q.weight",
            "héllo ▁wörld 日本語 🦙",
            "<|end|>",
        ] {
            assert_eq!(escaped(s), s);
            assert_eq!(shortened(s, 100), s);
        }
    }

    #[test]
    fn controls_and_terminal_sequences_are_escaped() {
        assert_eq!(escaped("a\nb\tc\rd"), "a\\nb\\tc\\rd");
        assert_eq!(
            escaped("\x1b[2J\x1b]0;pwned\x07"),
            "\\x1b[2J\\x1b]0;pwned\\x07"
        );
        assert_eq!(escaped("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(escaped("\0\u{7f}"), "\\x00\\x7f");
        assert_eq!(escaped("back\\slash"), "back\\\\slash");
        assert_eq!(escaped("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(escaped("x\u{2028}y"), "x\\u{2028}y");
    }

    #[test]
    fn invalid_utf8_is_shown_as_bytes() {
        assert_eq!(escaped_bytes(b"ok\xff\xfe!"), "ok\\xff\\xfe!");
        // A truncated multi-byte character: each byte on its own.
        assert_eq!(escaped_bytes("é".as_bytes()[..1].as_ref()), "\\xc3");
        assert_eq!(escaped_bytes(b"\xe6\x97\xa5\xe6"), "日\\xe6");
    }

    #[test]
    fn escaping_is_reversible() {
        let cases: [&[u8]; 6] = [
            b"",
            b"plain",
            b"\\x41 is not A",
            b"\x1b[31m\xff\xc3",
            "\u{9b}\u{202e}\\u{9b}".as_bytes(),
            b"\n\t\r\\\x00\x7f",
        ];
        for b in cases {
            let shown = escaped_bytes(b);
            assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
            assert_eq!(unescaped(&shown).as_deref(), Some(b), "{shown:?}");
        }
        // Text the escaper never writes is rejected.
        for bad in [
            "\\",
            "\\q",
            "\\x4",
            "\\x41",
            "\\xFF",
            "\\u{41}",
            "\\u{009b}",
            "\n",
        ] {
            assert_eq!(unescaped(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn long_values_are_cut_with_a_marker() {
        let long = "x".repeat(100_000);
        let s = shortened(&long, 40);
        assert_eq!(s, format!("{}...(100000 bytes)", "x".repeat(40)));
        // Escapes are not cut in half: 7 chars fit one "\x1b" (4) but not two.
        assert_eq!(shortened("\x1b\x1b", 7), "\\x1b...(2 bytes)");
        assert_eq!(shortened("\x1b\x1b", 8), "\\x1b\\x1b");
        assert_eq!(shortened_bytes(b"\xff\xff\xff", 5), "\\xff...(3 bytes)");
    }

    #[test]
    fn cells_have_the_column_width() {
        assert_eq!(cell("abc", 6), "abc   ");
        assert_eq!(cell("a\nb", 6), "a\\nb  ");
        let name = "n".repeat(1 << 20);
        let c = cell(&name, 48);
        assert_eq!(c, format!("{}...(1048576 bytes)", "n".repeat(30)));
        // Narrow columns still show something and never panic.
        for w in 0..40 {
            let c = cell(&name, w);
            assert_eq!(c.chars().count(), w.max(18), "{w}: {c}");
        }
        assert_eq!(escaped_width(&name, 10), 11);
        assert_eq!(escaped_width("a\nb", 10), 4);
    }
}
