//! `phi logits`: run token ids through the model and dump every position's
//! logits (the debugging view tests and researchers use).

use crate::args::{ContextArgs, ModelArgs};
use phi::{sampler::argmax, Context, ContextParams, KvType};
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Comma-separated token ids, run as one prompt at positions 0..n-1.
    #[arg(long, value_delimiter = ',', required = true)]
    pub tokens: Vec<u32>,
    /// Write the logits here: little-endian f32, row-major [n_tokens × n_vocab].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Then generate this many tokens greedily through the KV cache.
    #[arg(long, default_value_t = 0)]
    pub greedy: usize,
    // -c selects LongRoPE's factor set, as in llama.cpp; the KV cache is f32
    // by default.
    #[command(flatten)]
    pub context: ContextArgs,
    /// Apply the model's sliding attention window (llama.cpp does not).
    #[arg(long)]
    pub swa: bool,
}

pub fn run(args: Args) -> crate::CliResult {
    let path = args.model.required_path()?;
    let model = Arc::new(phi::Model::load_with(&path, &args.model.options())?);
    let n_vocab = model.config().n_vocab;
    let mut params = args.context.params(ContextParams {
        kv_type: KvType::F32,
        sliding_window: args.swa,
        ..ContextParams::default()
    });
    if params.n_ctx == 0 {
        params.n_ctx = (args.tokens.len() + args.greedy).max(model.config().n_ctx_train.min(4096));
    }
    let mut ctx = Context::new(model, &params)?;
    ctx.eval(&args.tokens, true)?;
    if let Some(path) = &args.out {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        for v in ctx.logits() {
            f.write_all(&v.to_le_bytes())?;
        }
        f.flush()?;
    }
    let last = ctx.last_logits();
    let mut order: Vec<u32> = (0..n_vocab as u32).collect();
    order.sort_by(|&a, &b| {
        last[b as usize]
            .total_cmp(&last[a as usize])
            .then(a.cmp(&b))
    });
    let top5: Vec<_> = order
        .iter()
        .take(5)
        .map(|&i| json!([i, last[i as usize]]))
        .collect();
    let mut greedy = Vec::with_capacity(args.greedy);
    for i in 0..args.greedy {
        let next = argmax(ctx.last_logits());
        greedy.push(next);
        if i + 1 < args.greedy {
            ctx.eval(&[next], false)?;
        }
    }
    let out = json!({
        "n_tokens": args.tokens.len(),
        "n_vocab": n_vocab,
        "top5": top5,
        "greedy": greedy,
    });
    println!("{out}");
    Ok(())
}
