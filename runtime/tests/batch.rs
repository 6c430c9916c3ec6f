//! The batch engine against the single-sequence path: a sequence's tokens do
//! not depend on what else runs in the batch, how its prompt is chunked, when
//! it joins, or whether its prefix came from the cache.

use phi::batch::{Batch, BatchParams, Event, Finish, SeqId, SeqParams};
use phi::constraint::{Constraint, ConstraintSpec, ConstraintVocab};
use phi::synthetic::{self, SyntheticSpec};
use phi::{
    generate, generate_constrained, Context, ContextParams, Model, PhiError, Sampler,
    SamplerParams, StopReason,
};
use phi_gguf::{GgmlType, Gguf};
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

const N_CTX: usize = 96;

fn model(name: &str) -> Arc<Model> {
    let path = format!(
        "{}/../tests/fixtures/models/{name}.gguf",
        env!("CARGO_MANIFEST_DIR")
    );
    Arc::new(Model::load(path).unwrap())
}

/// Eight different prompts of different lengths (BOS first).
fn prompts(n_vocab: usize) -> Vec<Vec<u32>> {
    (0..8u32)
        .map(|i| {
            let len = 3 + (i as usize * 5) % 17;
            std::iter::once(1)
                .chain((0..len as u32).map(|j| (7 + i * 31 + j * 13) % n_vocab as u32))
                .collect()
        })
        .collect()
}

fn fresh_context(model: &Arc<Model>) -> Context {
    let params = ContextParams {
        n_ctx: N_CTX,
        n_threads: 2,
        ..Default::default()
    };
    Context::new(Arc::clone(model), &params).unwrap()
}

/// What `generate` gives the prompt alone in a fresh context.
fn solo(model: &Arc<Model>, prompt: &[u32], sp: &SamplerParams, max: usize) -> Vec<u32> {
    let mut ctx = fresh_context(model);
    let mut sampler = Sampler::new(sp.clone());
    let mut out = Vec::new();
    let tok = model.tokenizer();
    generate(
        &mut ctx,
        &mut sampler,
        prompt,
        max,
        |t| tok.is_eog(t),
        |t| {
            out.push(t);
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    out
}

fn batch(model: &Arc<Model>, n_seq: usize, chunk: usize) -> Batch {
    let params = BatchParams {
        n_seq,
        n_ctx: N_CTX,
        prefill_chunk: chunk,
        n_threads: 2,
        ..Default::default()
    };
    Batch::new(Arc::clone(model), &params).unwrap()
}

fn seq(sp: &SamplerParams, max: usize) -> SeqParams {
    SeqParams {
        sampler: sp.clone(),
        max_tokens: max,
        ..Default::default()
    }
}

/// Steps until no sequence is active, collecting every sequence's tokens.
fn drain(b: &mut Batch, out: &mut HashMap<SeqId, Vec<u32>>) -> HashMap<SeqId, Finish> {
    let mut events = Vec::new();
    let mut finished = HashMap::new();
    let mut steps = 0;
    while b.n_active() > 0 {
        events.clear();
        b.step(&mut events).unwrap();
        record(&events, out, &mut finished);
        steps += 1;
        assert!(steps < 10_000, "the batch does not finish");
    }
    finished
}

fn record(
    events: &[Event],
    out: &mut HashMap<SeqId, Vec<u32>>,
    finished: &mut HashMap<SeqId, Finish>,
) {
    for e in events {
        if let Some(t) = e.token {
            out.entry(e.id).or_default().push(t);
        }
        if let Some(f) = e.finish {
            assert!(finished.insert(e.id, f).is_none(), "finished twice");
        }
    }
}

fn batched_equals_solo(name: &str, sp: SamplerParams) {
    let m = model(name);
    let prompts = prompts(m.config().n_vocab);
    let max = 24;
    let want: Vec<Vec<u32>> = prompts.iter().map(|p| solo(&m, p, &sp, max)).collect();
    // A small chunk forces prompts to be fed over several steps, mixed with decodes.
    let mut b = batch(&m, 8, 7);
    let ids: Vec<SeqId> = prompts
        .iter()
        .map(|p| b.submit(p.clone(), seq(&sp, max)).unwrap().id)
        .collect();
    let mut out = HashMap::new();
    drain(&mut b, &mut out);
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            out.get(id).cloned().unwrap_or_default(),
            want[i],
            "{name}: sequence {i} batched differs from alone"
        );
    }
}

#[test]
fn eight_batched_greedy_sequences_equal_solo_q4_0() {
    batched_equals_solo("phi3-tiny-q4_0", SamplerParams::greedy());
}

#[test]
fn eight_batched_greedy_sequences_equal_solo_other_types() {
    for name in [
        "llama-tiny-q8_0",
        "phi3-gqa-q8_0",
        "phi3-tiny-q4_k_m",
        "phi3-tiny-f16",
        "phi3-hd96-q4_0",
    ] {
        batched_equals_solo(name, SamplerParams::greedy());
    }
}

#[test]
fn eight_batched_seeded_samples_equal_solo() {
    let sp = SamplerParams {
        temperature: 0.9,
        seed: 1234,
        ..Default::default()
    };
    batched_equals_solo("phi3-tiny-q4_0", sp);
}

#[test]
fn join_and_leave_between_steps() {
    let m = model("phi3-tiny-q4_0");
    let sp = SamplerParams::greedy();
    let prompts = prompts(m.config().n_vocab);
    let max = 20;
    let mut b = batch(&m, 3, 64);
    let mut out = HashMap::new();
    let mut finished = HashMap::new();
    let mut events = Vec::new();
    let a = b.submit(prompts[0].clone(), seq(&sp, max)).unwrap().id;
    let victim = b.submit(prompts[1].clone(), seq(&sp, max)).unwrap().id;
    for _ in 0..4 {
        events.clear();
        b.step(&mut events).unwrap();
        record(&events, &mut out, &mut finished);
    }
    // One leaves mid-generation; two join while `a` decodes (one into the freed slot).
    assert!(b.cancel(victim));
    assert!(!b.cancel(victim));
    let c = b.submit(prompts[2].clone(), seq(&sp, max)).unwrap().id;
    let d = b.submit(prompts[3].clone(), seq(&sp, max)).unwrap().id;
    assert!(!b.has_free_slot());
    assert!(matches!(
        b.submit(prompts[4].clone(), seq(&sp, max)),
        Err(PhiError::InvalidArgument(_))
    ));
    let more = drain(&mut b, &mut out);
    finished.extend(more);
    assert!(!finished.contains_key(&victim));
    assert_eq!(out[&victim].len(), 4);
    assert_eq!(out[&victim][..], solo(&m, &prompts[1], &sp, max)[..4]);
    for (id, p) in [(a, &prompts[0]), (c, &prompts[2]), (d, &prompts[3])] {
        assert_eq!(out[&id], solo(&m, p, &sp, max), "{id:?}");
    }
    assert_eq!(b.n_active(), 0);
    assert!(b.has_free_slot());
}

#[test]
fn a_long_prompt_is_chunked_while_others_decode() {
    let m = model("phi3-tiny-q4_0");
    let sp = SamplerParams::greedy();
    let nv = m.config().n_vocab as u32;
    let short = prompts(m.config().n_vocab)[0].clone();
    let long: Vec<u32> = std::iter::once(1)
        .chain((0..70u32).map(|j| (11 + j * 17) % nv))
        .collect();
    let max = 16;
    let mut b = batch(&m, 2, 8);
    let s = b.submit(short.clone(), seq(&sp, max)).unwrap().id;
    // Let the short one start decoding, then the long prompt joins.
    let mut out = HashMap::new();
    let mut finished = HashMap::new();
    let mut events = Vec::new();
    b.step(&mut events).unwrap();
    record(&events, &mut out, &mut finished);
    assert_eq!(out[&s].len(), 1);
    let l = b.submit(long.clone(), seq(&sp, max)).unwrap().id;
    // 71 prompt tokens at 8 per step: 9 steps of prefill, during each of
    // which the short sequence still gets its token.
    for step in 0..9 {
        events.clear();
        b.step(&mut events).unwrap();
        record(&events, &mut out, &mut finished);
        assert_eq!(
            out[&s].len(),
            2 + step,
            "short stream stalled at step {step}"
        );
        assert_eq!(out.get(&l).map_or(0, Vec::len), usize::from(step == 8));
    }
    finished.extend(drain(&mut b, &mut out));
    assert_eq!(out[&s], solo(&m, &short, &sp, max));
    assert_eq!(out[&l], solo(&m, &long, &sp, max));
}

#[test]
fn a_prompt_extending_a_finished_one_reuses_its_cells() {
    let m = model("phi3-tiny-q4_0");
    let sp = SamplerParams::greedy();
    let ps = prompts(m.config().n_vocab);
    let max = 10;
    let mut b = batch(&m, 2, 64);
    let first = b.submit(ps[5].clone(), seq(&sp, max)).unwrap();
    assert_eq!(first.cached_tokens, 0);
    let mut out = HashMap::new();
    drain(&mut b, &mut out);
    let reply = out[&first.id].clone();
    assert_eq!(reply.len(), max);
    // The next turn: the whole history plus new tokens. Every token but the
    // last generated one (sampled, never evaluated) is in the cells.
    let mut turn2 = ps[5].clone();
    turn2.extend_from_slice(&reply);
    turn2.extend_from_slice(&[42, 43, 44]);
    assert!(b.cells_used() >= ps[5].len() + max - 1);
    let second = b.submit(turn2.clone(), seq(&sp, max)).unwrap();
    assert_eq!(second.cached_tokens, ps[5].len() + max - 1);
    drain(&mut b, &mut out);
    assert_eq!(out[&second.id], solo(&m, &turn2, &sp, max));
    // A prompt that is entirely cached still evaluates its last token.
    let third = b.submit(turn2[..5].to_vec(), seq(&sp, 3)).unwrap();
    assert_eq!(third.cached_tokens, 4);
    drain(&mut b, &mut out);
    assert_eq!(out[&third.id], solo(&m, &turn2[..5], &sp, 3));
}

#[test]
fn a_full_context_ends_the_sequence() {
    let m = model("phi3-tiny-q4_0");
    let sp = SamplerParams::greedy();
    let mut b = batch(&m, 1, 256);
    let prompt: Vec<u32> = (0..N_CTX as u32 - 6).map(|i| 1 + i % 200).collect();
    let s = SeqParams {
        ignore_eos: true,
        ..seq(&sp, 1000)
    };
    let id = b.submit(prompt, s).unwrap().id;
    let mut out = HashMap::new();
    let fin = drain(&mut b, &mut out);
    assert_eq!(fin[&id], Finish::ContextFull);
    // Six free cells: the first token needs none, each later one one.
    assert_eq!(out[&id].len(), 7);
}

#[test]
fn bad_requests_are_refused() {
    let m = model("phi3-tiny-q4_0");
    let sp = SamplerParams::greedy();
    let mut b = batch(&m, 1, 16);
    let nv = m.config().n_vocab as u32;
    assert!(b.submit(vec![], seq(&sp, 4)).is_err());
    assert!(matches!(
        b.submit(vec![1, nv], seq(&sp, 4)),
        Err(PhiError::BadToken { .. })
    ));
    assert!(matches!(
        b.submit(vec![1; N_CTX], seq(&sp, 4)),
        Err(PhiError::ContextFull { .. })
    ));
    assert!(b.submit(vec![1, 2], seq(&sp, 0)).is_err());
    assert_eq!(b.n_active(), 0);
    let mut events = Vec::new();
    assert!(!b.step(&mut events).unwrap());
    assert!(events.is_empty());
    let zero = BatchParams {
        n_seq: 0,
        ..Default::default()
    };
    assert!(Batch::new(Arc::clone(&m), &zero).is_err());
    let huge = BatchParams {
        n_seq: 4,
        n_ctx: 1 << 20,
        max_memory: 1 << 20,
        ..Default::default()
    };
    assert!(matches!(
        Batch::new(Arc::clone(&m), &huge),
        Err(PhiError::OutOfMemory { .. })
    ));
}

#[test]
fn logprobs_and_penalties() {
    let m = model("phi3-tiny-q4_0");
    let sp = SamplerParams::greedy();
    let p = prompts(m.config().n_vocab)[2].clone();
    let mut b = batch(&m, 1, 64);
    let s = SeqParams {
        top_logprobs: Some(3),
        ..seq(&sp, 6)
    };
    b.submit(p.clone(), s).unwrap();
    let mut events = Vec::new();
    while b.n_active() > 0 {
        b.step(&mut events).unwrap();
    }
    for e in events.iter().filter(|e| e.token.is_some()) {
        let lp = e.logprobs.as_ref().unwrap();
        assert_eq!(lp.top.len(), 3);
        // Greedy: the chosen token is the most likely one.
        assert_eq!(lp.top[0].0, e.token.unwrap());
        assert_eq!(lp.top[0].1, lp.logprob);
        assert!(lp.logprob <= 0.0 && lp.top[1].1 <= lp.top[0].1);
    }
    // A huge frequency penalty forbids repeating a generated token.
    let s = SeqParams {
        frequency_penalty: 1e6,
        ignore_eos: true,
        ..seq(&sp, 30)
    };
    let id = b.submit(p, s).unwrap().id;
    let mut out = HashMap::new();
    drain(&mut b, &mut out);
    let mut toks = out[&id].clone();
    toks.sort_unstable();
    toks.dedup();
    assert_eq!(toks.len(), 30);
}

/// What `generate_constrained` gives the prompt alone, and how it ended.
fn solo_constrained(
    model: &Arc<Model>,
    prompt: &[u32],
    sp: &SamplerParams,
    max: usize,
    spec: &ConstraintSpec,
) -> (Vec<u32>, Finish, bool) {
    let mut ctx = fresh_context(model);
    let mut sampler = Sampler::new(sp.clone());
    let vocab = ConstraintVocab::for_model(model).unwrap();
    let mut c = Constraint::new(&vocab, spec).unwrap();
    let mut out = Vec::new();
    let tok = model.tokenizer();
    let stats = generate_constrained(
        &mut ctx,
        &mut sampler,
        prompt,
        max,
        |t| tok.is_eog(t),
        Some(&mut c),
        |t| {
            out.push(t);
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    let finish = match stats.stop {
        StopReason::EndOfGeneration => Finish::Stop,
        StopReason::Length => Finish::Length,
        StopReason::Callback => unreachable!("the callback never stops"),
    };
    (out, finish, c.is_accepting())
}

#[test]
fn constrained_sequences_batched_with_free_ones_equal_solo() {
    let m = model("phi3-tiny-q4_0");
    let vocab = ConstraintVocab::for_model(&m).unwrap();
    let prompts = prompts(m.config().n_vocab);
    let tok = m.tokenizer();
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": 0, "maximum": 99},
            "c": {"enum": ["red", "green"]}
        },
        "required": ["n", "c"],
        "additionalProperties": false
    });
    let specs = [
        ConstraintSpec::JsonSchema(schema.clone()),
        ConstraintSpec::Regex("[0-9]{2,4}-[a-z]{1,3}".into()),
        ConstraintSpec::JsonObject,
    ];
    let seeded = SamplerParams {
        temperature: 0.9,
        seed: 77,
        ..Default::default()
    };
    for sp in [SamplerParams::greedy(), seeded] {
        let max = 40;
        let mut b = batch(&m, 6, 9);
        // Free sequences interleaved with constrained ones.
        let mut free = Vec::new();
        let mut constrained = Vec::new();
        for (i, p) in prompts.iter().take(6).enumerate() {
            if i % 2 == 0 {
                free.push((b.submit(p.clone(), seq(&sp, 24)).unwrap().id, i));
            } else {
                let spec = &specs[i / 2];
                let c = Constraint::new(&vocab, spec).unwrap();
                let id = b
                    .submit_constrained(p.clone(), seq(&sp, max), Some(c))
                    .unwrap()
                    .id;
                constrained.push((id, i, spec));
            }
        }
        let mut out = HashMap::new();
        let finished = drain(&mut b, &mut out);
        for &(id, i) in &free {
            assert_eq!(
                out.get(&id).cloned().unwrap_or_default(),
                solo(&m, &prompts[i], &sp, 24),
                "free sequence {i} changed next to constrained ones"
            );
        }
        for &(id, i, spec) in &constrained {
            let (want, want_finish, accepting) = solo_constrained(&m, &prompts[i], &sp, max, spec);
            let got = out.get(&id).cloned().unwrap_or_default();
            assert_eq!(
                got, want,
                "{spec:?}: batched differs from generate_constrained"
            );
            assert_eq!(finished[&id], want_finish, "{spec:?}: finish reason");
            let bytes: Vec<u8> = got
                .iter()
                .flat_map(|&t| tok.token_to_piece(t, false))
                .collect();
            let text = String::from_utf8_lossy(&bytes);
            // Stop means a complete match; length means it may be cut short.
            if finished[&id] == Finish::Stop {
                assert!(
                    accepting,
                    "{spec:?}: stopped before the output was complete"
                );
                match spec {
                    ConstraintSpec::Regex(_) => {
                        let (num, word) = text.split_once('-').unwrap();
                        assert!((2..=4).contains(&num.len()), "{text}");
                        assert!(num.bytes().all(|c| c.is_ascii_digit()), "{text}");
                        assert!((1..=3).contains(&word.len()), "{text}");
                    }
                    _ => {
                        let v: serde_json::Value =
                            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
                        assert!(v.is_object(), "{text}");
                        if let ConstraintSpec::JsonSchema(_) = spec {
                            assert!(v["n"].as_u64().is_some_and(|n| n <= 99), "{text}");
                            assert!(["red", "green"].contains(&v["c"].as_str().unwrap()));
                        }
                    }
                }
            } else {
                assert_eq!(finished[&id], Finish::Length, "{spec:?}");
                assert_eq!(got.len(), max);
            }
        }
    }
}

/// A tiny random-weight Phi-3 with the tokenizer of a real vocabulary
/// (`tests/fixtures/vocab/NAME`): the fixture models' own has 512 tokens.
fn model_with_vocab(name: &str) -> Arc<Model> {
    let dir = format!("{}/../tests/fixtures/vocab", env!("CARGO_MANIFEST_DIR"));
    let vocab = Gguf::open(format!("{dir}/{name}")).unwrap();
    let spec = SyntheticSpec {
        n_vocab: vocab.get_array("tokenizer.ggml.tokens").unwrap().len(),
        weight_type: GgmlType::Q8_0,
        ..SyntheticSpec::tiny_phi3()
    };
    let weights = Gguf::from_bytes(synthetic::build(&spec).unwrap()).unwrap();
    let mut bytes = Vec::new();
    synthetic::write_with_vocab(&weights, &vocab, &mut bytes).unwrap();
    Arc::new(Model::from_gguf(Gguf::from_bytes(bytes).unwrap()).unwrap())
}

/// Runs four constrained sequences (JSON Schema, regex, JSON object, Lark)
/// and two free ones, joining at different steps, with the mask thread on
/// or off; returns each submission's tokens and finish.
fn mixed_run(m: &Arc<Model>, sp: &SamplerParams, overlap: bool) -> Vec<(Vec<u32>, Finish)> {
    let vocab = ConstraintVocab::for_model(m).unwrap();
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "id": {"type": "integer", "minimum": 0, "maximum": 999},
            "tags": {"type": "array", "items": {"enum": ["a", "bc"]}, "maxItems": 3}
        },
        "required": ["id", "tags"],
        "additionalProperties": false
    });
    let specs = [
        Some(ConstraintSpec::JsonSchema(schema)),
        None,
        Some(ConstraintSpec::Regex("[a-z]{2,6}( [0-9]{1,3}){1,4}".into())),
        Some(ConstraintSpec::JsonObject),
        None,
        Some(ConstraintSpec::Lark(
            r#"start: "x=" /[0-9]{1,4}/ ("," /[a-z]+/)*"#.into(),
        )),
    ];
    let prompts = prompts(m.config().n_vocab);
    let mut b = batch(m, 4, 7);
    b.set_mask_overlap(overlap);
    assert_eq!(b.mask_overlap(), overlap);
    let mut ids = Vec::new();
    let mut out = HashMap::new();
    let mut finished = HashMap::new();
    let mut events = Vec::new();
    let mut next = 0;
    let mut steps = 0;
    while next < specs.len() || b.n_active() > 0 {
        // Join whenever a slot is free: some join while others decode.
        while next < specs.len() && b.has_free_slot() {
            let c = specs[next]
                .as_ref()
                .map(|s| Constraint::new(&vocab, s).unwrap());
            let a = b
                .submit_constrained(prompts[next].clone(), seq(sp, 48), c)
                .unwrap();
            ids.push(a.id);
            next += 1;
        }
        events.clear();
        b.step(&mut events).unwrap();
        record(&events, &mut out, &mut finished);
        steps += 1;
        assert!(steps < 10_000, "the batch does not finish");
    }
    ids.iter()
        .map(|id| (out.remove(id).unwrap_or_default(), finished[id]))
        .collect()
}

#[test]
fn masks_on_their_own_thread_give_the_same_tokens_as_in_line() {
    let seeded = SamplerParams {
        temperature: 0.8,
        seed: 5,
        ..Default::default()
    };
    for name in ["ggml-vocab-phi-3.gguf", "ggml-vocab-gpt-2.gguf"] {
        let m = model_with_vocab(name);
        for sp in [SamplerParams::greedy(), seeded.clone()] {
            let inline = mixed_run(&m, &sp, false);
            let overlapped = mixed_run(&m, &sp, true);
            assert_eq!(inline, overlapped, "{name}, {sp:?}");
            // The constrained ones produced text, and some finished early.
            assert!(inline.iter().all(|(t, _)| !t.is_empty()), "{name}");
            assert!(
                inline.iter().any(|(_, f)| *f == Finish::Stop),
                "{name}: {inline:?}"
            );
        }
    }
}
