//! Fuzz target: tokenize arbitrary text with the real Phi-3 and GPT-2
//! vocabularies in every mode, then detokenize; never a panic, ids in range.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phi::tokenizer::{TextStream, Tokenizer};
use phi_gguf::Gguf;
use std::sync::OnceLock;

fn vocabs() -> &'static [Tokenizer; 2] {
    static V: OnceLock<[Tokenizer; 2]> = OnceLock::new();
    V.get_or_init(|| {
        let load = |b: &[u8]| Tokenizer::from_gguf(&Gguf::from_bytes(b.to_vec()).unwrap()).unwrap();
        [
            load(include_bytes!("../../tests/fixtures/vocab/ggml-vocab-phi-3.gguf")),
            load(include_bytes!("../../tests/fixtures/vocab/ggml-vocab-gpt-2.gguf")),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for tok in vocabs() {
        for (add, parse) in [(false, false), (true, true), (true, false), (false, true)] {
            let ids = tok.encode(&text, add, parse);
            assert!(ids.iter().all(|&i| (i as usize) < tok.n_vocab()));
            let _ = tok.detokenize(&ids, false, false);
            let _ = tok.detokenize(&ids, true, true);
            let mut s = TextStream::new(tok, true);
            let mut out = String::new();
            for &i in &ids {
                out.push_str(&s.push(i));
            }
            out.push_str(&s.finish());
        }
    }
});
