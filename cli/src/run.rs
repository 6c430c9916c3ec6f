//! `phi run`: generate text from a prompt, streaming it to stdout.

use crate::args::{ContextArgs, ModelArgs, SamplingArgs};
use phi::tokenizer::chat::ChatMessage;
use phi::tokenizer::TextStream;
use phi::{generate_constrained, Context, ContextParams, Sampler, StopReason};
use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt.
    #[arg(short, long, conflicts_with = "file")]
    pub prompt: Option<String>,
    /// Read the prompt from this file.
    #[arg(short, long)]
    pub file: Option<PathBuf>,
    /// Tokens to generate (-1 = until end of generation or a full context).
    #[arg(short = 'n', long, default_value_t = -1, allow_negative_numbers = true)]
    pub n_predict: i64,
    #[command(flatten)]
    pub context: ContextArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub constraint: crate::structured::ConstraintArgs,
    /// Wrap the prompt in the model's chat template (default when it has one).
    #[arg(long, conflicts_with = "raw")]
    pub chat: bool,
    /// Use the prompt as plain text, with BOS as the vocabulary says.
    #[arg(long)]
    pub raw: bool,
    /// System prompt (chat mode).
    #[arg(short = 's', long)]
    pub system: Option<String>,
    /// Ignore the model's sliding attention window, as llama.cpp does.
    #[arg(long)]
    pub no_swa: bool,
    /// Print nothing but the generated text (no timings on stderr).
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Also print per-layer timings on stderr.
    #[arg(short, long)]
    pub verbose: bool,
}

pub fn run(args: Args) -> crate::CliResult {
    let prompt = match (&args.prompt, &args.file) {
        (Some(p), _) => p.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map_err(|e| format!("cannot read the prompt file {}: {e}", f.display()))?,
        (None, None) => return Err("give a prompt with -p TEXT or -f FILE".into()),
    };
    let sampler_params = args.sampling.params()?;
    let t0 = Instant::now();
    let model = Arc::new(args.model.load(&args.model.path()?)?);
    let tokenizer = model.tokenizer();
    let mut constraint = args.constraint.build(&model)?;
    let params = args.context.params(ContextParams {
        sliding_window: !args.no_swa,
        ..ContextParams::default()
    });
    let mut ctx = Context::new(Arc::clone(&model), &params)?;
    ctx.set_layer_timing(args.verbose);
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;

    let use_chat = !args.raw && (args.chat || tokenizer.chat_template().is_some());
    let tokens = if use_chat {
        let mut messages = Vec::new();
        if let Some(sys) = &args.system {
            messages.push(ChatMessage::new("system", sys.as_str()));
        }
        messages.push(ChatMessage::new("user", prompt.as_str()));
        let text = tokenizer.apply_chat_template(&messages, true)?;
        tokenizer.encode(&text, true, true)
    } else {
        tokenizer.encode(&prompt, true, false)
    };
    if tokens.is_empty() {
        return Err("the prompt is empty".into());
    }
    if tokens.len() >= ctx.n_ctx() {
        return Err(format!(
            "the prompt has {} tokens but the context holds {} (use a larger -c)",
            tokens.len(),
            ctx.n_ctx()
        )
        .into());
    }
    let room = ctx.n_ctx() - tokens.len() + 1;
    let max_tokens = if args.n_predict < 0 {
        room
    } else {
        args.n_predict as usize
    };
    let mut sampler = Sampler::new(sampler_params);
    let mut stream = TextStream::new(tokenizer, false);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut write_err = None;
    let mut first = true;
    let stats = generate_constrained(
        &mut ctx,
        &mut sampler,
        &tokens,
        max_tokens,
        |t| tokenizer.is_eog(t),
        constraint.as_mut(),
        |t| {
            if first && max_tokens > 1 {
                // The prompt was evaluated from the streamed matrices; their
                // packed copies are made while generation goes on (with one
                // token to generate there is nothing left to speed up).
                model.pack_in_background();
            }
            first = false;
            let piece = stream.push(t);
            if let Err(e) = out.write_all(piece.as_bytes()).and_then(|_| out.flush()) {
                write_err = Some(e);
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        },
    )?;
    let tail = stream.finish();
    out.write_all(tail.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()?;
    if let Some(e) = write_err {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e.into());
        }
    }
    if !args.quiet {
        eprintln!(
            "load: {load_ms:.0} ms | prompt: {} tokens, {:.1} tok/s | generation: {} tokens, {:.1} tok/s | {} threads, {:?}",
            stats.prompt_tokens,
            stats.prompt_tokens_per_s(),
            stats.generated_tokens,
            stats.generation_tokens_per_s(),
            ctx.n_threads(),
            phi_kernels::dispatch::active(),
        );
    }
    if let Some(c) = &mut constraint {
        if !args.quiet {
            let (time, n) = c.mask_stats();
            eprintln!(
                "constraint: {n} masks, {:.0} µs per mask ({:.2} % of the generation time)",
                time.as_secs_f64() * 1e6 / n.max(1) as f64,
                100.0 * time.as_secs_f64() / stats.generation_time.as_secs_f64().max(1e-9)
            );
        }
        if stats.stop == StopReason::Length && !c.is_accepting() {
            return Err(format!(
                "finish reason: length: the output is incomplete, the constraint was not \
                 satisfied within {max_tokens} tokens (raise -n)"
            )
            .into());
        }
    }
    if args.verbose {
        let total: f64 = ctx.layer_times().iter().map(|t| t.as_secs_f64()).sum();
        for (i, t) in ctx.layer_times().iter().enumerate() {
            eprintln!(
                "layer {i:3}: {:8.2} ms ({:4.1}%)",
                t.as_secs_f64() * 1e3,
                100.0 * t.as_secs_f64() / total.max(1e-12)
            );
        }
    }
    Ok(())
}
