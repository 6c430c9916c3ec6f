//! Synthetic models: random weights of any decoder shape, written with the
//! project's own GGUF writer. Tests use them to run every code path on a
//! fresh clone; benchmarks use them to measure without a multi-GB download.

use crate::config::Arch;
use crate::error::{PhiError, Result};
use phi_gguf::{GgmlType, Gguf, GgufWriter, Value, ValueType};
use rayon::prelude::*;
use std::io::Write;

/// The shape and variant of a synthetic decoder.
#[derive(Debug, Clone)]
pub struct SyntheticSpec {
    pub arch: Arch,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    /// Rotated dims per head (head_dim = n_embd / n_head).
    pub n_rot: usize,
    /// At least 259: `<unk>`, `<s>`, `</s>` and the 256 byte tokens come first.
    pub n_vocab: usize,
    pub n_ctx_train: usize,
    /// Sliding attention window (0 = none).
    pub sliding_window: usize,
    /// LongRoPE: original context length, long/short factors, attention factor.
    pub longrope_orig_ctx: Option<usize>,
    /// No `output.weight`: the output projection reuses `token_embd`.
    pub tied_embeddings: bool,
    /// Type of the 2-D weights (norms stay F32): F32, F16, BF16, Q4_0, Q4_1,
    /// Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K or Q6_K (see [`weight_types`]). Each
    /// row is generated in f32 and quantized on its own, so no f32 copy of a
    /// whole model is ever held.
    pub weight_type: GgmlType,
    pub seed: u64,
}

impl SyntheticSpec {
    /// A tiny Phi-3 (2 layers, 128 wide) for tests.
    pub fn tiny_phi3() -> SyntheticSpec {
        SyntheticSpec {
            arch: Arch::Phi3,
            n_embd: 128,
            n_ff: 256,
            n_layer: 2,
            n_head: 4,
            n_head_kv: 4,
            n_rot: 32,
            n_vocab: 320,
            n_ctx_train: 4096,
            sliding_window: 0,
            longrope_orig_ctx: None,
            tied_embeddings: false,
            weight_type: GgmlType::F32,
            seed: 1,
        }
    }

    /// Phi-3-mini's shape (3.8 B parameters) with weights of `ty`, for
    /// benchmarks without the real file.
    pub fn phi3_mini(ty: GgmlType) -> SyntheticSpec {
        SyntheticSpec {
            arch: Arch::Phi3,
            n_embd: 3072,
            n_ff: 8192,
            n_layer: 32,
            n_head: 32,
            n_head_kv: 32,
            n_rot: 96,
            n_vocab: 32064,
            n_ctx_train: 4096,
            sliding_window: 0,
            longrope_orig_ctx: None,
            tied_embeddings: false,
            weight_type: ty,
            seed: 1,
        }
    }

    fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }
}

/// The 2-D weight types [`build`] can write.
pub fn weight_types() -> &'static [GgmlType] {
    &[
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::IQ4_NL,
        GgmlType::IQ4_XS,
    ]
}

/// `rows` random rows of `cols` values, uniform in ±`scale`, as `ty`. Row `r`
/// comes from its own generator seeded by (`seed`, `r`), so rows are made
/// in parallel and the result does not depend on the thread count.
fn random_matrix(ty: GgmlType, cols: usize, rows: usize, scale: f32, seed: u64) -> Result<Vec<u8>> {
    let bad = || {
        PhiError::InvalidArgument(format!(
            "a synthetic {rows} x {cols} matrix cannot be stored as {ty} \
             ({cols} is not a multiple of its block size {})",
            ty.block_size()
        ))
    };
    if !cols.is_multiple_of(ty.block_size()) {
        return Err(bad());
    }
    let row_bytes = (cols / ty.block_size())
        .checked_mul(ty.type_size())
        .ok_or_else(bad)?;
    let total = row_bytes.checked_mul(rows).ok_or_else(bad)?;
    let mut data = vec![0u8; total];
    data.par_chunks_mut(row_bytes)
        .enumerate()
        .try_for_each_init(
            || vec![0f32; cols],
            |x, (r, out)| {
                let mut rng = Rng(seed ^ (r as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
                for v in x.iter_mut() {
                    *v = rng.uniform() * scale;
                }
                phi_kernels::quantize_row(ty, x, out)
            },
        )?;
    Ok(data)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// Builds the GGUF bytes of a synthetic model.
pub fn build(spec: &SyntheticSpec) -> Result<Vec<u8>> {
    Ok(writer(spec)?.to_bytes()?)
}

/// Writes a synthetic model to `out` (a file, for models too large to hold
/// twice in memory); returns the bytes written.
pub fn write(spec: &SyntheticSpec, out: impl Write) -> Result<u64> {
    Ok(writer(spec)?.write_to(out)?)
}

/// Writes the model in `weights` (e.g. a synthetic one) with the tokenizer
/// of `vocab` (any GGUF with `tokenizer.*` keys, a vocab-only file works)
/// instead of its own, tensor by tensor; returns the bytes written. The
/// model's vocabulary size must be the tokenizer's (the loader checks).
pub fn write_with_vocab(weights: &Gguf, vocab: &Gguf, out: impl Write) -> Result<u64> {
    let mut w = GgufWriter::new();
    for (k, v) in weights.metadata() {
        if !k.starts_with("tokenizer.") {
            w.add_metadata(k.clone(), v.clone())?;
        }
    }
    for (k, v) in vocab.metadata() {
        if k.starts_with("tokenizer.") {
            w.add_metadata(k.clone(), v.clone())?;
        }
    }
    let names: Vec<&str> = weights.tensors().iter().map(|t| t.name.as_str()).collect();
    for t in weights.tensors() {
        w.add_tensor_deferred(t.name.clone(), t.ggml_type, &t.dims)?;
    }
    Ok(w.write_to_with(out, |i, _| Ok(weights.tensor(names[i])?.data.to_vec()))?)
}

fn writer(spec: &SyntheticSpec) -> Result<GgufWriter> {
    let s = spec;
    if s.n_vocab < 259 || s.n_head == 0 || !s.n_embd.is_multiple_of(s.n_head) || s.n_head_kv == 0 {
        return Err(PhiError::InvalidArgument(format!(
            "synthetic spec is inconsistent: {s:?}"
        )));
    }
    if !weight_types().contains(&s.weight_type) {
        return Err(PhiError::InvalidArgument(format!(
            "synthetic weights of type {} are not supported yet",
            s.weight_type
        )));
    }
    let a = s.arch.name();
    let mut w = GgufWriter::new();
    let mut meta = |k: &str, v: Value| w.add_metadata(k, v);
    meta("general.architecture", Value::String(a.into()))?;
    meta("general.name", Value::String(format!("synthetic {a}")))?;
    let u32v = |v: usize| Value::U32(v as u32);
    meta(&format!("{a}.context_length"), u32v(s.n_ctx_train))?;
    meta(&format!("{a}.embedding_length"), u32v(s.n_embd))?;
    meta(&format!("{a}.feed_forward_length"), u32v(s.n_ff))?;
    meta(&format!("{a}.block_count"), u32v(s.n_layer))?;
    meta(&format!("{a}.attention.head_count"), u32v(s.n_head))?;
    meta(&format!("{a}.attention.head_count_kv"), u32v(s.n_head_kv))?;
    meta(
        &format!("{a}.attention.layer_norm_rms_epsilon"),
        Value::F32(1e-5),
    )?;
    meta(&format!("{a}.rope.dimension_count"), u32v(s.n_rot))?;
    meta(&format!("{a}.rope.freq_base"), Value::F32(10000.0))?;
    if s.sliding_window > 0 {
        meta(
            &format!("{a}.attention.sliding_window"),
            u32v(s.sliding_window),
        )?;
    }
    if let Some(orig) = s.longrope_orig_ctx {
        meta(
            &format!("{a}.rope.scaling.original_context_length"),
            u32v(orig),
        )?;
        meta(&format!("{a}.rope.scaling.attn_factor"), Value::F32(1.19))?;
    }
    // A byte-level SentencePiece vocabulary: <unk> <s> </s>, 256 byte tokens, filler pieces.
    let mut tokens = vec!["<unk>".to_string(), "<s>".into(), "</s>".into()];
    tokens.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
    while tokens.len() < s.n_vocab {
        tokens.push(format!("▁t{}", tokens.len()));
    }
    let types: Vec<Value> = (0..s.n_vocab)
        .map(|i| {
            Value::I32(if i == 0 {
                2
            } else if i < 3 {
                3
            } else if i < 259 {
                6
            } else {
                1
            })
        })
        .collect();
    let scores: Vec<Value> = (0..s.n_vocab).map(|i| Value::F32(-(i as f32))).collect();
    meta("tokenizer.ggml.model", Value::String("llama".into()))?;
    meta(
        "tokenizer.ggml.tokens",
        Value::Array(
            ValueType::String,
            tokens.into_iter().map(Value::String).collect(),
        ),
    )?;
    meta(
        "tokenizer.ggml.scores",
        Value::Array(ValueType::F32, scores),
    )?;
    meta(
        "tokenizer.ggml.token_type",
        Value::Array(ValueType::I32, types),
    )?;
    meta("tokenizer.ggml.bos_token_id", Value::U32(1))?;
    meta("tokenizer.ggml.eos_token_id", Value::U32(2))?;
    meta("tokenizer.ggml.unknown_token_id", Value::U32(0))?;
    meta("tokenizer.ggml.add_bos_token", Value::Bool(true))?;

    let mut rng = Rng(s.seed);
    let (e, hd) = (s.n_embd, s.head_dim());
    let (qd, kvd) = (s.n_head * hd, s.n_head_kv * hd);
    let mut add_mat =
        |w: &mut GgufWriter, name: &str, cols: usize, rows: usize, scale: f32| -> Result<()> {
            let ty = s.weight_type;
            let bytes = random_matrix(ty, cols, rows, scale, rng.next())?;
            Ok(w.add_tensor(name, ty, &[cols as u64, rows as u64], bytes)?)
        };
    let norm = |n: usize, rng_seed: u64| -> Vec<u8> {
        let mut r = Rng(rng_seed);
        (0..n)
            .flat_map(|_| (1.0 + 0.1 * r.uniform()).to_le_bytes())
            .collect()
    };
    // Scales keep activations O(1) so logits are spread out but finite.
    let ws = 1.0 / (e as f32).sqrt() * 1.7;
    add_mat(&mut w, "token_embd.weight", e, s.n_vocab, 1.0)?;
    for i in 0..s.n_layer {
        let n = |x: &str| format!("blk.{i}.{x}.weight");
        w.add_tensor(
            n("attn_norm"),
            GgmlType::F32,
            &[e as u64],
            norm(e, s.seed + 100 + i as u64),
        )?;
        w.add_tensor(
            n("ffn_norm"),
            GgmlType::F32,
            &[e as u64],
            norm(e, s.seed + 200 + i as u64),
        )?;
        match s.arch {
            Arch::Phi3 => {
                add_mat(&mut w, &n("attn_qkv"), e, qd + 2 * kvd, ws)?;
                add_mat(&mut w, &n("ffn_up"), e, 2 * s.n_ff, ws)?;
            }
            Arch::Llama => {
                add_mat(&mut w, &n("attn_q"), e, qd, ws)?;
                add_mat(&mut w, &n("attn_k"), e, kvd, ws)?;
                add_mat(&mut w, &n("attn_v"), e, kvd, ws)?;
                add_mat(&mut w, &n("ffn_gate"), e, s.n_ff, ws)?;
                add_mat(&mut w, &n("ffn_up"), e, s.n_ff, ws)?;
            }
        }
        add_mat(&mut w, &n("attn_output"), qd, e, ws)?;
        add_mat(
            &mut w,
            &n("ffn_down"),
            s.n_ff,
            e,
            1.0 / (s.n_ff as f32).sqrt(),
        )?;
    }
    w.add_tensor(
        "output_norm.weight",
        GgmlType::F32,
        &[e as u64],
        norm(e, s.seed + 300),
    )?;
    if !s.tied_embeddings {
        add_mat(&mut w, "output.weight", e, s.n_vocab, ws * 2.0)?;
    }
    if s.longrope_orig_ctx.is_some() {
        let half = s.n_rot / 2;
        let long: Vec<u8> = (0..half)
            .flat_map(|i| (1.0 + 3.0 * i as f32 / half as f32).to_le_bytes())
            .collect();
        let short: Vec<u8> = (0..half)
            .flat_map(|i| (1.0 + 0.2 * i as f32 / half as f32).to_le_bytes())
            .collect();
        w.add_tensor(
            "rope_factors_long.weight",
            GgmlType::F32,
            &[half as u64],
            long,
        )?;
        w.add_tensor(
            "rope_factors_short.weight",
            GgmlType::F32,
            &[half as u64],
            short,
        )?;
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Context, ContextParams, KvType, Model};
    use phi_gguf::Gguf;
    use std::sync::Arc;

    fn logits(ty: GgmlType) -> Vec<f32> {
        let spec = SyntheticSpec {
            n_embd: 256,
            n_ff: 512,
            n_rot: 64,
            weight_type: ty,
            ..SyntheticSpec::tiny_phi3()
        };
        let model = Model::from_gguf(Gguf::from_bytes(build(&spec).unwrap()).unwrap()).unwrap();
        let g = model.gguf();
        let qkv = g.tensor("blk.0.attn_qkv.weight").unwrap();
        assert_eq!(qkv.info.ggml_type, ty);
        let p = ContextParams {
            n_ctx: 16,
            n_threads: 1,
            kv_type: KvType::F32,
            ..ContextParams::default()
        };
        let mut ctx = Context::new(Arc::new(model), &p).unwrap();
        ctx.eval(&[1, 40, 300, 7, 99], true).unwrap();
        ctx.logits().to_vec()
    }

    /// Quantized synthetic weights are the f32 ones rounded: the logits
    /// stay close, closer for the finer formats.
    #[test]
    fn quantized_weights_round_the_f32_model() {
        let base = logits(GgmlType::F32);
        let spread = base.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(spread > 0.1);
        let err = |ty| {
            let l = logits(ty);
            let d = l
                .iter()
                .zip(&base)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            d / spread
        };
        let (q8, q6k, q4k, q4, q2k) = (
            err(GgmlType::Q8_0),
            err(GgmlType::Q6_K),
            err(GgmlType::Q4_K),
            err(GgmlType::Q4_0),
            err(GgmlType::Q2_K),
        );
        assert!(q8 < 0.02, "Q8_0 {q8}");
        assert!(q6k < 0.05, "Q6_K {q6k}");
        assert!(q4k < 0.25 && q4 < 0.25, "Q4_K {q4k}, Q4_0 {q4}");
        assert!(
            q8 < q4 && q6k < q4k && q4k < q2k,
            "finer formats must be closer"
        );
        assert!(q4 > 0.0);
    }

    #[test]
    fn rows_that_do_not_fill_blocks_are_errors() {
        let spec = SyntheticSpec {
            weight_type: GgmlType::Q4_K, // 128 columns < one 256-block
            ..SyntheticSpec::tiny_phi3()
        };
        let e = build(&spec).unwrap_err().to_string();
        assert!(e.contains("block size 256"), "{e}");
        let spec = SyntheticSpec {
            weight_type: GgmlType::IQ4_XS, // no quantizer
            ..SyntheticSpec::tiny_phi3()
        };
        assert!(build(&spec).is_err());
    }
}
