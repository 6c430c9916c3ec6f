//! Fuzz target: render an arbitrary chat template (first part of the input)
//! over arbitrary messages (the rest). Rendering must end (fuel, recursion
//! and size limits) with text or an error; never a panic or unbounded memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phi::tokenizer::chat::ChatMessage;
use phi::tokenizer::Tokenizer;
use phi_gguf::{Gguf, GgufWriter, Value};
use std::sync::OnceLock;

fn base() -> &'static Gguf {
    static B: OnceLock<Gguf> = OnceLock::new();
    B.get_or_init(|| {
        Gguf::from_bytes(include_bytes!("../../tests/fixtures/models/phi3-tiny-q8_0.gguf").to_vec()).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\u{1}');
    let template = parts.next().unwrap_or("");
    let user = parts.next().unwrap_or("hi");
    let system = parts.next();
    let mut w = GgufWriter::new();
    for (k, v) in base().metadata() {
        if k.starts_with("tokenizer.") && k != "tokenizer.chat_template" {
            w.add_metadata(k.clone(), v.clone()).unwrap();
        }
    }
    w.add_metadata("general.architecture", Value::String("phi3".into())).unwrap();
    w.add_metadata("tokenizer.chat_template", Value::String(template.into())).unwrap();
    let g = Gguf::from_bytes(w.to_bytes().unwrap()).unwrap();
    let Ok(tok) = Tokenizer::from_gguf(&g) else { return };
    let mut msgs = Vec::new();
    if let Some(s) = system {
        msgs.push(ChatMessage::new("system", s));
    }
    msgs.push(ChatMessage::new("user", user));
    if let Ok(out) = tok.apply_chat_template(&msgs, true) {
        let _ = tok.encode(&out, true, true);
    }
});
