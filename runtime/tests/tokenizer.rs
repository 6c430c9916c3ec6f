//! Tokenizer against llama.cpp's reference tokenizations
//! (tests/fixtures/tokenizer/*.json, tests/fixtures/vocab/*.gguf.inp/.out).

use std::path::PathBuf;

use phi::tokenizer::{TokenAttr, Tokenizer, TokenizerError, TokenizerKind, Utf8Stream, VocabSpec};
use phi_gguf::Gguf;
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn load(vocab: &str) -> Tokenizer {
    let path = fixtures().join("vocab").join(vocab);
    let g = Gguf::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Tokenizer::from_gguf(&g).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_json(rel: &str) -> Value {
    let path = fixtures().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn ids_of(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares every case × mode of a reference file; returns (checks, failures).
fn check_reference(tok: &Tokenizer, reference: &Value) -> (usize, Vec<String>) {
    let mut checks = 0;
    let mut failures = Vec::new();
    let mut check = |ok: bool, what: String| {
        checks += 1;
        if !ok {
            failures.push(what);
        }
    };
    let cases = reference["cases"].as_array().unwrap();
    assert!(cases.len() >= 100, "reference has {} cases", cases.len());
    for case in cases {
        let text = case["text"].as_str().unwrap();
        for add_special in [false, true] {
            for parse_special in [false, true] {
                let key = format!("add_special={add_special},parse_special={parse_special}");
                let exp = &case[&key];
                let want = ids_of(&exp["ids"]);
                let got = tok.encode(text, add_special, parse_special);
                check(
                    got == want,
                    format!("ids {text:?} [{key}]: got {got:?}, want {want:?}"),
                );
                // Decoding is checked on llama.cpp's ids, independently of
                // the encoder.
                let pieces: Vec<u8> = want
                    .iter()
                    .flat_map(|&id| tok.token_to_piece(id, true))
                    .collect();
                let pieces = String::from_utf8_lossy(&pieces);
                let want_pieces = exp["pieces_concat"].as_str().unwrap();
                check(
                    pieces == want_pieces,
                    format!("pieces_concat {text:?} [{key}]: got {pieces:?}, want {want_pieces:?}"),
                );
                let detok = tok.detokenize(&want, false, false);
                let want_detok = exp["detokenize"].as_str().unwrap();
                check(
                    detok == want_detok,
                    format!("detokenize {text:?} [{key}]: got {detok:?}, want {want_detok:?}"),
                );
                let detok_rs = tok.detokenize(&want, true, false);
                let want_rs = exp["detokenize_remove_special"].as_str().unwrap();
                check(
                    detok_rs == want_rs,
                    format!("detokenize_remove_special {text:?} [{key}]: got {detok_rs:?}, want {want_rs:?}"),
                );
            }
        }
    }
    // Every piece llama.cpp printed, byte for byte.
    for (id, want) in reference["pieces"].as_object().unwrap() {
        let id: u32 = id.parse().unwrap();
        let got = hex(&tok.token_to_piece(id, true));
        check(
            got == want.as_str().unwrap(),
            format!("piece {id}: got {got}, want {want}"),
        );
    }
    (checks, failures)
}

fn assert_reference(vocab: &str, reference: &str) {
    let tok = load(vocab);
    let reference = read_json(reference);
    assert_eq!(
        tok.n_vocab() as u64,
        reference["vocab"]["n_vocab"].as_u64().unwrap()
    );
    assert_eq!(tok.bos().map(u64::from), reference["vocab"]["bos"].as_u64());
    assert_eq!(
        tok.add_bos(),
        reference["vocab"]["add_bos"].as_bool().unwrap()
    );
    let (checks, failures) = check_reference(&tok, &reference);
    eprintln!(
        "{vocab}: {}/{checks} checks match llama.cpp",
        checks - failures.len()
    );
    for f in failures.iter().take(30) {
        eprintln!("  {f}");
    }
    assert!(failures.is_empty(), "{} mismatches", failures.len());
}

#[test]
fn phi3_matches_llama_cpp_corpus() {
    assert_reference("ggml-vocab-phi-3.gguf", "tokenizer/phi-3.json");
}

#[test]
fn gpt2_matches_llama_cpp_corpus() {
    assert_reference("ggml-vocab-gpt-2.gguf", "tokenizer/gpt-2.json");
}

/// llama.cpp's own test-tokenizer-0 files: strings separated by
/// `__ggml_vocab_test__` lines, ids space-separated (add_special = false,
/// parse_special = false).
fn assert_inp_out(vocab: &str) {
    let tok = load(vocab);
    let dir = fixtures().join("vocab");
    let inp = std::fs::read_to_string(dir.join(format!("{vocab}.inp"))).unwrap();
    let out = std::fs::read_to_string(dir.join(format!("{vocab}.out"))).unwrap();
    let mut texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    assert_eq!(texts.pop(), Some(""), "file ends with a separator");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(texts.len(), lines.len());
    assert!(texts.len() > 40);
    let mut failures = 0;
    for (text, line) in texts.iter().zip(&lines) {
        let want: Vec<u32> = line
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        let got = tok.encode(text, false, false);
        if got != want {
            failures += 1;
            eprintln!("{vocab}: {text:?}: got {got:?}, want {want:?}");
        }
    }
    eprintln!(
        "{vocab}: {}/{} llama.cpp test strings match",
        texts.len() - failures,
        texts.len()
    );
    assert_eq!(failures, 0);
}

#[test]
fn phi3_matches_llama_cpp_test_strings() {
    assert_inp_out("ggml-vocab-phi-3.gguf");
}

#[test]
fn gpt2_matches_llama_cpp_test_strings() {
    assert_inp_out("ggml-vocab-gpt-2.gguf");
}

#[test]
fn phi3_special_tokens_and_quirks() {
    let tok = load("ggml-vocab-phi-3.gguf");
    assert_eq!(tok.kind(), TokenizerKind::Spm);
    assert_eq!(tok.eos(), Some(32000));
    assert_eq!(tok.unk(), Some(0));
    assert_eq!(tok.eot(), Some(32007), "<|end|> ends a turn");
    for id in [32000, 32007, 2] {
        assert!(tok.is_eog(id), "{id} should end generation");
    }
    assert!(!tok.is_eog(32010));
    assert!(!tok.is_eog(1));
    assert_eq!(tok.token_id("<|user|>"), Some(32010));
    assert_eq!(tok.token_text(32001), Some("<|assistant|>"));
    assert_eq!(tok.token_text(99999), None);
    assert!(tok.is_control(32007));
    assert!(tok.token_attr(32007).intersects(TokenAttr::RSTRIP));
    assert!(!tok.token_attr(32000).intersects(TokenAttr::RSTRIP));

    let prompt = "<|user|>\nHello!<|end|>\n<|assistant|>\n";
    let ids = tok.encode(prompt, true, true);
    assert_eq!(ids, [1, 32010, 15043, 29991, 32007, 32001]);
    assert_eq!(tok.encode("<s>Hello</s>", true, true), [1, 1, 15043, 2]);
    assert_eq!(tok.encode("Hello world", false, false), [15043, 3186]);
    assert_eq!(
        tok.encode("\u{2581}Hello", false, false),
        tok.encode(" Hello", false, false)
    );
    assert_eq!(tok.encode("", true, false), [1]);
    assert_eq!(tok.encode("", false, false), Vec::<u32>::new());
    assert_eq!(tok.detokenize(&[15043, 3186], false, false), "Hello world");
    assert_eq!(
        tok.detokenize(&[1, 15043, 3186], true, false),
        " Hello world"
    );
    assert_eq!(
        tok.detokenize(&ids, false, true),
        "<s><|user|> Hello!<|end|><|assistant|>"
    );
    // Byte fallback: an emoji is four byte tokens whose pieces are raw bytes.
    let emoji = tok.encode("🦙", false, false);
    assert_eq!(emoji.len(), 5, "{emoji:?}"); // ▁ + 4 bytes
    let mut stream = Utf8Stream::new();
    let mut text = String::new();
    for &id in &emoji {
        let piece = tok.token_to_piece(id, false);
        let chunk = stream.push(&piece);
        if id != emoji[emoji.len() - 1] {
            assert!(!chunk.contains('\u{FFFD}'));
        }
        text.push_str(&chunk);
    }
    text.push_str(&stream.finish());
    assert_eq!(text, " 🦙");
    // Out-of-range ids are ignored by the decoder.
    assert_eq!(tok.token_to_piece(u32::MAX, true), Vec::<u8>::new());
    // (the leading-space removal applies to the first id only)
    assert_eq!(tok.detokenize(&[u32::MAX, 15043], false, false), " Hello");
}

#[test]
fn gpt2_special_tokens() {
    let tok = load("ggml-vocab-gpt-2.gguf");
    assert_eq!(tok.kind(), TokenizerKind::Bpe);
    assert_eq!(tok.bos(), Some(50256));
    assert_eq!(tok.eos(), Some(50256));
    assert!(tok.is_eog(50256));
    assert!(!tok.add_bos());
    assert_eq!(tok.n_merges(), 50000);
    assert_eq!(tok.encode("<|endoftext|>", false, true), [50256]);
    assert_ne!(tok.encode("<|endoftext|>", false, false), [50256]);
    assert_eq!(
        tok.encode("Hello world", true, false),
        tok.encode("Hello world", false, false)
    );
}

/// The synthetic 512-token vocabulary of the tiny test models.
#[test]
fn tiny_model_vocab() {
    let path = fixtures().join("models/phi3-tiny-q8_0.gguf");
    let g = Gguf::open(&path).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    assert_eq!(tok.n_vocab(), 512);
    assert_eq!(tok.bos(), Some(1));
    assert_eq!(tok.eos(), Some(501));
    assert!(tok.is_eog(501));
    assert!(tok.is_eog(508), "<|end|> ends generation");
    assert!(tok.chat_template().is_some());

    let text = "the model was with the other one";
    let ids = tok.encode(text, true, false);
    assert_eq!(ids[0], 1);
    assert!(ids.iter().all(|&id| (id as usize) < tok.n_vocab()));
    assert_eq!(tok.token_text(ids[1]), Some("▁the"));
    assert_eq!(tok.detokenize(&ids, true, false), format!(" {text}"));
    assert_eq!(tok.detokenize(&ids[1..], false, false), text);
    // Characters outside the vocabulary fall back to byte tokens 3..=258.
    let ids = tok.encode("é€", false, false);
    assert!(
        ids[1..].iter().all(|&id| (3..=258).contains(&id)),
        "{ids:?}"
    );
    assert_eq!(tok.detokenize(&ids, false, false), "é€");
    // <|user|> is USER_DEFINED there: llama.cpp splits it out even without
    // parse_special; <|end|> became CONTROL (an end-of-generation text) and
    // is only recognized with parse_special.
    let user = tok.token_id("<|user|>").unwrap();
    let end = tok.token_id("<|end|>").unwrap();
    assert!(tok.encode("<|user|>hi", false, false).contains(&user));
    assert!(!tok.encode("<|end|>", false, false).contains(&end));
    assert_eq!(tok.encode("<|end|>", false, true), [end]);
}

fn spm_spec(tokens: &[&str]) -> VocabSpec {
    VocabSpec {
        model: "llama".into(),
        tokens: tokens.iter().map(|s| s.to_string()).collect(),
        ..VocabSpec::default()
    }
}

#[test]
fn hostile_metadata_gives_typed_errors() {
    let err = |spec: VocabSpec| Tokenizer::from_spec(spec).unwrap_err();

    let e = err(VocabSpec {
        model: "wordpiece-from-mars".into(),
        ..VocabSpec::default()
    });
    assert!(matches!(&e, TokenizerError::UnknownModel(m) if m == "wordpiece-from-mars"));
    assert!(e.to_string().contains("wordpiece-from-mars"));

    assert!(matches!(err(spm_spec(&[])), TokenizerError::EmptyVocab));

    let mut s = spm_spec(&["<unk>", "<s>", "</s>"]);
    s.scores = Some(vec![0.0; 2]);
    assert!(matches!(
        err(s),
        TokenizerError::LengthMismatch {
            key: "tokenizer.ggml.scores",
            expected: 3,
            found: 2
        }
    ));
    let mut s = spm_spec(&["<unk>", "<s>", "</s>"]);
    s.token_types = Some(vec![1; 4]);
    assert!(matches!(err(s), TokenizerError::LengthMismatch { .. }));

    assert!(matches!(
        err(spm_spec(&["a", "b", "a"])),
        TokenizerError::DuplicateToken {
            first: 0,
            second: 2,
            ..
        }
    ));

    let bpe = |merges: Option<Vec<&str>>, pre: Option<&str>| VocabSpec {
        model: "gpt2".into(),
        pre: pre.map(str::to_owned),
        tokens: vec!["a".into(), "b".into(), "ab".into()],
        merges: merges.map(|m| m.into_iter().map(str::to_owned).collect()),
        ..VocabSpec::default()
    };
    assert!(matches!(
        err(bpe(None, Some("gpt-2"))),
        TokenizerError::MissingKey(_)
    ));
    assert!(matches!(
        err(bpe(Some(vec!["a b", "ab"]), Some("gpt-2"))),
        TokenizerError::MalformedMerge { index: 1, .. }
    ));
    assert!(matches!(
        err(bpe(Some(vec!["a b"]), Some("klingon"))),
        TokenizerError::UnknownPreTokenizer(_)
    ));
    // A well-formed tiny BPE works; its default BOS/EOS id 11 is out of
    // range and therefore disabled.
    let tok = Tokenizer::from_spec(bpe(Some(vec!["a b"]), Some("gpt-2"))).unwrap();
    assert_eq!(tok.encode("abba", true, false), [2, 1, 0]);
    assert_eq!(tok.bos(), None);
    assert_eq!(tok.eos(), None);
}

#[test]
fn hostile_vocab_never_panics() {
    // Ids out of range, NaN scores, empty and odd tokens, bogus types, no
    // byte tokens at all.
    let mut s = spm_spec(&["", "x", "<0x", "▁", "\u{0}", "<0xZZ>", "xx", "xxx"]);
    s.scores = Some(vec![
        f32::NAN,
        1.0,
        f32::INFINITY,
        -1.0,
        0.0,
        0.0,
        f32::NAN,
        2.0,
    ]);
    s.token_types = Some(vec![3, 1, 6, 1, 4, -7, 1, 99]);
    s.special_ids.unk = Some(7);
    s.add_eos = Some(true);
    // Special ids outside the vocabulary are refused, naming the key.
    for (field, key) in [
        (0, "tokenizer.ggml.bos_token_id"),
        (1, "tokenizer.ggml.eos_token_id"),
        (2, "tokenizer.ggml.padding_token_id"),
        (3, "tokenizer.ggml.fim_sep_token_id"),
    ] {
        for bad in [8, 1_000_000, u32::MAX] {
            let mut lying = s.clone();
            let ids = &mut lying.special_ids;
            *[&mut ids.bos, &mut ids.eos, &mut ids.pad, &mut ids.fim_sep][field] = Some(bad);
            let e = Tokenizer::from_spec(lying).unwrap_err();
            assert!(
                matches!(&e, TokenizerError::SpecialIdOutOfRange { key: k, id, n_vocab: 8 }
                    if k == key && *id == i128::from(bad)),
                "{e}"
            );
            let msg = e.to_string();
            assert!(msg.contains(key) && msg.contains("8 tokens"), "{msg}");
        }
    }
    let tok = Tokenizer::from_spec(s).unwrap();
    assert_eq!(tok.bos(), Some(1), "absent keys keep the default");
    assert_eq!(tok.eos(), Some(2));
    assert_eq!(tok.token_text(0), Some("[EMPTY_0]"));
    for text in [
        "",
        "x",
        "xxxxx yyy",
        "<0x",
        "[EMPTY_0]",
        "\u{0}\u{0}",
        "🦙🦙",
        "▁▁ x",
    ] {
        for (a, p) in [(false, false), (true, true), (true, false), (false, true)] {
            let ids = tok.encode(text, a, p);
            assert!(
                ids.iter().all(|&id| (id as usize) < tok.n_vocab()),
                "{text:?}: {ids:?}"
            );
            let _ = tok.detokenize(&ids, a, p);
            let _ = tok.detokenize(&ids, !a, !p);
        }
    }
    for id in 0..10 {
        let _ = tok.token_to_piece(id, true);
        let _ = tok.token_to_piece(id, false);
    }

    // "none" is a valid (empty) tokenizer.
    let none = Tokenizer::from_spec(VocabSpec {
        model: "none".into(),
        ..VocabSpec::default()
    })
    .unwrap();
    assert_eq!(none.n_vocab(), 0);
    assert!(none.encode("hello", true, true).is_empty());
    assert_eq!(none.detokenize(&[1, 2, 3], false, false), "");
}

mod roundtrip {
    use super::*;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    fn phi3() -> &'static Tokenizer {
        static T: OnceLock<Tokenizer> = OnceLock::new();
        T.get_or_init(|| load("ggml-vocab-phi-3.gguf"))
    }

    fn gpt2() -> &'static Tokenizer {
        static T: OnceLock<Tokenizer> = OnceLock::new();
        T.get_or_init(|| load("ggml-vocab-gpt-2.gguf"))
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            failure_persistence: None,
            ..ProptestConfig::with_cases(200)
        })]

        /// SPM is lossless (except that a literal `▁` reads as a space).
        #[test]
        fn phi3_roundtrip(text in "\\PC{0,40}") {
            prop_assume!(!text.contains('\u{2581}'));
            let tok = phi3();
            let ids = tok.encode(&text, false, false);
            prop_assert!(ids.iter().all(|&id| (id as usize) < tok.n_vocab()));
            prop_assert_eq!(tok.detokenize(&ids, false, false), text.clone());
            let with_bos = tok.encode(&text, true, false);
            let want = if text.is_empty() { String::new() } else { format!(" {text}") };
            prop_assert_eq!(tok.detokenize(&with_bos, true, false), want);
        }

        /// Byte-level BPE is lossless byte for byte.
        #[test]
        fn gpt2_roundtrip(text in "(\\PC|[ \\n\\t]){0,40}") {
            let tok = gpt2();
            let ids = tok.encode(&text, false, false);
            let bytes: Vec<u8> = ids.iter().flat_map(|&id| tok.token_to_piece(id, true)).collect();
            prop_assert_eq!(String::from_utf8(bytes).unwrap(), text);
        }
    }
}

#[test]
fn phi3_chat_template_from_the_gguf() {
    use phi::tokenizer::ChatMessage;
    let tok = load("ggml-vocab-phi-3.gguf");
    assert!(tok.chat_template().unwrap().contains("<|user|>"));
    let messages = [
        ChatMessage::new("user", "Hello!"),
        ChatMessage::new("assistant", "Hi."),
        ChatMessage::new("user", "Bye"),
    ];
    let text = tok.apply_chat_template(&messages[..1], true).unwrap();
    // The template's leading `{{ bos_token }}` is dropped: encode adds BOS.
    assert_eq!(text, "<|user|>\nHello!<|end|>\n<|assistant|>\n");
    assert_eq!(
        tok.encode(&text, true, true),
        [1, 32010, 15043, 29991, 32007, 32001]
    );
    let text = tok.apply_chat_template(&messages, true).unwrap();
    assert_eq!(
        text,
        "<|user|>\nHello!<|end|>\n<|assistant|>\nHi.<|end|>\n<|user|>\nBye<|end|>\n<|assistant|>\n"
    );
    // Without a template: Phi-3's built-in format.
    let bare = Tokenizer::from_spec(spm_spec(&["<unk>", "<s>", "</s>"])).unwrap();
    assert_eq!(
        bare.apply_chat_template(&[ChatMessage::new("system", "S")], true)
            .unwrap(),
        "<|system|>\nS<|end|>\n<|assistant|>\n"
    );
}

/// llama.cpp's other test vocabularies (models/ggml-vocab-*.gguf with their
/// .inp/.out files in a llama.cpp source tree; not shipped here, ~80 MB).
/// The reference sdist has them: `tar xzf llama_cpp_python-0.3.36.tar.gz
/// --wildcards '*/vendor/llama.cpp/models/ggml-vocab*'`, then run with
/// `PHI_LLAMA_CPP_MODELS=<that>/vendor/llama.cpp/models cargo test -p phi
/// --test tokenizer -- --ignored`.
#[test]
#[ignore = "needs PHI_LLAMA_CPP_MODELS (a llama.cpp models/ directory)"]
fn llama_cpp_vocab_test_files() {
    let dir =
        PathBuf::from(std::env::var("PHI_LLAMA_CPP_MODELS").expect("set PHI_LLAMA_CPP_MODELS"));
    let mut total_fail = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "inp"))
        .collect();
    entries.sort();
    for inp in entries {
        let gguf_path = inp.with_extension("");
        let name = gguf_path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let g = Gguf::open(&gguf_path).unwrap();
        let tok = match Tokenizer::from_gguf(&g) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{name}: unsupported: {e}");
                continue;
            }
        };
        let inp_text = std::fs::read_to_string(&inp).unwrap();
        let out_text = std::fs::read_to_string(gguf_path.with_extension("gguf.out")).unwrap();
        let mut texts: Vec<&str> = inp_text.split("\n__ggml_vocab_test__\n").collect();
        texts.pop();
        let mut fails = 0;
        for (text, line) in texts.iter().zip(out_text.lines()) {
            let want: Vec<u32> = line
                .split_whitespace()
                .map(|x| x.parse().unwrap())
                .collect();
            let got = tok.encode(text, false, false);
            if got != want {
                fails += 1;
                eprintln!("  {name}: {text:?}: got {got:?}, want {want:?}");
            }
        }
        eprintln!("{name}: {}/{} match", texts.len() - fails, texts.len());
        total_fail += fails;
    }
    assert_eq!(total_fail, 0);
}

/// Long inputs (the whole corpus repeated, ~0.5 MB, and one 200 kB "word")
/// tokenize in reasonable time and decode back to the input.
#[test]
fn long_inputs_roundtrip() {
    let corpus = read_json("tokenizer/corpus.json");
    let strings: Vec<&str> = corpus
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(strings.len(), 150);
    let mut text = strings.join("\n").replace('\u{2581}', " ");
    while text.len() < 500_000 {
        text = format!("{text}\n{text}");
    }
    let word = "abcdefghij".repeat(20_000);
    let t0 = std::time::Instant::now();
    let phi3 = load("ggml-vocab-phi-3.gguf");
    for input in [&text, &word] {
        let ids = phi3.encode(input, false, false);
        assert_eq!(&phi3.detokenize(&ids, false, false), input);
    }
    let gpt2 = load("ggml-vocab-gpt-2.gguf");
    for input in [&text, &word] {
        let ids = gpt2.encode(input, false, false);
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&id| gpt2.token_to_piece(id, true))
            .collect();
        assert_eq!(&String::from_utf8(bytes).unwrap(), input);
    }
    eprintln!("long inputs: {:?}", t0.elapsed());
}

/// Hostile GGUF metadata: wrong value types give typed errors.
#[test]
fn hostile_gguf_metadata() {
    use phi_gguf::{GgufWriter, ValueType};
    let strs = |v: &[&str]| {
        phi_gguf::Value::Array(
            ValueType::String,
            v.iter()
                .map(|s| phi_gguf::Value::String(s.to_string()))
                .collect(),
        )
    };
    let build = |kv: Vec<(&str, phi_gguf::Value)>| {
        let mut w = GgufWriter::new();
        for (k, v) in kv {
            w.add_metadata(k, v).unwrap();
        }
        let g = Gguf::from_bytes(w.to_bytes().unwrap()).unwrap();
        Tokenizer::from_gguf(&g)
    };
    let model = |m: &str| ("tokenizer.ggml.model", phi_gguf::Value::String(m.into()));
    let tokens = || {
        (
            "tokenizer.ggml.tokens",
            strs(&["<unk>", "<s>", "</s>", "a"]),
        )
    };

    // No model key.
    let e = build(vec![tokens()]).unwrap_err();
    assert!(
        matches!(&e, TokenizerError::MissingKey(k) if k == "tokenizer.ggml.model"),
        "{e}"
    );
    // No tokens.
    let e = build(vec![model("llama")]).unwrap_err();
    assert!(
        matches!(&e, TokenizerError::MissingKey(k) if k == "tokenizer.ggml.tokens"),
        "{e}"
    );
    // Unknown model, named in the message.
    let e = build(vec![model("rwkv"), tokens()]).unwrap_err();
    assert!(e.to_string().contains("rwkv"), "{e}");
    // Tokens that are not strings.
    let e = build(vec![
        model("llama"),
        (
            "tokenizer.ggml.tokens",
            phi_gguf::Value::Array(ValueType::U32, vec![phi_gguf::Value::U32(1)]),
        ),
    ])
    .unwrap_err();
    assert!(matches!(e, TokenizerError::BadValue { .. }), "{e}");
    // Scores of the wrong type / length.
    let e = build(vec![
        model("llama"),
        tokens(),
        ("tokenizer.ggml.scores", strs(&["x"; 4])),
    ])
    .unwrap_err();
    assert!(matches!(e, TokenizerError::BadValue { .. }), "{e}");
    let e = build(vec![
        model("llama"),
        tokens(),
        (
            "tokenizer.ggml.token_type",
            phi_gguf::Value::Array(ValueType::I32, vec![phi_gguf::Value::I32(1); 3]),
        ),
    ])
    .unwrap_err();
    assert!(matches!(e, TokenizerError::LengthMismatch { .. }), "{e}");
    // A model key that is not a string.
    let e = build(vec![
        ("tokenizer.ggml.model", phi_gguf::Value::U32(7)),
        tokens(),
    ])
    .unwrap_err();
    assert!(matches!(e, TokenizerError::Gguf(_)), "{e}");
    // Negative, too large and out-of-vocabulary special ids are refused,
    // naming the key (also the older fim keys and the chat template's
    // bos/eos); in-range ones are used.
    let n_vocab = 4; // tokens()
    for (key, value, shown) in [
        (
            "tokenizer.ggml.bos_token_id",
            phi_gguf::Value::I32(-1),
            -1i128,
        ),
        (
            "tokenizer.ggml.eos_token_id",
            phi_gguf::Value::U32(4_000_000_000),
            4_000_000_000,
        ),
        ("tokenizer.ggml.eos_token_id", phi_gguf::Value::U32(4), 4),
        (
            "tokenizer.ggml.eot_token_id",
            phi_gguf::Value::U64(1 << 40),
            1 << 40,
        ),
        ("tokenizer.ggml.eom_token_id", phi_gguf::Value::U32(9), 9),
        (
            "tokenizer.ggml.unknown_token_id",
            phi_gguf::Value::I64(-7),
            -7,
        ),
        (
            "tokenizer.ggml.seperator_token_id",
            phi_gguf::Value::U32(5),
            5,
        ),
        (
            "tokenizer.ggml.padding_token_id",
            phi_gguf::Value::U32(5),
            5,
        ),
        ("tokenizer.ggml.mask_token_id", phi_gguf::Value::U16(5), 5),
        ("tokenizer.ggml.prefix_token_id", phi_gguf::Value::U32(5), 5),
        ("tokenizer.ggml.suffix_token_id", phi_gguf::Value::U32(5), 5),
        ("tokenizer.ggml.middle_token_id", phi_gguf::Value::U32(5), 5),
        (
            "tokenizer.ggml.fim_pre_token_id",
            phi_gguf::Value::U32(5),
            5,
        ),
        (
            "tokenizer.ggml.fim_suf_token_id",
            phi_gguf::Value::U32(5),
            5,
        ),
        (
            "tokenizer.ggml.fim_mid_token_id",
            phi_gguf::Value::U32(5),
            5,
        ),
        (
            "tokenizer.ggml.fim_pad_token_id",
            phi_gguf::Value::U32(5),
            5,
        ),
        (
            "tokenizer.ggml.fim_rep_token_id",
            phi_gguf::Value::U32(5),
            5,
        ),
        (
            "tokenizer.ggml.fim_sep_token_id",
            phi_gguf::Value::U32(5),
            5,
        ),
    ] {
        let e = build(vec![model("llama"), tokens(), (key, value)]).unwrap_err();
        assert!(
            matches!(&e, TokenizerError::SpecialIdOutOfRange { key: k, id, n_vocab: n }
                if k == key && *id == shown && *n == n_vocab),
            "{key}: {e}"
        );
        assert!(
            e.to_string().contains("outside the vocabulary of 4 tokens"),
            "{e}"
        );
    }
    let tok = build(vec![
        model("llama"),
        tokens(),
        ("tokenizer.ggml.bos_token_id", phi_gguf::Value::U32(2)),
        ("tokenizer.ggml.unknown_token_id", phi_gguf::Value::U8(3)),
    ])
    .unwrap();
    assert_eq!(
        (tok.bos(), tok.eos(), tok.unk()),
        (Some(2), Some(2), Some(3))
    );
    // A "none" tokenizer has no vocabulary and ignores its ids.
    build(vec![
        model("none"),
        ("tokenizer.ggml.bos_token_id", phi_gguf::Value::U32(7)),
    ])
    .unwrap();
    // A gpt2 model without merges.
    let e = build(vec![model("gpt2"), tokens()]).unwrap_err();
    assert!(
        matches!(&e, TokenizerError::MissingKey(k) if k == "tokenizer.ggml.merges"),
        "{e}"
    );
}

mod hostile_specs {
    use super::*;
    use proptest::prelude::*;

    static LOADED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    /// Cases run: 300, or PROPTEST_CASES (which overrides the config).
    static CASES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    /// Runs the property below (not a test by itself) and checks that it
    /// exercised loaded tokenizers, not just load errors.
    #[test]
    fn most_arbitrary_vocabs_load() {
        arbitrary_vocab_never_panics();
        let loaded = LOADED.load(std::sync::atomic::Ordering::Relaxed);
        let cases = CASES.load(std::sync::atomic::Ordering::Relaxed);
        eprintln!("{loaded} of {cases} arbitrary vocabularies loaded");
        assert!(
            cases > 0 && loaded * 2 > cases,
            "only {loaded} of {cases} vocabularies loaded"
        );
    }

    fn token() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-c▁ <>|/s]{0,4}",
            Just("<0x41>".to_string()),
            Just("<|end|>".to_string()),
            Just("</s>".to_string()),
            "\\PC{1,3}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            failure_persistence: None,
            ..ProptestConfig::with_cases(300)
        })]

        /// Arbitrary small vocabularies either load or give an error, and
        /// then never panic or emit out-of-range ids.
        fn arbitrary_vocab_never_panics(
            bpe in any::<bool>(),
            tokens in proptest::collection::vec(token(), 0..24),
            types in proptest::collection::vec(-2i32..9, 24),
            scores in proptest::collection::vec(-5.0f32..5.0, 24),
            merges in proptest::collection::vec(
                prop_oneof![6 => "[a-c▁]{1,2} [a-c]{1,2}", 1 => "[a-c ]{0,5}"],
                0..8,
            ),
            ids in proptest::collection::vec(0u32..30, 4),
            lie in proptest::option::weighted(0.1, 0usize..4),
            name in prop_oneof![Just("phi3"), Just("x")],
            text in "[a-c▁ <>|/s\\n]{0,24}|\\PC{0,12}",
            decode in proptest::collection::vec(0u32..40, 0..12),
        ) {
            CASES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // Mostly distinct tokens, so that most vocabularies load.
            let mut seen = std::collections::HashSet::new();
            let mut tokens: Vec<String> = tokens.into_iter().filter(|t| seen.insert(t.clone())).collect();
            if tokens.len() > 1 && decode.len() % 5 == 0 {
                tokens.push(tokens[0].clone()); // sometimes a duplicate
            }
            let n = tokens.len();
            // Ids inside the vocabulary, except (sometimes) one that lies.
            let mut ids: Vec<u32> = ids.iter().map(|&i| i % (n.max(1) as u32)).collect();
            if let Some(l) = lie {
                ids[l] += n as u32;
            }
            let spec = VocabSpec {
                model: if bpe { "gpt2" } else { "llama" }.into(),
                pre: bpe.then(|| "gpt-2".to_string()),
                tokens,
                scores: Some(scores[..n].to_vec()),
                token_types: Some(types[..n].to_vec()),
                merges: bpe.then_some(merges),
                special_ids: phi::tokenizer::SpecialIds {
                    bos: Some(ids[0]),
                    eos: Some(ids[1]),
                    unk: Some(ids[2]),
                    eot: Some(ids[3]),
                    ..Default::default()
                },
                model_name: Some(name.to_string()),
                ..VocabSpec::default()
            };
            let loaded = Tokenizer::from_spec(spec);
            // (Refused as SpecialIdOutOfRange, or for an earlier defect.)
            prop_assert!(lie.is_none() || loaded.is_err(), "a lying special id loaded");
            if let Ok(tok) = loaded {
                LOADED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                for (a, p) in [(false, false), (true, true), (true, false), (false, true)] {
                    let out = tok.encode(&text, a, p);
                    prop_assert!(out.iter().all(|&id| (id as usize) < tok.n_vocab()));
                    let _ = tok.detokenize(&out, a, p);
                }
                let _ = tok.detokenize(&decode, true, true);
                let _ = tok.detokenize(&decode, false, false);
            }
        }
    }
}

#[test]
fn debug_output_is_a_summary() {
    let tok = load("ggml-vocab-phi-3.gguf");
    let s = format!("{tok:?}");
    assert!(s.contains("n_vocab: 32064"), "{s}");
    assert!(s.len() < 400, "{} bytes", s.len());
}

/// Byte-level BPE splits characters across tokens: the text stream holds
/// the partial bytes back and never shows a replacement character.
#[test]
fn gpt2_text_stream_assembles_split_characters() {
    use phi::tokenizer::TextStream;
    let tok = load("ggml-vocab-gpt-2.gguf");
    let text = "🦙 llamas héllo 日本語 🎉🎉";
    let ids = tok.encode(text, false, false);
    let mut stream = TextStream::new(&tok, false);
    let mut out = String::new();
    let mut split_seen = false;
    for &id in &ids {
        let chunk = stream.push(id);
        assert!(!chunk.contains('\u{FFFD}'), "{chunk:?}");
        split_seen |= chunk.is_empty();
        out.push_str(&chunk);
    }
    out.push_str(&stream.finish());
    assert_eq!(out, text);
    assert!(split_seen, "some token should end inside a character");
    // Control tokens render only with `special`.
    let mut plain = TextStream::new(&tok, false);
    assert_eq!(plain.push(50256), "");
    let mut special = TextStream::new(&tok, true);
    assert_eq!(special.push(50256), "<|endoftext|>");
}

#[test]
fn spm_without_space_prefix() {
    let mut spec = spm_spec(&["<unk>", "<s>", "</s>", "▁", "a", "b", "ab", "▁ab"]);
    spec.scores = Some(vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0]);
    let with = Tokenizer::from_spec(spec.clone()).unwrap();
    assert_eq!(with.encode("ab", false, false), [7]);
    assert_eq!(with.detokenize(&[7], false, false), "ab");
    spec.add_space_prefix = Some(false);
    let without = Tokenizer::from_spec(spec).unwrap();
    assert_eq!(without.encode("ab", false, false), [6]);
    assert_eq!(without.encode(" ab", false, false), [7]);
    // No leading-space removal either.
    assert_eq!(without.detokenize(&[7], false, false), " ab");
    // add_eos from the metadata.
    let mut spec = spm_spec(&["<unk>", "<s>", "</s>", "▁a"]);
    spec.add_eos = Some(true);
    spec.add_bos = Some(false);
    let tok = Tokenizer::from_spec(spec).unwrap();
    assert_eq!(tok.encode("a", true, false), [3, 2]);
    // No byte tokens at all: unknown bytes become <unk>.
    assert_eq!(tok.encode("b", false, false), [0, 0, 0, 0]);
    assert_eq!(tok.detokenize(&[3, 2], true, false), "a");
}
