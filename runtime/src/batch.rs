//! Continuous batching: several sequences advanced together, one forward pass
//! per step.
//!
//! A [`Batch`] owns `n_seq` slots. Each slot has its own block of `n_ctx` KV
//! cells; a sequence admitted into a slot has its own prompt, position,
//! [`Sampler`] and stop state. [`Batch::step`] gathers the next token of every
//! decoding sequence plus up to `prefill_chunk` tokens of waiting prompts and
//! runs them through the decoder in **one** pass: every weight matrix is read
//! once per step (one gemm over all the step's tokens), while attention runs
//! per token over its own sequence's cells. Sequences join ([`Batch::submit`])
//! and leave ([`Batch::cancel`], or when they finish) between steps, so a long
//! prompt is fed in chunks and never stalls the streams already decoding.
//!
//! **Prefix reuse.** A finished sequence leaves its tokens in its slot's cells.
//! A new sequence goes to the free slot whose cached tokens share the longest
//! prefix with its prompt and evaluates only the rest ([`Admitted::cached_tokens`]).
//!
//! **Determinism.** The per-token arithmetic is the same as [`Context`](crate::Context)'s: the
//! same layer code, attention over the sequence's own cells only,
//! and the kernels' gemm gives each token the bit-identical result of a gemv
//! of that token (`kernels/README.md`, batch invariance). So a sequence's
//! greedy (or fixed-seed) output does not depend on what else is in the batch
//! or how its prompt was chunked (`runtime/tests/batch.rs`).
//!
//! ```
//! # use std::sync::Arc;
//! use phi::batch::{Batch, BatchParams, SeqParams};
//! use phi::{Model, SamplerParams};
//! # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/models/phi3-tiny-q4_0.gguf");
//! let model = Arc::new(Model::load(path)?);
//! let params = BatchParams { n_seq: 2, n_ctx: 128, ..Default::default() };
//! let mut batch = Batch::new(Arc::clone(&model), &params)?;
//! let seq = SeqParams { sampler: SamplerParams::greedy(), max_tokens: 8, ..Default::default() };
//! let a = batch.submit(vec![1, 391, 464], seq.clone())?.id;
//! let b = batch.submit(vec![1, 269, 100, 200], seq)?.id;
//! let mut events = Vec::new();
//! let mut text_a = Vec::new();
//! while batch.n_active() > 0 {
//!     events.clear();
//!     batch.step(&mut events)?; // one pass: both sequences advance
//!     text_a.extend(events.iter().filter(|e| e.id == a).filter_map(|e| e.token));
//! }
//! assert!(!text_a.is_empty() && text_a.len() <= 8);
//! # let _ = b;
//! # Ok::<(), phi::PhiError>(())
//! ```

use crate::constraint::{lock as lock_constraint, Constraint, MaskThread, SharedConstraint};
use crate::context::{
    alloc_kv, default_threads, memory_needed, rotary_inv_freq, Buffers, KvType, LayerKv, Pass, Run,
};
use crate::error::{PhiError, Result};
use crate::model::Model;
use crate::sampler::{Sampler, SamplerParams};
use phi_kernels::Scratch;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a [`Batch`] is set up.
#[derive(Debug, Clone)]
pub struct BatchParams {
    /// Sequences that can run at once (slots).
    pub n_seq: usize,
    /// Tokens each sequence can hold; 0 = the model's training context,
    /// capped at 4096. The KV cache holds `n_seq × n_ctx` cells.
    pub n_ctx: usize,
    /// Most prompt tokens fed per step (over all waiting prompts).
    pub prefill_chunk: usize,
    /// Worker threads; 0 = one per physical core.
    pub n_threads: usize,
    pub kv_type: KvType,
    /// Apply the model's declared sliding attention window.
    pub sliding_window: bool,
    /// Refuse to allocate more than this many bytes for the KV cache and
    /// buffers (0 = what the system reports as available).
    pub max_memory: usize,
}

impl Default for BatchParams {
    fn default() -> Self {
        BatchParams {
            n_seq: 4,
            n_ctx: 0,
            prefill_chunk: 256,
            n_threads: 0,
            kv_type: KvType::F16,
            sliding_window: true,
            max_memory: 0,
        }
    }
}

/// How one sequence is generated.
#[derive(Debug, Clone)]
pub struct SeqParams {
    pub sampler: SamplerParams,
    /// Most tokens to generate (at least 1).
    pub max_tokens: usize,
    /// Mask out end-of-generation tokens instead of stopping on them.
    pub ignore_eos: bool,
    /// OpenAI's penalties over the generated tokens: each logit is lowered by
    /// `frequency_penalty × count + presence_penalty × (count > 0)`.
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// `Some(n)`: report each generated token's log-probability and the `n`
    /// most likely alternatives (from the raw logits).
    pub top_logprobs: Option<usize>,
}

impl Default for SeqParams {
    fn default() -> Self {
        SeqParams {
            sampler: SamplerParams::default(),
            max_tokens: 16,
            ignore_eos: false,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            top_logprobs: None,
        }
    }
}

/// A sequence's handle; never reused within one [`Batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeqId(pub u64);

/// What [`Batch::submit`] did with a request.
#[derive(Debug, Clone, Copy)]
pub struct Admitted {
    pub id: SeqId,
    /// Leading prompt tokens already in the slot's cells (not evaluated again).
    pub cached_tokens: usize,
}

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The model produced an end-of-generation token (not reported as a token).
    Stop,
    /// `max_tokens` were generated.
    Length,
    /// The sequence's cells are full.
    ContextFull,
    /// The sequence's [`Constraint`] failed (no token can continue it); the
    /// output so far is not a complete match.
    ConstraintError,
}

/// Log-probabilities of one generated token.
#[derive(Debug, Clone)]
pub struct TokenLogprobs {
    pub logprob: f32,
    /// The most likely tokens and their log-probabilities, best first.
    pub top: Vec<(u32, f32)>,
}

/// What one step did for one sequence.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: SeqId,
    /// The token generated this step, if any.
    pub token: Option<u32>,
    pub logprobs: Option<TokenLogprobs>,
    /// Set on the sequence's last event; its slot is free afterwards.
    pub finish: Option<Finish>,
}

impl Event {
    /// A sequence's last event without a token.
    fn end(id: SeqId, finish: Finish) -> Event {
        Event {
            id,
            token: None,
            logprobs: None,
            finish: Some(finish),
        }
    }
}

struct Seq {
    id: SeqId,
    prompt: Vec<u32>,
    params: SeqParams,
    sampler: Sampler,
    /// The sampled token not yet evaluated (decoding), or None (prefilling).
    pending: Option<u32>,
    generated: Vec<u32>,
    /// Structured output: the mask for every sampled token (shared with
    /// the mask thread while the forward pass runs).
    constraint: Option<SharedConstraint>,
}

struct Slot {
    /// Exactly the tokens whose keys and values are in this slot's cells.
    cached: Vec<u32>,
    seq: Option<Seq>,
    /// Step counter of the last admission, to reuse the least recent slot.
    last_used: u64,
}

/// Several sequences decoded together; see the [module docs](self).
pub struct Batch {
    model: Arc<Model>,
    n_ctx: usize,
    prefill_chunk: usize,
    window: usize,
    slots: Vec<Slot>,
    kv: Vec<LayerKv>,
    buf: Buffers,
    inv_freq: Vec<f64>,
    scratch: Scratch,
    pool: rayon::ThreadPool,
    logits: Vec<f32>,
    next_id: u64,
    clock: u64,
    eog: Vec<u32>,
    // Per-step lists, kept to avoid allocating in steady state.
    tokens: Vec<u32>,
    runs: Vec<Run>,
    run_slot: Vec<usize>,
    out_rows: Vec<usize>,
    out_slot: Vec<usize>,
    counts: Vec<u32>,
    raw: Vec<f32>,
    /// Computes constrained sequences' masks during the forward pass.
    masks: MaskThread,
}

impl Batch {
    /// Allocates `n_seq × n_ctx` KV cells and buffers for steps of up to
    /// `prefill_chunk + n_seq` tokens, after checking them against the memory limit.
    pub fn new(model: Arc<Model>, params: &BatchParams) -> Result<Batch> {
        let c = &model.config;
        if params.n_seq == 0 || params.prefill_chunk == 0 {
            return Err(PhiError::InvalidArgument(
                "a batch needs at least one sequence and a prefill chunk of at least 1".into(),
            ));
        }
        let n_ctx = if params.n_ctx == 0 {
            c.n_ctx_train.min(4096)
        } else {
            params.n_ctx
        };
        let step_tokens = params
            .prefill_chunk
            .checked_add(params.n_seq)
            .ok_or_else(|| PhiError::InvalidArgument("prefill chunk too large".into()))?;
        let n_cells = n_ctx.checked_mul(params.n_seq).ok_or_else(|| {
            PhiError::InvalidArgument(format!("{} × {n_ctx} cells is too large", params.n_seq))
        })?;
        let kv = alloc_kv(c, params.kv_type, n_cells, step_tokens, params.max_memory)?;
        let n_threads = if params.n_threads == 0 {
            default_threads()
        } else {
            params.n_threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n_threads)
            .build()
            .map_err(|e| PhiError::ThreadPool(e.to_string()))?;
        let slots = (0..params.n_seq)
            .map(|_| Slot {
                cached: Vec::with_capacity(n_ctx),
                seq: None,
                last_used: 0,
            })
            .collect();
        Ok(Batch {
            buf: Buffers::new(&model, step_tokens, n_ctx),
            inv_freq: rotary_inv_freq(&model, n_ctx),
            logits: vec![0.0; params.n_seq * c.n_vocab],
            window: if params.sliding_window {
                c.sliding_window
            } else {
                0
            },
            eog: model.tokenizer().eog_ids().collect(),
            n_ctx,
            prefill_chunk: params.prefill_chunk,
            slots,
            kv,
            scratch: Scratch::default(),
            pool,
            next_id: 0,
            clock: 0,
            tokens: Vec::with_capacity(step_tokens),
            runs: Vec::with_capacity(2 * params.n_seq),
            run_slot: Vec::with_capacity(2 * params.n_seq),
            out_rows: Vec::with_capacity(params.n_seq),
            out_slot: Vec::with_capacity(params.n_seq),
            counts: Vec::new(),
            raw: Vec::new(),
            masks: MaskThread::new(true),
            model,
        })
    }

    /// Bytes a batch of `n_seq` sequences of `n_ctx` tokens needs for its KV
    /// cache and buffers (an upper bound), or None on overflow.
    pub fn memory_needed(model: &Model, params: &BatchParams) -> Option<usize> {
        let c = &model.config;
        let n_ctx = if params.n_ctx == 0 {
            c.n_ctx_train.min(4096)
        } else {
            params.n_ctx
        };
        let cells = n_ctx.checked_mul(params.n_seq)?;
        memory_needed(
            c,
            cells,
            params.prefill_chunk.checked_add(params.n_seq)?,
            params.kv_type,
        )
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }
    /// Tokens each sequence can hold.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }
    /// Slots (sequences that can run at once).
    pub fn n_seq(&self) -> usize {
        self.slots.len()
    }
    /// Sequences admitted and not finished.
    pub fn n_active(&self) -> usize {
        self.slots.iter().filter(|s| s.seq.is_some()).count()
    }
    /// Whether [`submit`](Self::submit) has a slot for another sequence.
    pub fn has_free_slot(&self) -> bool {
        self.slots.iter().any(|s| s.seq.is_none())
    }
    /// KV cells holding tokens (of running sequences and cached prefixes).
    pub fn cells_used(&self) -> usize {
        self.slots.iter().map(|s| s.cached.len()).sum()
    }

    /// Whether constrained sequences' masks are computed on a thread of
    /// their own during the forward pass (the default) or in line after it.
    /// Either way the masks, and so the tokens, are the same.
    pub fn set_mask_overlap(&mut self, on: bool) {
        self.masks.set_enabled(on);
    }
    pub fn mask_overlap(&self) -> bool {
        self.masks.enabled()
    }
    /// Time steps have spent on constraint masks after their forward pass
    /// (computing them in line, or waiting for the mask thread): the cost
    /// of structured output on the critical path.
    pub fn mask_critical_time(&self) -> Duration {
        self.masks.critical()
    }

    /// Admits a sequence into the free slot that already holds the longest
    /// prefix of `prompt` (else the least recently used one). Fails when no
    /// slot is free, the prompt is empty, holds a token outside the
    /// vocabulary or leaves no room in `n_ctx` for a generated token, or
    /// `max_tokens` is 0.
    pub fn submit(&mut self, prompt: Vec<u32>, params: SeqParams) -> Result<Admitted> {
        self.submit_constrained(prompt, params, None)
    }

    /// [`submit`](Self::submit) with structured output: every token of the
    /// sequence is sampled from logits masked by `constraint` and committed
    /// to it (as [`generate_constrained`](crate::generate::generate_constrained)
    /// does). End-of-generation is allowed only when the output is a complete
    /// match (`ignore_eos` has no effect: the constraint decides); the
    /// sequence ends with [`Finish::Stop`] once the constraint is finished,
    /// with [`Finish::Length`] at `max_tokens` even when the output is not yet
    /// complete, and with [`Finish::ConstraintError`] if no token can continue
    /// it. Build the constraint before (it compiles a grammar; the first
    /// mask is already computed), not on the thread that steps the batch.
    /// Each later mask is computed during the forward pass that evaluates
    /// the token before it (see [`set_mask_overlap`](Self::set_mask_overlap)).
    pub fn submit_constrained(
        &mut self,
        prompt: Vec<u32>,
        params: SeqParams,
        constraint: Option<Constraint>,
    ) -> Result<Admitted> {
        let n_vocab = self.model.config.n_vocab;
        if prompt.is_empty() {
            return Err(PhiError::InvalidArgument("the prompt has no tokens".into()));
        }
        if params.max_tokens == 0 {
            return Err(PhiError::InvalidArgument(
                "max_tokens must be at least 1".into(),
            ));
        }
        if let Some(c) = &constraint {
            if c.vocab().n_vocab() != n_vocab {
                return Err(PhiError::InvalidArgument(format!(
                    "the constraint masks {} logits, the model has {n_vocab}",
                    c.vocab().n_vocab()
                )));
            }
        }
        if let Some(&id) = prompt.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(PhiError::BadToken { id, n_vocab });
        }
        if prompt.len() >= self.n_ctx {
            return Err(PhiError::ContextFull {
                n_ctx: self.n_ctx,
                needed: prompt.len() + 1,
            });
        }
        // At least the prompt's last token is evaluated, for its logits.
        let reusable = |s: &Slot| {
            let common = s
                .cached
                .iter()
                .zip(&prompt)
                .take_while(|(a, b)| a == b)
                .count();
            common.min(prompt.len() - 1)
        };
        let best = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.seq.is_none())
            .max_by_key(|(_, s)| (reusable(s), std::cmp::Reverse(s.last_used)))
            .map(|(i, _)| i)
            .ok_or_else(|| PhiError::InvalidArgument("every sequence slot is busy".into()))?;
        let cached_tokens = reusable(&self.slots[best]);
        let id = SeqId(self.next_id);
        self.next_id += 1;
        self.clock += 1;
        let mut sampler = Sampler::new(params.sampler.clone());
        for &t in &prompt {
            sampler.accept(t);
        }
        let slot = &mut self.slots[best];
        slot.cached.truncate(cached_tokens);
        slot.last_used = self.clock;
        slot.seq = Some(Seq {
            id,
            generated: Vec::with_capacity(params.max_tokens.min(self.n_ctx)),
            prompt,
            params,
            sampler,
            pending: None,
            constraint: constraint.map(|c| Arc::new(Mutex::new(c))),
        });
        Ok(Admitted { id, cached_tokens })
    }

    /// Ends a sequence now (between steps); its cells stay reusable as a
    /// prefix. False when no running sequence has this id.
    pub fn cancel(&mut self, id: SeqId) -> bool {
        for s in &mut self.slots {
            if s.seq.as_ref().is_some_and(|q| q.id == id) {
                s.seq = None;
                return true;
            }
        }
        false
    }

    /// One forward pass: the pending token of every decoding sequence and up
    /// to `prefill_chunk` tokens of prompts still being fed. Appends an
    /// [`Event`] for every sequence that generated a token or finished.
    /// Returns false (and does nothing) when no sequence is active.
    pub fn step(&mut self, events: &mut Vec<Event>) -> Result<bool> {
        let n_ctx = self.n_ctx;
        self.tokens.clear();
        self.runs.clear();
        self.run_slot.clear();
        self.out_rows.clear();
        self.out_slot.clear();
        // Decoding sequences first: one token each.
        for (si, slot) in self.slots.iter_mut().enumerate() {
            let Some(seq) = slot.seq.as_mut() else {
                continue;
            };
            let Some(tok) = seq.pending else { continue };
            if slot.cached.len() >= n_ctx {
                events.push(Event::end(seq.id, Finish::ContextFull));
                slot.seq = None;
                continue;
            }
            self.runs.push(Run {
                cell0: si * n_ctx,
                pos0: slot.cached.len(),
                len: 1,
            });
            self.run_slot.push(si);
            self.tokens.push(tok);
            self.out_rows.push(self.tokens.len() - 1);
            self.out_slot.push(si);
        }
        // Then prompt chunks, oldest request first, within the budget.
        let mut budget = self.prefill_chunk;
        while budget > 0 {
            let next = self
                .slots
                .iter()
                .enumerate()
                .filter(|(si, s)| {
                    !self.run_slot.contains(si)
                        && s.seq
                            .as_ref()
                            .is_some_and(|q| q.pending.is_none() && s.cached.len() < q.prompt.len())
                })
                .min_by_key(|(_, s)| s.seq.as_ref().map(|q| q.id));
            let Some((si, slot)) = next else { break };
            let Some(seq) = slot.seq.as_ref() else { break };
            let fed = slot.cached.len();
            let take = budget.min(seq.prompt.len() - fed);
            self.runs.push(Run {
                cell0: si * n_ctx,
                pos0: fed,
                len: take,
            });
            self.run_slot.push(si);
            self.tokens.extend_from_slice(&seq.prompt[fed..fed + take]);
            if fed + take == seq.prompt.len() {
                self.out_rows.push(self.tokens.len() - 1);
                self.out_slot.push(si);
            }
            budget -= take;
        }
        if self.tokens.is_empty() {
            return Ok(!events.is_empty() || self.n_active() > 0);
        }

        let model = Arc::clone(&self.model);
        let mut pass = Pass {
            model: &model,
            kv: &mut self.kv,
            buf: &mut self.buf,
            scratch: &mut self.scratch,
            inv_freq: &self.inv_freq,
            window: self.window,
            n_ctx,
            layer_times: None,
        };
        let (tokens, runs, out_rows, logits) =
            (&self.tokens, &self.runs, &self.out_rows, &mut self.logits);
        // Structured output: each decoding sequence's mask depends only on
        // the token it sampled last step, so it is computed while the pass
        // runs, off the critical path (same masks as in line).
        self.masks.start(
            self.slots
                .iter()
                .filter_map(|s| s.seq.as_ref())
                .filter(|q| q.pending.is_some())
                .filter_map(|q| q.constraint.as_ref()),
        );
        let pass = self.pool.install(|| -> Result<()> {
            pass.layers(tokens, runs)?;
            pass.logits(out_rows.iter().copied(), logits)
        });
        self.masks.wait();
        pass?;

        // The evaluated tokens are now in their slots' cells.
        let mut t0 = 0;
        for (r, &si) in self.runs.iter().zip(&self.run_slot) {
            self.slots[si]
                .cached
                .extend_from_slice(&self.tokens[t0..t0 + r.len]);
            t0 += r.len;
        }

        let nv = model.config.n_vocab;
        for (i, &si) in self.out_slot.iter().enumerate() {
            let slot = &mut self.slots[si];
            let Some(seq) = slot.seq.as_mut() else {
                continue;
            };
            let row = &mut self.logits[i * nv..(i + 1) * nv];
            // Log-probabilities come from the model's distribution, before
            // masks and penalties change the row.
            let logprobs = seq.params.top_logprobs.map(|n| {
                self.raw.clear();
                self.raw.extend_from_slice(row);
                TokenLogprobs {
                    logprob: 0.0,
                    top: top_logprobs(row, n),
                }
            });
            if seq.params.ignore_eos && seq.constraint.is_none() {
                for &t in &self.eog {
                    if let Some(v) = row.get_mut(t as usize) {
                        *v = f32::NEG_INFINITY;
                    }
                }
            }
            apply_penalties(row, seq, &mut self.counts);
            // `finished`: the constraint admits nothing but end-of-generation.
            let (next, finished) = match &seq.constraint {
                None => (seq.sampler.sample(row), false),
                Some(c) => {
                    let sampled = {
                        let mut c = lock_constraint(c);
                        // Known already unless the mask thread is off.
                        let t = Instant::now();
                        let mask = c.compute_mask();
                        self.masks.add_critical(t.elapsed());
                        // The mask, then the token; in place, no allocation.
                        mask.and_then(|()| c.apply(row)).and_then(|()| {
                            let t = seq.sampler.sample(row);
                            c.commit(t).map(|()| (t, c.is_finished()))
                        })
                    };
                    match sampled {
                        Ok(t) => t,
                        Err(_) => {
                            events.push(Event::end(seq.id, Finish::ConstraintError));
                            slot.seq = None;
                            continue;
                        }
                    }
                }
            };
            let logprobs = logprobs.map(|mut lp| {
                lp.logprob = logprob_of(&self.raw, next);
                lp
            });
            seq.generated.push(next);
            let eog_stops = !seq.params.ignore_eos || seq.constraint.is_some();
            let finish = if model.tokenizer().is_eog(next) && eog_stops {
                events.push(Event::end(seq.id, Finish::Stop));
                slot.seq = None;
                continue;
            } else if finished {
                // Nothing but end-of-generation can follow.
                Some(Finish::Stop)
            } else if seq.generated.len() >= seq.params.max_tokens {
                Some(Finish::Length)
            } else {
                None
            };
            seq.sampler.accept(next);
            seq.pending = Some(next);
            events.push(Event {
                id: seq.id,
                token: Some(next),
                logprobs,
                finish,
            });
            if finish.is_some() {
                slot.seq = None;
            }
        }
        Ok(true)
    }
}

/// Lowers the logits of generated tokens by OpenAI's presence and frequency
/// penalties (`counts` is scratch space).
fn apply_penalties(row: &mut [f32], seq: &Seq, counts: &mut Vec<u32>) {
    let (pp, fp) = (seq.params.presence_penalty, seq.params.frequency_penalty);
    if pp == 0.0 && fp == 0.0 {
        return;
    }
    counts.clear();
    counts.extend_from_slice(&seq.generated);
    counts.sort_unstable();
    for run in counts.chunk_by(|a, b| a == b) {
        if let Some(v) = row.get_mut(run[0] as usize) {
            *v -= fp * run.len() as f32 + pp;
        }
    }
}

/// log Σ exp(row), in f64.
fn log_sum_exp(row: &[f32]) -> f64 {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    row.iter()
        .map(|&v| ((v - max) as f64).exp())
        .sum::<f64>()
        .ln()
        + max as f64
}

/// log(softmax(row))[token].
fn logprob_of(row: &[f32], token: u32) -> f32 {
    (row[token as usize] as f64 - log_sum_exp(row)) as f32
}

/// The `n` largest entries of log(softmax(row)), best first (lowest id on ties).
fn top_logprobs(row: &[f32], n: usize) -> Vec<(u32, f32)> {
    let lse = log_sum_exp(row);
    let mut top: Vec<(u32, f32)> = Vec::with_capacity(n + 1);
    for (i, &v) in row.iter().enumerate() {
        if top.len() == n && top.last().is_none_or(|&(_, w)| v <= w) {
            continue;
        }
        let at = top.partition_point(|&(_, w)| w >= v);
        top.insert(at, (i as u32, v));
        top.truncate(n);
    }
    top.into_iter()
        .map(|(i, v)| (i, (v as f64 - lse) as f32))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::top_logprobs;

    #[test]
    fn top_logprobs_are_sorted_and_normalised() {
        let row = [0.0f32, 2.0, 1.0, 2.0, -1.0];
        let top = top_logprobs(&row, 3);
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 3, 2]);
        let total: f64 = row.iter().map(|&v| (v as f64).exp()).sum();
        assert!((top[0].1 as f64 - (2.0 - total.ln())).abs() < 1e-6);
        assert!(top_logprobs(&row, 0).is_empty());
    }
}
