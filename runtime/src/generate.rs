//! The generation loop: prompt processing as one batched pass, then one
//! token at a time through the KV cache, streaming each token to a callback.

use crate::constraint::Constraint;
use crate::context::Context;
use crate::error::{PhiError, Result};
use crate::sampler::Sampler;
use std::ops::ControlFlow;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Mutex, PoisonError};
use std::thread::Scope;
use std::time::{Duration, Instant};

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// `max_tokens` were generated.
    Length,
    /// The model produced an end-of-generation token.
    EndOfGeneration,
    /// The callback asked to stop.
    Callback,
}

/// Counts and timings of one [`generate`] call.
#[derive(Debug, Clone)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    pub prompt_time: Duration,
    pub generated_tokens: usize,
    pub generation_time: Duration,
    pub stop: StopReason,
}

impl GenerationStats {
    pub fn prompt_tokens_per_s(&self) -> f64 {
        self.prompt_tokens as f64 / self.prompt_time.as_secs_f64().max(1e-9)
    }
    pub fn generation_tokens_per_s(&self) -> f64 {
        self.generated_tokens as f64 / self.generation_time.as_secs_f64().max(1e-9)
    }
}

/// Feeds `prompt` (appended to what the context holds), then samples up to
/// `max_tokens` tokens. `is_eog` says which tokens end generation (they are
/// not passed to `on_token`). `on_token` sees each generated token and may
/// stop early with `ControlFlow::Break`.
///
/// Fails with [`PhiError::ContextFull`] before doing any work if the prompt
/// and `max_tokens` cannot fit in the context.
pub fn generate(
    ctx: &mut Context,
    sampler: &mut Sampler,
    prompt: &[u32],
    max_tokens: usize,
    is_eog: impl Fn(u32) -> bool,
    on_token: impl FnMut(u32) -> ControlFlow<()>,
) -> Result<GenerationStats> {
    generate_constrained(ctx, sampler, prompt, max_tokens, is_eog, None, on_token)
}

/// [`generate`] with structured output: when `constraint` is given, every
/// token is sampled from logits masked by it (see [`crate::constraint`]) and
/// committed to it. Generation ends with [`StopReason::EndOfGeneration`] when
/// the model picks an end-of-generation token (allowed only once the output
/// is a complete match) or when the constraint is finished (nothing but an
/// end-of-generation token could follow: no forward pass is spent on it).
/// [`StopReason::Length`] with `constraint.is_accepting() == false` means the
/// output did not complete within `max_tokens`.
pub fn generate_constrained(
    ctx: &mut Context,
    sampler: &mut Sampler,
    prompt: &[u32],
    max_tokens: usize,
    is_eog: impl Fn(u32) -> bool,
    constraint: Option<&mut Constraint>,
    mut on_token: impl FnMut(u32) -> ControlFlow<()>,
) -> Result<GenerationStats> {
    if prompt.is_empty() {
        return Err(PhiError::InvalidArgument("the prompt has no tokens".into()));
    }
    let needed = ctx.n_past() + prompt.len() + max_tokens.saturating_sub(1);
    if needed > ctx.n_ctx() {
        return Err(PhiError::ContextFull {
            n_ctx: ctx.n_ctx(),
            needed,
        });
    }
    let t0 = Instant::now();
    ctx.eval(prompt, false)?;
    for &t in prompt {
        sampler.accept(t);
    }
    let prompt_time = t0.elapsed();
    let t1 = Instant::now();
    let (generated, stop) = match constraint {
        None => decode(ctx, sampler, max_tokens, &is_eog, None, &mut on_token, None)?,
        Some(c) => {
            let overlap = mask_overlap(ctx.n_threads());
            let c = Mutex::new(c);
            let mut run = |worker: Option<&MaskWorker>| {
                decode(
                    ctx,
                    sampler,
                    max_tokens,
                    &is_eog,
                    Some(&c),
                    &mut on_token,
                    worker,
                )
            };
            if overlap {
                std::thread::scope(|s| run(Some(&MaskWorker::start(s, &c))))?
            } else {
                run(None)?
            }
        }
    };
    Ok(GenerationStats {
        prompt_tokens: prompt.len(),
        prompt_time,
        generated_tokens: generated,
        generation_time: t1.elapsed(),
        stop,
    })
}

/// Whether to compute a constraint's next mask on its own thread during the
/// forward pass: when a core is left over by the forward pass's threads (on
/// a fully used machine the mask would only take CPU time from the forward
/// pass). `PHI_MASK_OVERLAP=0|1` forces it off or on.
fn mask_overlap(n_threads: usize) -> bool {
    crate::constraint::overlap_from_env()
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()) > n_threads)
}

/// A thread that computes the constraint's next mask while the forward pass
/// runs (it starts on `go`, answers on `done`; the constraint is shared
/// through a mutex that neither side holds while the other works). The
/// batch engine's [`crate::constraint::MaskThread`] does the same for owned,
/// shared constraints; this one lives in a thread scope because
/// [`generate_constrained`] only borrows its constraint.
struct MaskWorker {
    go: SyncSender<()>,
    done: Receiver<Result<()>>,
}

impl MaskWorker {
    fn start<'s>(s: &'s Scope<'s, '_>, c: &'s Mutex<&mut Constraint>) -> MaskWorker {
        let (go, go_rx) = sync_channel::<()>(1);
        let (done_tx, done) = sync_channel(1);
        s.spawn(move || {
            // Ends when the sender side (the decode loop) is dropped.
            for () in go_rx {
                let r = c
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .compute_mask();
                if done_tx.send(r).is_err() {
                    break;
                }
            }
        });
        MaskWorker { go, done }
    }
}

/// The decode loop: sample (through the constraint's mask when there is
/// one), hand the token out, run it through the model. Returns the number
/// of tokens sampled and why it stopped.
fn decode(
    ctx: &mut Context,
    sampler: &mut Sampler,
    max_tokens: usize,
    is_eog: &impl Fn(u32) -> bool,
    constraint: Option<&Mutex<&mut Constraint>>,
    on_token: &mut impl FnMut(u32) -> ControlFlow<()>,
    worker: Option<&MaskWorker>,
) -> Result<(usize, StopReason)> {
    let mut generated = 0;
    // The masked copy of the logits row (allocated once).
    let mut masked = Vec::new();
    while generated < max_tokens {
        let mut finished = false;
        let next = match constraint {
            None => sampler.sample(ctx.last_logits()),
            Some(c) => {
                let mut c = c.lock().unwrap_or_else(PoisonError::into_inner);
                masked.clear();
                masked.extend_from_slice(ctx.last_logits());
                c.apply(&mut masked)?;
                let t = sampler.sample(&masked);
                c.commit(t)?;
                finished = c.is_finished();
                t
            }
        };
        generated += 1;
        if is_eog(next) {
            return Ok((generated, StopReason::EndOfGeneration));
        }
        sampler.accept(next);
        if on_token(next).is_break() {
            return Ok((generated, StopReason::Callback));
        }
        if finished {
            return Ok((generated, StopReason::EndOfGeneration));
        }
        if generated == max_tokens {
            break;
        }
        match worker {
            Some(w) => {
                let gone = || PhiError::ThreadPool("the mask thread stopped".into());
                w.go.send(()).map_err(|_| gone())?;
                let eval = ctx.eval(&[next], false);
                let mask = w.done.recv().map_err(|_| gone())?;
                eval?;
                mask?;
            }
            None => ctx.eval(&[next], false)?,
        }
    }
    Ok((generated, StopReason::Length))
}
