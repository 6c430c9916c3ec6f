//! `phi logits`: run token ids through the model and dump every position's
//! logits (the debugging view tests and researchers use).

use phi::{sampler::argmax, Context, ContextParams, KvType, Model};
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    /// The GGUF model file.
    #[arg(short, long)]
    pub model: PathBuf,
    /// Comma-separated token ids, run as one prompt at positions 0..n-1.
    #[arg(long, value_delimiter = ',', required = true)]
    pub tokens: Vec<u32>,
    /// Context size (it selects LongRoPE's factor set, as in llama.cpp).
    #[arg(short = 'c', long, default_value_t = 0)]
    pub ctx_size: usize,
    /// Write the logits here: little-endian f32, row-major [n_tokens × n_vocab].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Then generate this many tokens greedily through the KV cache.
    #[arg(long, default_value_t = 0)]
    pub greedy: usize,
    /// Worker threads (0 = one per core).
    #[arg(short, long, default_value_t = 0)]
    pub threads: usize,
    /// KV cache element type.
    #[arg(long, value_enum, default_value_t = KvArg::F32)]
    pub kv_type: KvArg,
    /// Apply the model's sliding attention window (llama.cpp does not).
    #[arg(long)]
    pub swa: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum KvArg {
    F32,
    F16,
    #[value(name = "q8_0")]
    Q8_0,
}

impl From<KvArg> for KvType {
    fn from(k: KvArg) -> KvType {
        match k {
            KvArg::F32 => KvType::F32,
            KvArg::F16 => KvType::F16,
            KvArg::Q8_0 => KvType::Q8_0,
        }
    }
}

pub fn run(args: Args) -> crate::CliResult {
    let model = Arc::new(Model::load_with(
        &args.model,
        &phi::ModelOptions::from_env(),
    )?);
    let n_vocab = model.config().n_vocab;
    let params = ContextParams {
        n_ctx: if args.ctx_size == 0 {
            (args.tokens.len() + args.greedy).max(model.config().n_ctx_train.min(4096))
        } else {
            args.ctx_size
        },
        n_threads: args.threads,
        kv_type: args.kv_type.into(),
        sliding_window: args.swa,
        ..ContextParams::default()
    };
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
