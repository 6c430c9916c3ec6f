//! Model hyper-parameters read from GGUF metadata.

use crate::error::{PhiError, Result};
use phi_gguf::{Gguf, GgufError};

/// The decoder families phi.rs assembles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Microsoft Phi-3 / Phi-3.5 / Phi-4-mini: fused qkv and gate|up, NEOX rope.
    Phi3,
    /// Llama: separate q/k/v and gate/up, NORM rope (adjacent pairs).
    Llama,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Phi3 => "phi3",
            Arch::Llama => "llama",
        }
    }
}

/// Hyper-parameters of a decoder, validated for internal consistency.
#[derive(Debug, Clone)]
pub struct Config {
    pub arch: Arch,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    /// Rotated dimensions per head (≤ head_dim; the rest pass through).
    pub n_rot: usize,
    pub rope_base: f32,
    /// NEOX rope rotates pairs (i, i + n_rot/2); NORM rotates (2i, 2i+1).
    pub rope_neox: bool,
    pub rms_eps: f32,
    /// Training context length.
    pub n_ctx_train: usize,
    /// LongRoPE: the context up to which the short factors apply.
    pub n_ctx_orig: usize,
    /// LongRoPE magnitude scaling applied to cos/sin.
    pub rope_attn_factor: f32,
    /// Sliding attention window declared by the model (0 = none).
    pub sliding_window: usize,
    pub n_vocab: usize,
}

/// Largest value accepted for any size from the file; anything bigger is a lie.
const MAX_DIM: u64 = 1 << 24;

fn opt<T>(r: std::result::Result<T, GgufError>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(GgufError::MissingKey(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn dim(g: &Gguf, key: &str) -> Result<usize> {
    let v = g.get_u64(key)?;
    check_dim(key, v)
}

fn opt_dim(g: &Gguf, key: &str) -> Result<Option<usize>> {
    opt(g.get_u64(key))?.map(|v| check_dim(key, v)).transpose()
}

fn check_dim(key: &str, v: u64) -> Result<usize> {
    if v == 0 || v > MAX_DIM {
        return Err(PhiError::BadHyperParam(format!(
            "`{key}` = {v} is out of range (1..={MAX_DIM})"
        )));
    }
    Ok(v as usize)
}

impl Config {
    /// Reads and checks the hyper-parameters of a `phi3` or `llama` GGUF.
    pub fn from_gguf(g: &Gguf) -> Result<Config> {
        let arch_name = g.get_str("general.architecture")?;
        let arch = match arch_name {
            "phi3" => Arch::Phi3,
            "llama" => Arch::Llama,
            other => return Err(PhiError::UnsupportedArch(phi_gguf::printable(other))),
        };
        let a = arch.name();
        let k = |s: &str| format!("{a}.{s}");
        let n_embd = dim(g, &k("embedding_length"))?;
        let n_layer = dim(g, &k("block_count"))?;
        let n_head = dim(g, &k("attention.head_count"))?;
        let n_head_kv = opt_dim(g, &k("attention.head_count_kv"))?.unwrap_or(n_head);
        let n_ff = dim(g, &k("feed_forward_length"))?;
        if n_embd % n_head != 0 && opt_dim(g, &k("attention.key_length"))?.is_none() {
            return Err(PhiError::BadHyperParam(format!(
                "head count {n_head} does not divide the embedding length {n_embd}"
            )));
        }
        let head_dim = opt_dim(g, &k("attention.key_length"))?.unwrap_or(n_embd / n_head);
        if let Some(vl) = opt_dim(g, &k("attention.value_length"))? {
            if vl != head_dim {
                return Err(PhiError::BadHyperParam(format!(
                    "value length {vl} differs from key length {head_dim}"
                )));
            }
        }
        if n_head % n_head_kv != 0 {
            return Err(PhiError::BadHyperParam(format!(
                "kv head count {n_head_kv} does not divide the head count {n_head}"
            )));
        }
        let n_rot = opt_dim(g, &k("rope.dimension_count"))?.unwrap_or(head_dim);
        if n_rot > head_dim || n_rot % 2 != 0 {
            return Err(PhiError::BadHyperParam(format!(
                "rope dimension count {n_rot} must be even and at most the head size {head_dim}"
            )));
        }
        let rope_base = opt(g.get_f32(&k("rope.freq_base")))?.unwrap_or(10000.0);
        let rms_eps = opt(g.get_f32(&k("attention.layer_norm_rms_epsilon")))?.unwrap_or(1e-5);
        if !(rope_base.is_finite() && rope_base > 0.0 && rms_eps.is_finite() && rms_eps >= 0.0) {
            return Err(PhiError::BadHyperParam(format!(
                "rope base {rope_base} / rms epsilon {rms_eps} out of range"
            )));
        }
        let n_ctx_train = opt_dim(g, &k("context_length"))?.unwrap_or(4096);
        let n_ctx_orig =
            opt_dim(g, &k("rope.scaling.original_context_length"))?.unwrap_or(n_ctx_train);
        let rope_attn_factor = opt(g.get_f32(&k("rope.scaling.attn_factor")))?.unwrap_or(1.0);
        if !(rope_attn_factor.is_finite() && rope_attn_factor > 0.0) {
            return Err(PhiError::BadHyperParam(format!(
                "rope attention factor {rope_attn_factor} out of range"
            )));
        }
        let sliding_window = match opt(g.get_u64(&k("attention.sliding_window")))? {
            Some(v) => usize::try_from(v).unwrap_or(usize::MAX),
            None => 0,
        };
        let emb = g
            .tensor("token_embd.weight")
            .map_err(|_| PhiError::MissingTensor {
                name: "token_embd.weight".into(),
            })?;
        let n_vocab = match emb.info.dims.as_slice() {
            [_, v] => check_dim("token_embd.weight rows", *v)?,
            d => {
                return Err(PhiError::TensorShape {
                    name: "token_embd.weight".into(),
                    expected: vec![n_embd as u64, 0],
                    found: d.to_vec(),
                })
            }
        };
        Ok(Config {
            arch,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            n_ff,
            n_rot,
            rope_base,
            rope_neox: arch == Arch::Phi3,
            rms_eps,
            n_ctx_train,
            n_ctx_orig,
            rope_attn_factor,
            sliding_window,
            n_vocab,
        })
    }

    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }
    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
}
