//! `phi perplexity`: perplexity of a text file, computed the way llama.cpp's
//! `llama-perplexity` does so the numbers can be compared.
//!
//! The text is tokenized once (with BOS when the vocabulary adds one) and
//! cut into non-overlapping windows of `-c` tokens; a trailing partial window
//! is dropped. Each window is evaluated on an empty cache with its first
//! token replaced by BOS (when the vocabulary adds BOS), and only the second
//! half is scored: the logits at positions `c/2 .. c-2` predict the tokens at
//! `c/2+1 .. c-1`. Perplexity = exp(mean negative log-likelihood).

use crate::args::{ContextArgs, ModelArgs};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use phi::{Context, ContextParams};
use serde_json::json;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text to score.
    #[arg(short, long)]
    pub file: PathBuf,
    /// Score at most this many windows (0 = all).
    #[arg(long, default_value_t = 0)]
    pub chunks: usize,
    // -c is the window size (default 512); the KV cache is F16 by default,
    // as llama-perplexity's.
    #[command(flatten)]
    pub context: ContextArgs,
    /// Print a final JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Negative log-likelihood of `target` under softmax(`logits`), in f64.
pub fn nll(logits: &[f32], target: u32) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    -(logits[target as usize] as f64 - max - sum.ln())
}

pub fn run(args: Args) -> crate::CliResult {
    let c = args.context.ctx_size.unwrap_or(512);
    if c < 4 {
        return Err("-c must be at least 4 tokens".into());
    }
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| format!("cannot read {}: {e}", args.file.display()))?;
    let model = Arc::new(args.model.load(&args.model.path()?)?);
    // A long evaluation: pack the streamed matrices first.
    model.pack_streamed()?;
    let tok = model.tokenizer();
    let add_bos = tok.add_bos();
    let tokens = tok.encode(&text, true, false);
    let n_windows_all = tokens.len() / c;
    if n_windows_all == 0 {
        return Err(format!(
            "{} holds {} tokens, fewer than one window of {c} (use a smaller -c)",
            args.file.display(),
            tokens.len()
        )
        .into());
    }
    let n_windows = if args.chunks > 0 {
        n_windows_all.min(args.chunks)
    } else {
        n_windows_all
    };
    let mut params = args.context.params(ContextParams {
        sliding_window: false,
        ..ContextParams::default()
    });
    params.n_ctx = c;
    params.n_batch = params.n_batch.max(1);
    let mut ctx = Context::new(Arc::clone(&model), &params)?;
    let n_vocab = model.config().n_vocab;
    let first = c / 2;

    let bar = ProgressBar::with_draw_target(Some(n_windows as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} windows, {elapsed} < {eta} | {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let plain_progress = !std::io::stderr().is_terminal() && !args.json;
    if !args.json {
        eprintln!(
            "perplexity: {} tokens, {n_windows} windows of {c}, scoring {} tokens each",
            tokens.len(),
            c - 1 - first
        );
    }

    let t0 = Instant::now();
    let mut sum_nll = 0f64;
    let mut sum_nll2 = 0f64;
    let mut count = 0usize;
    for w in 0..n_windows {
        let mut window = tokens[w * c..(w + 1) * c].to_vec();
        if add_bos {
            if let Some(bos) = tok.bos() {
                window[0] = bos;
            }
        }
        ctx.reset();
        ctx.eval(&window, true)?;
        let logits = ctx.logits();
        for j in first..c - 1 {
            let row = &logits[j * n_vocab..(j + 1) * n_vocab];
            let v = nll(row, tokens[w * c + j + 1]);
            sum_nll += v;
            sum_nll2 += v * v;
            count += 1;
        }
        let ppl = (sum_nll / count as f64).exp();
        bar.set_message(format!("ppl {ppl:.4}"));
        bar.inc(1);
        if plain_progress {
            eprintln!("[{}/{n_windows}] ppl {ppl:.4}", w + 1);
        }
    }
    bar.finish_and_clear();
    let mean = sum_nll / count as f64;
    let ppl = mean.exp();
    // Standard error of the mean NLL, carried to the perplexity (as llama.cpp reports it).
    let var = (sum_nll2 / count as f64 - mean * mean).max(0.0);
    let ppl_err = if count > 1 {
        ppl * (var / (count - 1) as f64).sqrt()
    } else {
        0.0
    };
    let secs = t0.elapsed().as_secs_f64();
    if args.json {
        let out = json!({
            "perplexity": ppl,
            "perplexity_stderr": ppl_err,
            "mean_nll": mean,
            "n_windows": n_windows,
            "n_tokens_scored": count,
            "n_tokens": tokens.len(),
            "ctx_size": c,
            "model": args.model.reference(),
            "seconds": secs,
        });
        println!("{out}");
    } else {
        println!(
            "perplexity: {ppl:.4} ± {ppl_err:.4} ({count} tokens scored in {n_windows} windows of {c}, {:.1} s, {:.1} tok/s)",
            secs,
            (n_windows * c) as f64 / secs.max(1e-9)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::nll;

    #[test]
    fn nll_is_minus_log_softmax() {
        let l = [1.0f32, 2.0, 3.0];
        let z: f64 = l.iter().map(|&v| (v as f64).exp()).sum();
        for t in 0..3 {
            let want = -((l[t] as f64).exp() / z).ln();
            assert!((nll(&l, t as u32) - want).abs() < 1e-12);
        }
        // Uniform logits: log(n).
        assert!((nll(&[5.0; 8], 3) - 8f64.ln()).abs() < 1e-12);
    }
}
