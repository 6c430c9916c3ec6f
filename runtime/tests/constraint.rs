//! Structured output (`phi::constraint`): token bytes for both vocabulary
//! families, JSON Schema / regex / Lark constraints on a random-weight model
//! (the harshest case: only the constraint makes the output valid), tokens
//! that span grammar boundaries, budgets too small to finish, and bad specs.

use phi::constraint::{Constraint, ConstraintSpec, ConstraintVocab};
use phi::{
    generate_constrained, Context, ContextParams, Model, Sampler, SamplerParams, StopReason,
    Tokenizer,
};
use phi_gguf::Gguf;
use serde_json::{json, Value};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn vocab_tokenizer(name: &str) -> Tokenizer {
    let path = fixtures().join("vocab").join(name);
    let g = Gguf::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Tokenizer::from_gguf(&g).unwrap()
}

fn phi3_vocab() -> &'static (Tokenizer, Arc<ConstraintVocab>) {
    static V: OnceLock<(Tokenizer, Arc<ConstraintVocab>)> = OnceLock::new();
    V.get_or_init(|| {
        let t = vocab_tokenizer("ggml-vocab-phi-3.gguf");
        let v = Arc::new(ConstraintVocab::new(&t, 32064).unwrap());
        (t, v)
    })
}

fn gpt2_vocab() -> &'static (Tokenizer, Arc<ConstraintVocab>) {
    static V: OnceLock<(Tokenizer, Arc<ConstraintVocab>)> = OnceLock::new();
    V.get_or_init(|| {
        let t = vocab_tokenizer("ggml-vocab-gpt-2.gguf");
        let n = t.n_vocab();
        let v = Arc::new(ConstraintVocab::new(&t, n).unwrap());
        (t, v)
    })
}

fn tiny_model() -> &'static Arc<Model> {
    static M: OnceLock<Arc<Model>> = OnceLock::new();
    M.get_or_init(|| Arc::new(Model::load(fixtures().join("models/phi3-tiny-q4_0.gguf")).unwrap()))
}

fn tiny_ctx(model: Arc<Model>, n_threads: usize) -> Context {
    let params = ContextParams {
        n_ctx: 256,
        n_threads,
        ..ContextParams::default()
    };
    Context::new(model, &params).unwrap()
}

/// A small seedable generator for schemas and random logits.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

fn sampling(seed: u64) -> SamplerParams {
    SamplerParams {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        repeat_penalty: 1.0,
        repeat_last_n: 0,
        seed,
    }
}

/// Generates with the tiny random-weight model under `spec`; returns the
/// output bytes, the stop reason and whether the constraint accepted.
fn run_model(
    ctx: &mut Context,
    spec: &ConstraintSpec,
    max_tokens: usize,
    seed: u64,
) -> (Vec<u8>, StopReason, bool) {
    let model = Arc::clone(ctx.model());
    let vocab = ConstraintVocab::for_model(&model).unwrap();
    let mut c = Constraint::new(&vocab, spec).unwrap_or_else(|e| panic!("{spec:?}: {e}"));
    let tok = model.tokenizer();
    let mut sampler = Sampler::new(sampling(seed));
    let mut out = Vec::new();
    ctx.reset();
    let prompt = [tok.bos().unwrap()];
    let stats = generate_constrained(
        ctx,
        &mut sampler,
        &prompt,
        max_tokens,
        |t| tok.is_eog(t),
        Some(&mut c),
        |t| {
            out.extend_from_slice(&tok.token_to_piece(t, false));
            ControlFlow::Continue(())
        },
    )
    .unwrap_or_else(|e| panic!("{spec:?}: {e}"));
    (out, stats.stop, c.is_accepting())
}

/// Random logits instead of a model: each step a fresh row; same contract.
fn run_random_logits(
    vocab: &Arc<ConstraintVocab>,
    tok: &Tokenizer,
    spec: &ConstraintSpec,
    max_tokens: usize,
    seed: u64,
) -> (Vec<u8>, bool) {
    let mut c = Constraint::new(vocab, spec).unwrap_or_else(|e| panic!("{spec:?}: {e}"));
    let mut rng = Rng(seed);
    let mut sampler = Sampler::new(sampling(seed));
    let mut logits = vec![0f32; vocab.n_vocab()];
    let mut out = Vec::new();
    for _ in 0..max_tokens {
        for l in logits.iter_mut() {
            *l = rng.f32() * 6.0;
        }
        c.apply(&mut logits).unwrap();
        let t = sampler.sample(&logits);
        c.commit(t).unwrap();
        if tok.is_eog(t) {
            break;
        }
        out.extend_from_slice(&tok.token_to_piece(t, false));
        if c.is_finished() {
            break;
        }
    }
    let ok = c.is_accepting();
    (out, ok)
}

// ---------------------------------------------------------------------------
// Token bytes

#[test]
fn spm_token_bytes_map_pieces_bytes_and_specials() {
    let (tok, v) = phi3_vocab();
    let id = |s: &str| {
        tok.token_id(s)
            .unwrap_or_else(|| panic!("{s} not in vocab"))
    };
    assert_eq!(v.token_bytes(id("▁Hello")), b" Hello");
    assert_eq!(v.token_bytes(id("<0x41>")), b"A");
    assert_eq!(v.token_bytes(id("<0x0A>")), b"\n");
    assert_eq!(v.token_bytes(id("<0xE2>")), &[0xE2]);
    // Control and end-of-generation tokens are not text.
    for s in ["<s>", "</s>", "<|end|>", "<|endoftext|>"] {
        let b = v.token_bytes(id(s));
        assert_eq!(b[0], 0xff, "{s}");
        assert_eq!(&b[1..], s.as_bytes());
    }
    // Past the tokenizer's vocabulary: nothing.
    assert!(v.token_bytes(40000).is_empty());
}

#[test]
fn gpt2_token_bytes_map_byte_level_characters() {
    let (tok, v) = gpt2_vocab();
    let id = |s: &str| {
        tok.token_id(s)
            .unwrap_or_else(|| panic!("{s} not in vocab"))
    };
    assert_eq!(v.token_bytes(id("Ġthe")), b" the");
    assert_eq!(v.token_bytes(id("Ċ")), b"\n");
    assert_eq!(v.token_bytes(id("\":")), b"\":");
    // U+00E2 in GPT-2's byte alphabet is the byte 0xE2 (start of a 3-byte char).
    assert_eq!(v.token_bytes(id("â")), &[0xE2]);
    let eos = tok.eos().unwrap();
    assert_eq!(v.token_bytes(eos)[0], 0xff);
}

#[test]
fn vocab_is_built_once_per_model() {
    let m = tiny_model();
    let a = ConstraintVocab::for_model(m).unwrap();
    let b = ConstraintVocab::for_model(m).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    assert_eq!(a.n_vocab(), m.config().n_vocab);
}

// ---------------------------------------------------------------------------
// Tokens spanning grammar boundaries

/// The tokenizer's own spelling of a valid output is accepted token by token,
/// including tokens that straddle lexemes (`":`, `",`, ` "` …).
fn check_natural_tokenization(tok: &Tokenizer, vocab: &Arc<ConstraintVocab>) {
    let schema = json!({
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}}},
        "required": ["name", "age", "tags"],
        "additionalProperties": false
    });
    let text = r#"{"name": "Bob Smith", "age": 42, "tags": ["a", "bc"]}"#;
    let ids = tok.encode_continuation(text);
    let spanning = ids
        .iter()
        .filter(|&&t| {
            let b = vocab.token_bytes(t);
            b.len() > 1
                && b.iter().any(|c| b"\":,[]{}".contains(c))
                && b.iter().any(|c| !b"\":,[]{}".contains(c))
                || b == b"\":"
                || b == b"\","
        })
        .count();
    assert!(
        spanning > 0,
        "no token crosses a lexeme boundary in {ids:?}"
    );
    let mut c = Constraint::new(vocab, &ConstraintSpec::JsonSchema(schema)).unwrap();
    for &t in &ids {
        assert!(
            c.allows(t).unwrap(),
            "token {t} {:?} rejected",
            String::from_utf8_lossy(vocab.token_bytes(t))
        );
        c.commit(t).unwrap();
    }
    assert!(c.is_accepting());
    // A wrong continuation is refused, and the state is unchanged by the refusal.
    let mut c = Constraint::new(vocab, &ConstraintSpec::JsonObject).unwrap();
    let x = tok.encode_continuation("x")[0];
    assert!(!c.allows(x).unwrap());
    assert!(c.commit(x).is_err());
    let brace = tok.encode_continuation("{")[0];
    c.commit(brace).unwrap();
}

#[test]
fn spm_tokens_spanning_lexemes_are_allowed() {
    let (tok, v) = phi3_vocab();
    check_natural_tokenization(tok, v);
}

#[test]
fn bpe_tokens_spanning_lexemes_are_allowed() {
    let (tok, v) = gpt2_vocab();
    check_natural_tokenization(tok, v);
}

#[test]
fn end_of_generation_only_when_complete() {
    let (tok, v) = phi3_vocab();
    let end = tok.token_id("<|end|>").unwrap();
    let mut c = Constraint::new(v, &ConstraintSpec::Regex("ab+".into())).unwrap();
    assert!(!c.allows(end).unwrap());
    assert!(!c.is_accepting());
    for t in tok.encode_continuation("ab") {
        c.commit(t).unwrap();
    }
    assert!(c.is_accepting() && !c.is_finished());
    assert!(c.allows(end).unwrap());
    c.commit(end).unwrap();
}

// ---------------------------------------------------------------------------
// Property test: generated JSON Schemas

/// A random schema of bounded output size (every string has a maxLength,
/// objects forbid extra properties, arrays have maxItems).
fn gen_schema(rng: &mut Rng, depth: usize) -> Value {
    let kinds = if depth >= 2 { 7 } else { 9 };
    match rng.below(kinds) {
        0 => json!({"type": "boolean"}),
        1 => {
            let lo = rng.below(200) as i64 - 100;
            let hi = lo + rng.below(1000) as i64;
            json!({"type": "integer", "minimum": lo, "maximum": hi})
        }
        2 => {
            let lo = rng.below(100) as f64 / 4.0 - 10.0;
            let hi = lo + rng.below(100) as f64 / 2.0 + 0.5;
            json!({"type": "number", "minimum": lo, "maximum": hi})
        }
        3 => json!({"type": "string", "maxLength": 1 + rng.below(8)}),
        4 => {
            let patterns = [
                "^[a-z]{1,6}$",
                "^[0-9]{3}-[0-9]{2}$",
                "^(yes|no|maybe)$",
                "^[A-Z][a-z]{0,4}$",
                "^#[0-9a-f]{6}$",
            ];
            json!({"type": "string", "pattern": patterns[rng.below(patterns.len())]})
        }
        5 => {
            let pool = [
                json!("red"),
                json!("green"),
                json!("blue"),
                json!(1),
                json!(2.5),
                json!(null),
                json!(true),
                json!("a b"),
            ];
            let n = 1 + rng.below(4);
            let vals: Vec<Value> = (0..n)
                .map(|_| pool[rng.below(pool.len())].clone())
                .collect();
            let mut uniq: Vec<Value> = Vec::new();
            for v in vals {
                if !uniq.contains(&v) {
                    uniq.push(v);
                }
            }
            json!({"enum": uniq})
        }
        6 => json!({"type": "null"}),
        7 => {
            let mut o = json!({"type": "array", "items": gen_schema(rng, depth + 1), "maxItems": 1 + rng.below(3)});
            if rng.chance(50) {
                o["minItems"] = json!(1);
            }
            o
        }
        _ => {
            let n = 1 + rng.below(3);
            let mut props = serde_json::Map::new();
            let mut required = Vec::new();
            for i in 0..n {
                let name = format!("{}{i}", ["id", "name", "value", "items", "x"][rng.below(5)]);
                props.insert(name.clone(), gen_schema(rng, depth + 1));
                if rng.chance(60) {
                    required.push(json!(name));
                }
            }
            json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
        }
    }
}

/// Wraps a schema so the top level is an object (like response_format).
fn top_schema(rng: &mut Rng) -> Value {
    let mut s = gen_schema(rng, 0);
    if s.get("type") != Some(&json!("object")) {
        s = json!({"type": "object", "properties": {"answer": s}, "required": ["answer"], "additionalProperties": false});
    }
    s
}

#[test]
fn generated_schemas_give_valid_json_on_a_random_weight_model() {
    const SCHEMAS: u64 = 300;
    const BUDGET: usize = 160;
    let model = Arc::clone(tiny_model());
    let mut ctx = tiny_ctx(model, 1);
    let mut rng = Rng(17);
    let (mut complete, mut failures) = (0, Vec::new());
    for i in 0..SCHEMAS {
        let schema = top_schema(&mut rng);
        let (out, stop, accepting) = run_model(
            &mut ctx,
            &ConstraintSpec::JsonSchema(schema.clone()),
            BUDGET,
            i,
        );
        let text = String::from_utf8_lossy(&out).into_owned();
        if stop == StopReason::Length && !accepting {
            continue; // ran out of budget: checked below that this is rare
        }
        complete += 1;
        let instance: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{schema}\n  {text:?}: not JSON: {e}"));
                continue;
            }
        };
        let validator = jsonschema::validator_for(&schema).unwrap();
        if !validator.is_valid(&instance) {
            failures.push(format!("{schema}\n  {text}: invalid"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {complete} outputs fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        complete * 10 >= SCHEMAS as usize * 9,
        "only {complete} of {SCHEMAS} finished within {BUDGET} tokens"
    );
    eprintln!("{complete} of {SCHEMAS} schemas completed, 0 failures");
}

#[test]
fn generated_schemas_with_both_real_vocabularies_and_random_logits() {
    let mut rng = Rng(99);
    for (name, (tok, v)) in [("phi-3", phi3_vocab()), ("gpt-2", gpt2_vocab())] {
        let mut complete = 0;
        for i in 0..40 {
            let schema = top_schema(&mut rng);
            let (out, ok) =
                run_random_logits(v, tok, &ConstraintSpec::JsonSchema(schema.clone()), 120, i);
            if !ok {
                continue;
            }
            complete += 1;
            let text = String::from_utf8(out).unwrap();
            let instance: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{name} {schema}: {text:?}: {e}"));
            assert!(
                jsonschema::validator_for(&schema)
                    .unwrap()
                    .is_valid(&instance),
                "{name} {schema}: {text}"
            );
        }
        assert!(complete >= 34, "{name}: only {complete} of 40 completed");
    }
}

// ---------------------------------------------------------------------------
// Regex, Lark, JSON object

#[test]
fn regex_and_lark_outputs_match_on_a_random_weight_model() {
    let model = Arc::clone(tiny_model());
    let mut ctx = tiny_ctx(model, 1);
    let rx = "[0-9]{3}-[a-z]{2,4}( ok| fail)";
    let full = regex::Regex::new(&format!("^(?:{rx})$")).unwrap();
    let lark = r#"
start: greeting " " name "!"
greeting: "hello" | "hi there"
name: /[A-Z][a-z]{1,5}/
"#;
    let lark_rx = regex::Regex::new("^(hello|hi there) [A-Z][a-z]{1,5}!$").unwrap();
    for seed in 0..20 {
        let (out, stop, ok) = run_model(&mut ctx, &ConstraintSpec::Regex(rx.into()), 64, seed);
        let s = String::from_utf8(out).unwrap();
        assert!(ok && stop == StopReason::EndOfGeneration, "{s:?} {stop:?}");
        assert!(full.is_match(&s), "{s:?}");
        let (out, _, ok) = run_model(&mut ctx, &ConstraintSpec::Lark(lark.into()), 64, seed);
        let s = String::from_utf8(out).unwrap();
        assert!(ok && lark_rx.is_match(&s), "{s:?}");
        let (out, _, ok) = run_model(&mut ctx, &ConstraintSpec::JsonObject, 200, seed);
        if ok {
            let v: Value = serde_json::from_str(std::str::from_utf8(&out).unwrap()).unwrap();
            assert!(v.is_object());
        }
    }
}

#[test]
fn a_budget_too_small_ends_with_length_and_not_accepting() {
    let model = Arc::clone(tiny_model());
    let mut ctx = tiny_ctx(model, 1);
    let schema = json!({"type": "object", "properties": {"s": {"type": "string", "minLength": 40}}, "required": ["s"]});
    let (out, stop, ok) = run_model(&mut ctx, &ConstraintSpec::JsonSchema(schema), 8, 1);
    assert_eq!(stop, StopReason::Length);
    assert!(!ok);
    assert!(out.starts_with(b"{"));
}

// ---------------------------------------------------------------------------
// Errors

#[test]
fn bad_specs_are_errors_with_reasons() {
    let (_, v) = phi3_vocab();
    let err = |spec: ConstraintSpec| -> String {
        match Constraint::new(v, &spec) {
            Ok(_) => panic!("{spec:?} was accepted"),
            Err(e) => e.to_string(),
        }
    };
    let e = ConstraintSpec::json_schema("{\"type\": ")
        .unwrap_err()
        .to_string();
    assert!(e.contains("not valid JSON"), "{e}");
    let e = err(ConstraintSpec::JsonSchema(json!({"type": "frobnicate"})));
    assert!(e.contains("frobnicate"), "{e}");
    let e = err(ConstraintSpec::JsonSchema(json!([1, 2])));
    assert!(e.contains("object or a boolean"), "{e}");
    // Unsatisfiable: no value is both.
    let e = err(ConstraintSpec::JsonSchema(
        json!({"type": "integer", "minimum": 5, "maximum": 1}),
    ));
    assert!(!e.is_empty());
    let e = err(ConstraintSpec::Regex("[a-".into()));
    assert!(e.contains("structured output"), "{e}");
    let e = err(ConstraintSpec::Lark("start: foo".into()));
    assert!(e.contains("foo"), "{e}");
    let e = err(ConstraintSpec::Lark("   ".into()));
    assert!(e.contains("empty"), "{e}");
}

#[test]
fn mask_on_its_own_thread_gives_the_same_tokens() {
    // With fewer forward threads than cores the next mask is computed on a
    // thread of its own during the forward pass; with all cores in use, in
    // line. Same model, seed and constraint: same output either way.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let model = Arc::clone(tiny_model());
    let schema = json!({"type": "object", "properties": {"a": {"type": "array", "items": {"type": "integer"}, "maxItems": 4}, "b": {"type": "string", "maxLength": 6}}, "required": ["a", "b"], "additionalProperties": false});
    let spec = ConstraintSpec::JsonSchema(schema);
    let mut outs = Vec::new();
    for threads in [1, cores] {
        let mut ctx = tiny_ctx(Arc::clone(&model), threads);
        for seed in 0..6 {
            let (out, _, _) = run_model(&mut ctx, &spec, 64, seed);
            outs.push((threads, seed, out));
        }
    }
    let (a, b) = outs.split_at(6);
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.2, y.2, "seed {}: {} vs {} threads", x.1, x.0, y.0);
    }
}
