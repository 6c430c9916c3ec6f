//! Fuzz target: the CLI's rendering of file-controlled strings
//! (`cli/src/show.rs`, included as is) on arbitrary bytes and widths.
//!
//! Checks: the escaped text holds no control, bidi or line-breaking
//! character and decodes back to the input (so nothing is hidden and two
//! inputs never look alike); shortened text is a whole-escape prefix plus the
//! marker and never longer than asked; table cells have the asked width;
//! nothing panics, whatever the length.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../cli/src/show.rs"]
mod show;

fuzz_target!(|data: &[u8]| {
    let (width, bytes) = match data {
        [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b]) % 512), rest),
        _ => (0, data),
    };

    let full = show::escaped_bytes(bytes);
    assert!(
        full.chars().all(|c| !c.is_control() && (c == '\\' || !show::needs_escape(c))),
        "raw control in {full:?}"
    );
    assert_eq!(show::unescaped(&full).as_deref(), Some(bytes), "{full:?}");
    let full_len = full.chars().count();

    let short = show::shortened_bytes(bytes, width);
    if full_len <= width {
        assert_eq!(short, full);
    } else {
        let marker = format!("...({} bytes)", bytes.len());
        let head = short
            .strip_suffix(&marker)
            .unwrap_or_else(|| panic!("no marker: {short:?}"));
        assert!(head.chars().count() <= width, "{short:?} for width {width}");
        assert!(full.starts_with(head));
        // Cut between escapes: the head decodes to a prefix of the input.
        let h = show::unescaped(head).unwrap_or_else(|| panic!("cut escape: {head:?}"));
        assert!(bytes.starts_with(&h));
    }

    if let Ok(s) = std::str::from_utf8(bytes) {
        assert_eq!(show::escaped(s), full);
        assert_eq!(show::escaped_width(s, width), full_len.min(width + 1));
        let cell = show::cell(s, width);
        let n = cell.chars().count();
        let marker_len = format!("...({} bytes)", s.len()).len();
        assert!(
            n == width || (full_len > width && width < marker_len && n == marker_len),
            "cell of {n} chars for width {width}: {cell:?}"
        );
        assert!(!cell.chars().any(char::is_control));
    }
});
