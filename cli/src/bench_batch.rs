//! `phi bench --parallel C1,C2,..`: batched decode throughput of the
//! [`phi::Batch`] engine (what `phi serve` runs), without HTTP.
//!
//! For each thread count and each `C`: `C` sequences get a short prompt each
//! (`--parallel-prompt` tokens, prefilled unmeasured), then `-n` steps are
//! timed in which all `C` decode together (greedy, end-of-generation
//! ignored). Beside the aggregate decode tokens/s and the wall and CPU time
//! per step, it prints `ppC` (one `Context::eval` of `C` tokens) per token,
//! which separates the kernels' cost of a `C`-token pass from the engine's
//! step overhead (sampling, bookkeeping), and the ratio of the aggregate to
//! `C = 1` (the figure).

use crate::bench::{stats, Stats};
use phi::batch::{Batch, BatchParams, Event, SeqParams};
use phi::{Context, ContextParams, Model, SamplerParams};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

/// What one `C` measures.
pub struct Setup<'a> {
    pub model: &'a Arc<Model>,
    pub threads: usize,
    pub parallel: usize,
    pub prompt: usize,
    pub n_gen: usize,
    pub kv_type: Option<phi::KvType>,
    pub max_memory: Option<usize>,
}

/// CPU time of every thread of this process so far (Linux: the sum of the
/// threads' run time from `/proc/self/task/*/schedstat`, in ns). Threads that
/// already exited are not counted, so only differences over a stretch in
/// which the pool's threads all live are meaningful. `None` elsewhere.
fn process_cpu_ns() -> Option<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path().join("schedstat");
        let text = std::fs::read_to_string(path).ok()?;
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// One measured round of `C` sequences decoding together.
pub struct Round {
    /// Aggregate decode tokens/s.
    pub tok_s: f64,
    /// Wall and CPU milliseconds per step.
    pub step_ms: f64,
    pub step_cpu_ms: Option<f64>,
}

/// Prompt tokens of sequence `i`: distinct pseudo-random ids.
fn prompt_of(i: usize, len: usize, n_vocab: usize) -> Vec<u32> {
    crate::bench::bench_tokens(len, n_vocab, 0x9E37_79B9 ^ i as u64)
}

/// Runs one round: prefill (unmeasured), then `n_gen` timed decode steps.
pub fn round(batch: &mut Batch, s: &Setup<'_>, events: &mut Vec<Event>) -> phi::Result<Round> {
    let n_vocab = s.model.config().n_vocab;
    let seq = SeqParams {
        sampler: SamplerParams::greedy(),
        // One more than measured: the prefill step already samples a token.
        max_tokens: s.n_gen + 1,
        ignore_eos: true,
        ..SeqParams::default()
    };
    for i in 0..s.parallel {
        batch.submit(prompt_of(i, s.prompt, n_vocab), seq.clone())?;
    }
    // Prefill: until every sequence has sampled its first token.
    let mut started = 0;
    while started < s.parallel {
        events.clear();
        batch.step(events)?;
        started += events.iter().filter(|e| e.token.is_some()).count();
    }
    let cpu0 = process_cpu_ns();
    let t0 = Instant::now();
    let mut tokens = 0usize;
    for _ in 0..s.n_gen {
        events.clear();
        batch.step(events)?;
        tokens += events.iter().filter(|e| e.token.is_some()).count();
    }
    let dt = t0.elapsed().as_secs_f64().max(1e-9);
    let cpu = process_cpu_ns().zip(cpu0).map(|(a, b)| a.saturating_sub(b));
    // Sequences that are still running (none should be) end here.
    while batch.n_active() > 0 {
        events.clear();
        batch.step(events)?;
    }
    let steps = s.n_gen.max(1) as f64;
    Ok(Round {
        tok_s: tokens as f64 / dt,
        step_ms: dt * 1e3 / steps,
        step_cpu_ms: cpu.map(|ns| ns as f64 / 1e6 / steps),
    })
}

/// Milliseconds per token of one `eval` of `n` tokens on an empty context.
fn pp_ms(ctx: &mut Context, n: usize, n_vocab: usize) -> phi::Result<f64> {
    let tokens = prompt_of(1000, n, n_vocab);
    ctx.reset();
    let t0 = Instant::now();
    ctx.eval(&tokens, false)?;
    Ok(t0.elapsed().as_secs_f64() * 1e3 / n as f64)
}

/// Everything measured for one `C`.
pub struct Measured {
    pub decode: Stats,
    pub runs: Vec<f64>,
    pub step_ms: Stats,
    pub step_cpu_ms: Option<Stats>,
    pub pp_ms: Stats,
}

/// Measures one `C`: a warm-up round, then `reps` rounds, each followed by
/// one `ppC` eval.
pub fn measure(s: &Setup<'_>, reps: usize) -> phi::Result<Measured> {
    let mut params = BatchParams {
        n_seq: s.parallel,
        n_ctx: (s.prompt + s.n_gen + 2).next_multiple_of(64),
        prefill_chunk: 256,
        n_threads: s.threads,
        sliding_window: false,
        ..BatchParams::default()
    };
    if let Some(kv) = s.kv_type {
        params.kv_type = kv;
    }
    if let Some(m) = s.max_memory {
        params.max_memory = m;
    }
    let mut batch = Batch::new(Arc::clone(s.model), &params)?;
    let mut cparams = ContextParams {
        n_ctx: s.parallel.next_multiple_of(64),
        n_batch: s.parallel,
        n_threads: s.threads,
        n_threads_batch: s.threads,
        sliding_window: false,
        kv_type: params.kv_type,
        ..ContextParams::default()
    };
    if let Some(m) = s.max_memory {
        cparams.max_memory = m;
    }
    let mut ctx = Context::new(Arc::clone(s.model), &cparams)?;
    let n_vocab = s.model.config().n_vocab;
    let mut events = Vec::new();
    round(&mut batch, s, &mut events)?; // warm-up
    pp_ms(&mut ctx, s.parallel, n_vocab)?;
    let (mut runs, mut step, mut cpu, mut pp) = (vec![], vec![], vec![], vec![]);
    for _ in 0..reps {
        let r = round(&mut batch, s, &mut events)?;
        runs.push(r.tok_s);
        step.push(r.step_ms);
        cpu.extend(r.step_cpu_ms);
        pp.push(pp_ms(&mut ctx, s.parallel, n_vocab)?);
    }
    Ok(Measured {
        decode: stats(&runs),
        runs,
        step_ms: stats(&step),
        step_cpu_ms: (cpu.len() == reps).then(|| stats(&cpu)),
        pp_ms: stats(&pp),
    })
}

/// Options of `phi bench --parallel` beyond the model and threads.
pub struct Options<'a> {
    pub parallel: &'a [usize],
    pub prompt: usize,
    pub n_gen: usize,
    pub reps: usize,
    pub json: bool,
    pub kv_type: Option<phi::KvType>,
    pub max_memory: Option<usize>,
    /// How the table names the model, its type and ISA.
    pub name: &'a str,
    pub ty: &'a str,
}

/// `phi bench --parallel`: every thread count × every `C`.
pub fn run(model: &Arc<Model>, threads: &[usize], o: &Options<'_>) -> crate::CliResult {
    if o.parallel.contains(&0) {
        return Err("--parallel counts must be at least 1".into());
    }
    if o.n_gen == 0 || o.prompt == 0 {
        return Err("--parallel needs -n and --parallel-prompt above 0".into());
    }
    let isa = phi_kernels::dispatch::active().name();
    if !o.json {
        println!(
            "batched decode: {} | type {} | ISA {isa} | prompt {} + {} decode steps per round, best-of and range over {} rounds\n",
            o.name, o.ty, o.prompt, o.n_gen, o.reps
        );
        println!("| threads | C | decode t/s (median, min–max) | × C=1 | ms/step | CPU ms/step | ppC ms/token |");
        println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    }
    for &nt in threads {
        let mut base: Option<f64> = None;
        for &c in o.parallel {
            let setup = Setup {
                model,
                threads: nt,
                parallel: c,
                prompt: o.prompt,
                n_gen: o.n_gen,
                kv_type: o.kv_type,
                max_memory: o.max_memory,
            };
            let m = measure(&setup, o.reps)?;
            if c == 1 {
                base = Some(m.decode.median);
            }
            let ratio = base.map(|b| m.decode.median / b);
            if o.json {
                let line = json!({
                    "test": format!("batch{c}"),
                    "parallel": c,
                    "threads": nt,
                    "n_gen": o.n_gen,
                    "prompt": o.prompt,
                    "tokens_per_s": m.decode.median,
                    "min": m.decode.min,
                    "max": m.decode.max,
                    "runs": m.runs,
                    "vs_c1": ratio,
                    "step_ms": m.step_ms.median,
                    "step_cpu_ms": m.step_cpu_ms.as_ref().map(|s| s.median),
                    "pp_ms_per_token": m.pp_ms.median,
                    "model": o.name,
                    "type": o.ty,
                    "isa": isa,
                });
                println!("{line}");
            } else {
                println!(
                    "| {nt} | {c} | {:.2} ({:.2}–{:.2}) | {} | {:.1} | {} | {:.1} |",
                    m.decode.median,
                    m.decode.min,
                    m.decode.max,
                    ratio.map_or("–".into(), |r| format!("{r:.2}")),
                    m.step_ms.median,
                    m.step_cpu_ms
                        .as_ref()
                        .map_or("–".into(), |s| format!("{:.1}", s.median)),
                    m.pp_ms.median
                );
            }
        }
    }
    Ok(())
}
