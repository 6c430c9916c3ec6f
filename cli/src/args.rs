//! The flag groups the subcommands share, declared once and flattened into
//! each command's `Args` (`#[command(flatten)]`):
//!
//! * [`ModelArgs`]: `-m MODEL`, `--offline` (run, chat, bench, perplexity,
//!   logits, tokenize);
//! * [`ContextArgs`]: `-t`, `-c`, `-b`, plus [`KvArgs`] (run, chat,
//!   perplexity, logits);
//! * [`KvArgs`]: `--kv-type`, `--max-memory` (also `bench`, whose `-t` is a
//!   list of thread counts);
//! * [`SamplingArgs`]: `--temp`, `--top-k`, ... (run, chat).
//!
//! The environment (`PHI_REPACK`) is read here too, once per command, by
//! [`ModelArgs::load`].

use phi::{ContextParams, KvType, Model, ModelOptions, SamplerParams};
use std::path::PathBuf;

/// Which model, and whether the network may be used to get it.
#[derive(clap::Args, Clone)]
pub struct ModelArgs {
    /// The model: a GGUF path or hf:OWNER/REPO/FILE.gguf (run, chat, bench and
    /// perplexity default to Phi-3-mini q4; logits and tokenize need it).
    #[arg(short, long)]
    pub model: Option<String>,
    /// Never use the network to resolve -m.
    #[arg(long)]
    pub offline: bool,
}

impl ModelArgs {
    /// The reference given, else the default model.
    pub fn reference(&self) -> &str {
        self.model.as_deref().unwrap_or(crate::hub::DEFAULT_MODEL)
    }

    /// The local file of `-m` (downloaded first when it is a Hub reference),
    /// the default model when `-m` is absent.
    pub fn path(&self) -> Result<PathBuf, Box<dyn std::error::Error>> {
        crate::hub::resolve(self.reference(), self.offline)
    }

    /// As [`path`](Self::path), for commands without a default model.
    pub fn required_path(&self) -> Result<PathBuf, Box<dyn std::error::Error>> {
        if self.model.is_none() {
            return Err("give the model with -m PATH (or -m hf:OWNER/REPO/FILE.gguf)".into());
        }
        self.path()
    }

    /// The model options: the defaults, `PHI_REPACK=0` from the environment.
    pub fn options(&self) -> ModelOptions {
        ModelOptions::from_env()
    }

    /// Loads `path` with [`options`](Self::options), with a spinner on a terminal.
    pub fn load(&self, path: &std::path::Path) -> phi::Result<Model> {
        crate::load::load_model(path, &self.options())
    }
}

/// KV cache element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
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

/// The KV cache's element type and the context's memory limit.
#[derive(clap::Args, Clone)]
pub struct KvArgs {
    /// KV cache element type [default: f16; logits: f32]
    #[arg(long, value_enum)]
    pub kv_type: Option<KvArg>,
    /// Refuse a context whose KV cache and buffers need more than this
    /// (bytes, or with a K/M/G suffix; default: the memory available).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_memory: Option<usize>,
}

impl KvArgs {
    /// `kv_type` and `max_memory` of `p`, where given.
    pub fn apply(&self, p: &mut ContextParams) {
        if let Some(kv) = self.kv_type {
            p.kv_type = kv.into();
        }
        if let Some(m) = self.max_memory {
            p.max_memory = m;
        }
    }
}

/// How a context is set up: threads, size, batch, KV cache, memory.
#[derive(clap::Args, Clone)]
pub struct ContextArgs {
    /// Worker threads (0 = one per core).
    #[arg(short, long, default_value_t = 0)]
    pub threads: usize,
    /// Context size in tokens [default: the model's, capped at 4096;
    /// perplexity: 512, its window; logits: enough for the tokens]
    #[arg(short = 'c', long)]
    pub ctx_size: Option<usize>,
    /// Prompt-processing batch size (tokens per forward pass).
    #[arg(short = 'b', long, default_value_t = 512)]
    pub batch_size: usize,
    #[command(flatten)]
    pub kv: KvArgs,
}

impl ContextArgs {
    /// `defaults` (a command's own, e.g. logits' f32 KV cache) with the
    /// flags given applied.
    pub fn params(&self, defaults: ContextParams) -> ContextParams {
        let mut p = ContextParams {
            n_threads: self.threads,
            n_batch: self.batch_size,
            ..defaults
        };
        if let Some(c) = self.ctx_size {
            p.n_ctx = c;
        }
        self.kv.apply(&mut p);
        p
    }
}

/// Sampling flags (`run`, `chat`); defaults are llama.cpp's.
#[derive(clap::Args, Clone)]
pub struct SamplingArgs {
    /// Temperature (0 = greedy).
    #[arg(long, default_value_t = 0.8)]
    pub temp: f32,
    /// Top-k (0 = off).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Top-p (1.0 = off).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Min-p (0.0 = off).
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Repetition penalty (1.0 = off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Tokens the repetition penalty looks back over.
    #[arg(long, default_value_t = 64)]
    pub repeat_last_n: usize,
    /// Random seed (default: a new one each run).
    #[arg(long)]
    pub seed: Option<u64>,
}

impl SamplingArgs {
    pub fn params(&self) -> Result<SamplerParams, String> {
        let ok = self.temp.is_finite()
            && (0.0..=1.0).contains(&self.top_p)
            && (0.0..=1.0).contains(&self.min_p)
            && self.repeat_penalty.is_finite()
            && self.repeat_penalty > 0.0;
        if !ok {
            return Err(
                "sampling flags out of range: --temp must be finite, --top-p and \
                        --min-p in [0, 1], --repeat-penalty above 0"
                    .into(),
            );
        }
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        });
        Ok(SamplerParams {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            seed,
        })
    }
}

/// Parses "4096", "512K", "3M", "4G" (powers of 1024) into bytes.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (num, mul) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mul: usize = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => return Err(format!("unknown size suffix in `{s}` (use K, M or G)")),
            };
            (&t[..i], mul)
        }
        _ => (t, 1),
    };
    num.trim()
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("`{s}` is not a size (e.g. 4096, 512M, 4G)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_and_without_suffix() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size(" 3M "), Ok(3 << 20));
        assert_eq!(parse_size("4G"), Ok(4 << 30));
    }

    #[test]
    fn bad_sizes_are_errors() {
        for bad in [
            "",
            "0",
            "0M",
            "-1",
            "1.5G",
            "G",
            "12T",
            "lots",
            "99999999999999999999G",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert!(parse_size("12T").unwrap_err().contains("suffix"));
    }
}
