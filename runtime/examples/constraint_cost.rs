//! Cost of structured output without a model: builds the constraint
//! vocabulary of a GGUF's tokenizer (a vocab-only file works), then samples
//! from random logits under a JSON Schema and reports the time per mask.
//!
//! ```sh
//! cargo run --release -p phi --example constraint_cost -- \
//!     tests/fixtures/vocab/ggml-vocab-phi-3.gguf [SCHEMA.json] [STEPS=200]
//! ```

use phi::constraint::{Constraint, ConstraintSpec, ConstraintVocab};
use phi::{Sampler, SamplerParams, Tokenizer};
use phi_gguf::Gguf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const DEFAULT_SCHEMA: &str = r#"{"type": "object", "properties": {"items": {"type": "array",
  "items": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
  "id": {"type": "integer", "minimum": 0, "maximum": 99999}, "ok": {"type": "boolean"}},
  "required": ["name", "id", "ok"], "additionalProperties": false}}},
  "required": ["items"], "additionalProperties": false}"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        return Err("usage: constraint_cost VOCAB.gguf [SCHEMA.json] [STEPS]".into());
    };
    let schema = match args.get(1) {
        Some(f) => std::fs::read_to_string(f)?,
        None => DEFAULT_SCHEMA.to_string(),
    };
    let steps: usize = args.get(2).map_or(Ok(200), |s| s.parse())?;
    let tok = Tokenizer::from_gguf(&Gguf::open(path)?)?;
    let t = Instant::now();
    let vocab = Arc::new(ConstraintVocab::new(&tok, tok.n_vocab())?);
    println!(
        "vocabulary of {} tokens built in {:.0} ms",
        tok.n_vocab(),
        t.elapsed().as_secs_f64() * 1e3
    );
    let spec = ConstraintSpec::json_schema(&schema)?;
    let t = Instant::now();
    let mut c = Constraint::new(&vocab, &spec)?;
    println!(
        "schema compiled (and first mask) in {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let mut sampler = Sampler::new(SamplerParams {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        ..SamplerParams::default()
    });
    let mut logits = vec![0f32; tok.n_vocab()];
    let mut state = 0x1234_5678_u64;
    let (mut mask, mut apply, mut commit, mut sample) = (
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
    );
    let (mut n, mut restarts) = (0, 0);
    while n < steps {
        for l in logits.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *l = (state >> 40) as f32 / (1u64 << 24) as f32 * 6.0;
        }
        let t0 = Instant::now();
        c.compute_mask()?;
        let t1 = Instant::now();
        c.apply(&mut logits)?;
        let t2 = Instant::now();
        let next = sampler.sample(&logits);
        let t3 = Instant::now();
        c.commit(next)?;
        mask += t1 - t0;
        apply += t2 - t1;
        commit += t3.elapsed();
        sample += t3 - t2;
        n += 1;
        if c.is_finished() || tok.is_eog(next) {
            c = Constraint::new(&vocab, &spec)?;
            restarts += 1;
        }
    }
    println!(
        "{n} steps ({restarts} outputs completed), per token: mask {:.1} µs, apply {:.1} µs, commit {:.1} µs \
         (sampling itself, constrained or not: {:.1} µs)",
        mask.as_secs_f64() * 1e6 / n as f64,
        apply.as_secs_f64() * 1e6 / n as f64,
        commit.as_secs_f64() * 1e6 / n as f64,
        sample.as_secs_f64() * 1e6 / n as f64
    );
    Ok(())
}
