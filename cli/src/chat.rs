//! `phi chat`: an interactive, multi-turn conversation that lives in the KV
//! cache. Each turn evaluates only its new tokens: the end of the previous
//! reply's turn, the user's message and the assistant prefix.
//!
//! Commands: `/reset` (forget the conversation), `/exit`; Ctrl-C stops the
//! reply being generated, Ctrl-D (end of input) exits. With standard input
//! not a terminal every line is one message, so a conversation can be piped.

use crate::args::{ContextArgs, ModelArgs, SamplingArgs};
use phi::tokenizer::chat::{phi3_prompt, ChatMessage};
use phi::tokenizer::{TextStream, Tokenizer};
use phi::{Context, ContextParams, PhiError, Sampler};
use std::io::{BufRead, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// System prompt.
    #[arg(short = 's', long)]
    pub system: Option<String>,
    /// Most tokens per reply (-1 = until the end of the turn or a full context).
    #[arg(short = 'n', long, default_value_t = -1, allow_negative_numbers = true)]
    pub n_predict: i64,
    #[command(flatten)]
    pub context: ContextArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// When the context is full, drop the oldest turns and re-evaluate the
    /// rest instead of asking for /reset.
    #[arg(long)]
    pub drop_oldest: bool,
    /// Print per-turn token counts and speeds on stderr.
    #[arg(short, long)]
    pub verbose: bool,
    /// Ignore the model's sliding attention window, as llama.cpp does.
    #[arg(long)]
    pub no_swa: bool,
    /// Never end a reply with an end-of-generation token (they are masked out).
    #[arg(long)]
    pub ignore_eos: bool,
}

/// Set by Ctrl-C while a reply is being generated.
static STOP: AtomicBool = AtomicBool::new(false);
/// True while a reply is being generated (Ctrl-C then stops it, else exits).
static GENERATING: AtomicBool = AtomicBool::new(false);

/// The conversation and the tokens in the KV cache.
struct Chat<'a> {
    tokenizer: &'a Tokenizer,
    ctx: Context,
    sampler: Sampler,
    system: Option<String>,
    messages: Vec<ChatMessage>,
    /// Exactly the tokens in the KV cache (`ctx.n_past()` of them).
    cached: Vec<u32>,
    /// The text those tokens stand for in the rendered conversation (None
    /// when unknown: the next turn then compares tokens instead).
    cached_text: Option<String>,
    max_reply: Option<usize>,
    /// End-of-generation ids to mask out (`--ignore-eos`), else empty.
    masked: Vec<u32>,
    drop_oldest: bool,
    verbose: bool,
    turn: usize,
}

/// The whole conversation as prompt text, ending with the assistant prefix:
/// the model's chat template, or Phi-3's format without one (also used by
/// `phi serve`).
///
/// Phi-3's own GGUF template drops system messages; llama.cpp formats Phi-3
/// templates with its built-in Phi-3 format, which keeps them. So does this:
/// a template with `<|end|>` that loses the system prompt is replaced by
/// Phi-3's format.
pub fn render_prompt(
    tokenizer: &Tokenizer,
    messages: &[ChatMessage],
) -> Result<String, phi::tokenizer::ChatTemplateError> {
    let text = tokenizer.apply_chat_template(messages, true)?;
    let lost_system = messages
        .first()
        .is_some_and(|m| m.role == "system" && !m.content.is_empty() && !text.contains(&m.content));
    let phi3_like = tokenizer
        .chat_template()
        .is_some_and(|t| t.contains("<|end|>") && t.contains("<|assistant|>"));
    if lost_system && phi3_like {
        return Ok(phi3_prompt(messages, true));
    }
    Ok(text)
}

enum TurnEnd {
    Done,
    /// The turn did not fit in the context.
    ContextFull,
}

impl<'a> Chat<'a> {
    fn render(&self) -> Result<String, Box<dyn std::error::Error>> {
        Ok(render_prompt(self.tokenizer, &self.messages)?)
    }

    fn reset(&mut self) {
        self.ctx.reset();
        self.cached.clear();
        self.cached_text = Some(String::new());
        self.sampler.reset();
        self.messages.clear();
        if let Some(sys) = &self.system {
            self.messages.push(ChatMessage::new("system", sys.clone()));
        }
    }

    /// Tokens of a whole rendered conversation (BOS as the vocabulary says).
    fn encode_full(&self, text: &str) -> Vec<u32> {
        self.tokenizer.encode(text, true, true)
    }

    /// The tokens to append for `text` (the full rendering of the
    /// conversation so far, generation prompt included): only what follows
    /// the cached text. Falls back to the full token list, with the cache
    /// kept up to the first differing token, if the rendering is not an
    /// extension of what is cached.
    fn new_tokens(&mut self, text: &str) -> Vec<u32> {
        if let Some(prev) = self.cached_text.as_deref() {
            if !self.cached.is_empty() && text.starts_with(prev) {
                return self.tokenizer.encode(&text[prev.len()..], false, true);
            }
        }
        self.cached_text = None;
        let full = self.encode_full(text);
        let common = full
            .iter()
            .zip(&self.cached)
            .take_while(|(a, b)| a == b)
            .count();
        self.ctx.truncate(common);
        self.cached.truncate(common);
        full[common..].to_vec()
    }

    /// Drops the oldest user/assistant exchange (the system prompt stays);
    /// false when there is none left to drop.
    fn drop_oldest_turn(&mut self) -> bool {
        let first = usize::from(self.messages.first().is_some_and(|m| m.role == "system"));
        if self.messages.len() <= first + 1 {
            return false;
        }
        // A user message and the reply after it.
        let n = if self
            .messages
            .get(first + 1)
            .is_some_and(|m| m.role == "assistant")
        {
            2
        } else {
            1
        };
        self.messages.drain(first..first + n);
        true
    }

    /// Runs one user turn: evaluates its new tokens and streams the reply.
    fn turn(
        &mut self,
        user: &str,
        out: &mut impl Write,
    ) -> Result<TurnEnd, Box<dyn std::error::Error>> {
        self.turn += 1;
        self.messages.push(ChatMessage::new("user", user));
        let n_ctx = self.ctx.n_ctx();
        let mut text = self.render()?;
        let mut fresh = self.new_tokens(&text);
        // Room for the prompt and at least one generated token.
        while self.ctx.n_past() + fresh.len() + 1 > n_ctx {
            if !(self.drop_oldest && self.drop_oldest_turn()) {
                self.messages.pop();
                return Ok(TurnEnd::ContextFull);
            }
            // History changed at its start: re-evaluate the kept turns.
            self.ctx.reset();
            self.cached.clear();
            self.cached_text = None;
            text = self.render()?;
            fresh = self.encode_full(&text);
            if self.verbose {
                eprintln!(
                    "[context full: dropped the oldest exchange, re-evaluating {} tokens]",
                    fresh.len()
                );
            }
        }
        if fresh.is_empty() {
            // Nothing new to evaluate (only possible through the token
            // comparison): evaluate the last cached token again so that the
            // logits belong to the end of the prompt.
            let last = self.cached.pop().ok_or("the chat prompt is empty")?;
            self.ctx.truncate(self.cached.len());
            fresh.push(last);
        }
        let before = self.ctx.n_past();
        let t0 = Instant::now();
        self.ctx.eval(&fresh, false)?;
        let prompt_time = t0.elapsed();
        for &t in &fresh {
            self.sampler.accept(t);
        }
        self.cached.extend_from_slice(&fresh);
        self.cached_text = Some(text);

        // Generate until end of turn, the reply limit, a full context or Ctrl-C.
        let t1 = Instant::now();
        let mut stream = TextStream::new(self.tokenizer, false);
        let mut reply_tokens = Vec::new();
        let mut hit_full = false;
        STOP.store(false, Ordering::SeqCst);
        GENERATING.store(true, Ordering::SeqCst);
        let result = (|| -> Result<(), Box<dyn std::error::Error>> {
            loop {
                if STOP.load(Ordering::SeqCst) {
                    break;
                }
                if self.max_reply.is_some_and(|m| reply_tokens.len() >= m) {
                    break;
                }
                let next = if self.masked.is_empty() {
                    self.sampler.sample(self.ctx.last_logits())
                } else {
                    let mut l = self.ctx.last_logits().to_vec();
                    for &id in &self.masked {
                        if let Some(v) = l.get_mut(id as usize) {
                            *v = f32::NEG_INFINITY;
                        }
                    }
                    self.sampler.sample(&l)
                };
                if self.tokenizer.is_eog(next) {
                    break;
                }
                if self.ctx.n_past() >= n_ctx {
                    hit_full = true;
                    break;
                }
                self.sampler.accept(next);
                reply_tokens.push(next);
                let piece = stream.push(next);
                out.write_all(piece.as_bytes())?;
                out.flush()?;
                // Keep every printed token in the cache, so the next turn
                // continues right after it.
                self.ctx.eval(&[next], false)?;
                self.cached.push(next);
            }
            Ok(())
        })();
        GENERATING.store(false, Ordering::SeqCst);
        let tail = stream.finish();
        out.write_all(tail.as_bytes())?;
        out.write_all(b"\n")?;
        out.flush()?;
        result?;
        let interrupted = STOP.swap(false, Ordering::SeqCst);
        let reply = self.tokenizer.detokenize(&reply_tokens, false, false);
        if let Some(t) = self.cached_text.as_mut() {
            t.push_str(&reply);
        }
        self.messages.push(ChatMessage::new("assistant", reply));
        if self.verbose {
            let gen_s = t1.elapsed().as_secs_f64().max(1e-9);
            eprintln!(
                "[turn {}: prompt {} new tokens (cache {} -> {}) in {:.0} ms | reply {} tokens, {:.1} tok/s | cache {}/{}{}]",
                self.turn,
                fresh.len(),
                before,
                before + fresh.len(),
                prompt_time.as_secs_f64() * 1e3,
                reply_tokens.len(),
                reply_tokens.len() as f64 / gen_s,
                self.ctx.n_past(),
                n_ctx,
                if interrupted { ", interrupted" } else { "" }
            );
        } else if interrupted {
            eprintln!("[stopped]");
        }
        if hit_full {
            eprintln!(
                "[the context is full ({n_ctx} tokens): the reply was cut; type /reset to start over{}]",
                if self.drop_oldest {
                    ", or go on: the oldest turns will be dropped"
                } else {
                    " (or run with --drop-oldest, or a larger -c)"
                }
            );
        }
        Ok(TurnEnd::Done)
    }
}

pub fn run(args: Args) -> crate::CliResult {
    let sampler_params = args.sampling.params()?;
    let model = Arc::new(args.model.load(&args.model.path()?)?);
    // The streamed matrices get their packed copies while the user types.
    model.pack_in_background();
    let params = args.context.params(ContextParams {
        sliding_window: !args.no_swa,
        ..ContextParams::default()
    });
    let ctx = Context::new(Arc::clone(&model), &params)?;
    let interactive = std::io::stdin().is_terminal();
    ctrlc::set_handler(|| {
        if GENERATING.load(Ordering::SeqCst) {
            STOP.store(true, Ordering::SeqCst);
        } else {
            eprintln!();
            std::process::exit(130);
        }
    })
    .map_err(|e| format!("cannot install the Ctrl-C handler: {e}"))?;

    let tokenizer = model.tokenizer();
    let mut chat = Chat {
        tokenizer,
        ctx,
        sampler: Sampler::new(sampler_params),
        system: args.system.clone(),
        messages: Vec::new(),
        cached: Vec::new(),
        cached_text: None,
        max_reply: usize::try_from(args.n_predict).ok(),
        masked: if args.ignore_eos {
            tokenizer.eog_ids().collect()
        } else {
            Vec::new()
        },
        drop_oldest: args.drop_oldest,
        verbose: args.verbose,
        turn: 0,
    };
    chat.reset();
    if interactive {
        eprintln!(
            "phi chat — {} ({} tokens of context). Type a message; /reset to start over, /exit or Ctrl-D to quit, Ctrl-C stops a reply.",
            args.model.reference(),
            chat.ctx.n_ctx()
        );
    }
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut line = String::new();
    loop {
        if interactive {
            eprint!("> ");
            std::io::stderr().flush().ok();
        }
        line.clear();
        if input.read_line(&mut line)? == 0 {
            if interactive {
                eprintln!();
            }
            break;
        }
        let msg = line.trim_end_matches(['\n', '\r']);
        match msg.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                chat.reset();
                eprintln!("[conversation reset]");
                continue;
            }
            _ => {}
        }
        match chat.turn(msg, &mut out) {
            Ok(TurnEnd::Done) => {}
            Ok(TurnEnd::ContextFull) => eprintln!(
                "[the context is full ({} of {} tokens used): type /reset to start over (or run with --drop-oldest, or a larger -c)]",
                chat.ctx.n_past(),
                chat.ctx.n_ctx()
            ),
            Err(e) => match e.downcast_ref::<std::io::Error>() {
                Some(io) if io.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                _ => match e.downcast_ref::<PhiError>() {
                    Some(PhiError::ContextFull { .. }) => {
                        eprintln!("[the context is full: type /reset to start over]")
                    }
                    _ => return Err(e),
                },
            },
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use phi::tokenizer::chat::{phi3_prompt, ChatMessage};

    /// The delta scheme relies on a rendering that extends the cached text.
    #[test]
    fn rendering_extends_the_previous_turn() {
        let mut m = vec![
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", "Hi"),
        ];
        let first = phi3_prompt(&m, true);
        m.push(ChatMessage::new("assistant", "Hello!"));
        m.push(ChatMessage::new("user", "Bye"));
        let second = phi3_prompt(&m, true);
        let cached = format!("{first}Hello!");
        assert!(second.starts_with(&cached));
        assert_eq!(
            &second[cached.len()..],
            "<|end|>\n<|user|>\nBye<|end|>\n<|assistant|>\n"
        );
    }
}
