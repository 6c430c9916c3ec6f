//! The generation loop: prompt processing as one batched pass, then one
//! token at a time through the KV cache, streaming each token to a callback.

use crate::constraint::Constraint;
use crate::context::Context;
use crate::error::{PhiError, Result};
use crate::sampler::Sampler;
use std::ops::ControlFlow;
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
    mut constraint: Option<&mut Constraint>,
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
    let mut generated = 0;
    let mut stop = StopReason::Length;
    // The masked copy of the logits row (allocated once).
    let mut masked = Vec::new();
    while generated < max_tokens {
        let next = match constraint.as_deref_mut() {
            None => sampler.sample(ctx.last_logits()),
            Some(c) => {
                masked.clear();
                masked.extend_from_slice(ctx.last_logits());
                c.apply(&mut masked)?;
                let t = sampler.sample(&masked);
                c.commit(t)?;
                t
            }
        };
        generated += 1;
        if is_eog(next) {
            stop = StopReason::EndOfGeneration;
            break;
        }
        sampler.accept(next);
        if on_token(next).is_break() {
            stop = StopReason::Callback;
            break;
        }
        if constraint.as_deref().is_some_and(Constraint::is_finished) {
            stop = StopReason::EndOfGeneration;
            break;
        }
        if generated == max_tokens {
            break;
        }
        ctx.eval(&[next], false)?;
    }
    Ok(GenerationStats {
        prompt_tokens: prompt.len(),
        prompt_time,
        generated_tokens: generated,
        generation_time: t1.elapsed(),
        stop,
    })
}
