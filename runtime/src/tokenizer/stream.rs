//! Streaming detokenization: token pieces are arbitrary bytes (a byte-fallback
//! token may hold one third of a character), so generated text must be
//! assembled into valid UTF-8 before it is shown.

use super::Tokenizer;

/// Turns a stream of byte chunks into complete UTF-8 text.
///
/// [`Utf8Stream::push`] returns every complete character available so far and
/// holds back an incomplete sequence at the end; bytes that can never form a
/// valid character become U+FFFD. [`Utf8Stream::finish`] flushes what is left
/// (an incomplete tail becomes U+FFFD).
#[derive(Debug, Default, Clone)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `bytes` and returns the text that is now complete.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut pos = 0;
        while pos < self.pending.len() {
            match std::str::from_utf8(&self.pending[pos..]) {
                Ok(s) => {
                    out.push_str(s);
                    pos = self.pending.len();
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // The prefix was just validated; this cannot fail.
                    if let Ok(s) = std::str::from_utf8(&self.pending[pos..pos + valid]) {
                        out.push_str(s);
                    }
                    pos += valid;
                    match e.error_len() {
                        // Invalid bytes: replace them and go on.
                        Some(n) => {
                            out.push('\u{FFFD}');
                            pos += n;
                        }
                        // A sequence cut short at the end: wait for more.
                        None => break,
                    }
                }
            }
        }
        self.pending.drain(..pos);
        out
    }

    /// Number of bytes held back, waiting for the rest of a character.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Returns the held-back bytes decoded lossily and resets the stream.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

/// Streams generated token ids to text: [`Tokenizer::token_to_piece`] bytes
/// through a [`Utf8Stream`].
#[derive(Debug, Clone)]
pub struct TextStream<'t> {
    tokenizer: &'t Tokenizer,
    utf8: Utf8Stream,
    special: bool,
}

impl<'t> TextStream<'t> {
    /// `special`: render control tokens (e.g. `<|end|>`) as their text
    /// instead of nothing.
    pub fn new(tokenizer: &'t Tokenizer, special: bool) -> Self {
        TextStream {
            tokenizer,
            utf8: Utf8Stream::new(),
            special,
        }
    }

    /// Adds one token; returns the text completed by it (possibly empty).
    pub fn push(&mut self, id: u32) -> String {
        let piece = self.tokenizer.token_to_piece(id, self.special);
        self.utf8.push(&piece)
    }

    /// Flushes the remaining bytes (lossily).
    pub fn finish(&mut self) -> String {
        self.utf8.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_back_incomplete_sequences() {
        let mut s = Utf8Stream::new();
        let euro = "€".as_bytes(); // e2 82 ac
        assert_eq!(s.push(b"a"), "a");
        assert_eq!(s.push(&euro[..1]), "");
        assert_eq!(s.push(&euro[1..2]), "");
        assert_eq!(s.pending_len(), 2);
        assert_eq!(s.push(&euro[2..]), "€");
        assert_eq!(s.pending_len(), 0);
        assert_eq!(s.finish(), "");
    }

    #[test]
    fn replaces_invalid_bytes_and_flushes_lossily() {
        let mut s = Utf8Stream::new();
        assert_eq!(s.push(&[b'x', 0xFF, b'y']), "x\u{FFFD}y");
        assert_eq!(s.push(&[0xF0, 0x9F]), "");
        // A new lead byte ends the cut sequence: it is invalid.
        assert_eq!(s.push(&[0xC3]), "\u{FFFD}");
        assert_eq!(s.push(&[0xA9]), "é");
        assert_eq!(s.push(&[0xE2, 0x82]), "");
        assert_eq!(s.finish(), "\u{FFFD}");
        assert_eq!(s.finish(), "");
    }
}
