//! What structured output costs a batching server per step: `n` sequences
//! decoded together by [`phi::batch::Batch`], unconstrained (`plain`), under
//! a JSON Schema with each mask computed after the forward pass (`inline`),
//! and with the masks computed on their own thread during the forward pass
//! (`overlap`), interleaved over rounds (plain, inline, overlap, plain, ...).
//!
//! ```sh
//! cargo run --release -p phi --example batch_mask_cost -- MODEL.gguf [N_SEQ=4] [TOKENS=64] [ROUNDS=3] [THREADS=2]
//! ```
//!
//! Per mode: decode steps, wall ms per step, the mask time left on the
//! critical path per step (computing in line, or waiting for the mask
//! thread), and the process's CPU ms per step. The mask cost depends on the
//! vocabulary: use a model with a real one (`synthetic_with_vocab`).

use phi::batch::{Batch, BatchParams, SeqParams};
use phi::constraint::{Constraint, ConstraintSpec, ConstraintVocab};
use phi::{Model, SamplerParams};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The schema of `benches/structured.sh`: 40 to 60 objects, so random
/// weights cannot finish it and every sequence decodes all its tokens.
const SCHEMA: &str = r#"{"type": "object", "properties": {"items": {"type": "array", "minItems": 40, "maxItems": 60,
  "items": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
  "id": {"type": "integer", "minimum": 0, "maximum": 99999}, "ok": {"type": "boolean"}},
  "required": ["name", "id", "ok"], "additionalProperties": false}}},
  "required": ["items"], "additionalProperties": false}"#;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Plain,
    Inline,
    Overlap,
}

#[derive(Default)]
struct Totals {
    steps: usize,
    wall: Duration,
    critical: Duration,
    cpu: Duration,
    tokens: usize,
}

/// User + system CPU time of this process (Linux `/proc`; zero elsewhere).
fn cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit_once(')').map_or("", |r| r.1);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    // Clock ticks, 100 per second on Linux.
    Duration::from_millis(f.iter().sum::<u64>() * 10)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        return Err(
            "usage: batch_mask_cost MODEL.gguf [N_SEQ=4] [TOKENS=64] [ROUNDS=3] [THREADS=2]".into(),
        );
    };
    let num = |i: usize, d: usize| args.get(i).map_or(Ok(d), |s| s.parse::<usize>());
    let (n_seq, tokens, rounds, threads) = (num(1, 4)?, num(2, 64)?, num(3, 3)?, num(4, 2)?);
    let model = Arc::new(Model::load(path)?);
    let vocab = ConstraintVocab::for_model(&model)?;
    let spec = ConstraintSpec::json_schema(SCHEMA)?;
    let params = BatchParams {
        n_seq,
        n_ctx: 256,
        n_threads: threads,
        ..Default::default()
    };
    let mut batch = Batch::new(Arc::clone(&model), &params)?;
    let tok = model.tokenizer();
    let modes = [Mode::Plain, Mode::Inline, Mode::Overlap];
    let mut totals: Vec<Totals> = modes.iter().map(|_| Totals::default()).collect();
    let mut events = Vec::new();
    for round in 0..=rounds {
        for (mi, &mode) in modes.iter().enumerate() {
            batch.set_mask_overlap(mode == Mode::Overlap);
            for i in 0..n_seq {
                // Distinct prompts: no prefix is reused from the last round.
                let text = format!("Round {round} mode {mi} request {i}: the inventory as JSON:");
                let prompt = tok.encode(&text, true, false);
                let c = match mode {
                    Mode::Plain => None,
                    _ => Some(Constraint::new(&vocab, &spec)?),
                };
                let seq = SeqParams {
                    sampler: SamplerParams::greedy(),
                    max_tokens: tokens,
                    ignore_eos: true,
                    ..Default::default()
                };
                batch.submit_constrained(prompt, seq, c)?;
            }
            // Prompts first (not measured), then the decode steps.
            let mut measured = Totals::default();
            while batch.n_active() > 0 {
                events.clear();
                let decoding = batch.n_active();
                let (t, cpu, crit) = (Instant::now(), cpu_time(), batch.mask_critical_time());
                batch.step(&mut events)?;
                let all_decode = events.iter().filter(|e| e.token.is_some()).count() == decoding;
                if all_decode && decoding == n_seq {
                    measured.steps += 1;
                    measured.wall += t.elapsed();
                    measured.cpu += cpu_time().saturating_sub(cpu);
                    measured.critical += batch.mask_critical_time() - crit;
                    measured.tokens += decoding;
                }
            }
            // Round 0 warms up.
            if round > 0 {
                let tot = &mut totals[mi];
                tot.steps += measured.steps;
                tot.wall += measured.wall;
                tot.cpu += measured.cpu;
                tot.critical += measured.critical;
                tot.tokens += measured.tokens;
            }
        }
    }
    println!(
        "{n_seq} sequences x {tokens} tokens, {threads} threads, {rounds} rounds, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| mode | steps | ms/step | mask on critical path µs/step | CPU ms/step | tok/s |");
    println!("|---|---|---|---|---|---|");
    let base = totals[0].wall.as_secs_f64() / totals[0].steps.max(1) as f64;
    for (mode, t) in ["plain", "inline", "overlap"].iter().zip(&totals) {
        let per = |d: Duration| d.as_secs_f64() * 1e3 / t.steps.max(1) as f64;
        println!(
            "| {mode} | {} | {:.2} ({:.1} % of plain) | {:.0} | {:.2} | {:.1} |",
            t.steps,
            per(t.wall),
            100.0 * per(t.wall) / 1e3 / base,
            per(t.critical) * 1e3,
            per(t.cpu),
            t.tokens as f64 / t.wall.as_secs_f64().max(1e-9),
        );
    }
    Ok(())
}
