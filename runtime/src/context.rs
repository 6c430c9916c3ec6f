//! An inference context: KV cache, scratch buffers, thread pool, and the
//! forward pass of the decoder over a batch of tokens.

use crate::config::Config;
use crate::error::{PhiError, Result};
use crate::model::{GateUp, Mat, Model, Qkv};
use half::f16;
use half::slice::HalfFloatSliceExt;
use phi_gguf::GgmlType;
use phi_kernels::{attn, Scratch};
use rayon::prelude::*;
use std::sync::Arc;

pub use crate::threads::{default_threads, ThreadPool};

/// Element type of the KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvType {
    F32,
    #[default]
    F16,
    /// ggml's Q8_0 blocks (needs a head size that is a multiple of 32).
    Q8_0,
}

/// How a context is set up.
#[derive(Debug, Clone)]
pub struct ContextParams {
    /// Tokens the KV cache holds; 0 = the model's training context, capped at 4096.
    pub n_ctx: usize,
    /// Tokens processed per forward pass during prompt processing.
    pub n_batch: usize,
    /// Worker threads for decoding (one token per pass); 0 = one per physical core.
    pub n_threads: usize,
    /// Worker threads for prompt processing (several tokens per pass);
    /// 0 = as `n_threads`.
    pub n_threads_batch: usize,
    /// A pool to run on, shared with other contexts; when set, it runs both
    /// decoding and prompt processing and `n_threads` / `n_threads_batch`
    /// are not used. None = the context starts its own.
    pub thread_pool: Option<ThreadPool>,
    pub kv_type: KvType,
    /// Apply the model's declared sliding attention window (llama.cpp does not).
    pub sliding_window: bool,
    /// Refuse to allocate more than this many bytes for the KV cache and
    /// buffers (0 = what the system reports as available).
    pub max_memory: usize,
}

impl Default for ContextParams {
    fn default() -> Self {
        ContextParams {
            n_ctx: 0,
            n_batch: 512,
            n_threads: 0,
            n_threads_batch: 0,
            thread_pool: None,
            kv_type: KvType::F16,
            sliding_window: true,
            max_memory: 0,
        }
    }
}

/// Bytes a context needs for its KV cache and activation buffers, or None on overflow.
pub fn memory_needed(c: &Config, n_ctx: usize, n_batch: usize, kv: KvType) -> Option<usize> {
    let kv_elems = n_ctx.checked_mul(c.kv_dim())?.checked_mul(2 * c.n_layer)?;
    let kv_bytes = match kv {
        KvType::F32 => kv_elems.checked_mul(4)?,
        KvType::F16 => kv_elems.checked_mul(2)?,
        KvType::Q8_0 => q8_0_offset(kv_elems.checked_add(Q8_0_BLOCK.values - 1)?),
    };
    // Per batch token: x, xn, proj (n_embd each), q, attn, attn_heads (q_dim each),
    // k, v (kv_dim each), the fused projection output and gate/up (n_ff each).
    let per_token = 3 * c.n_embd
        + 3 * c.q_dim()
        + 2 * c.kv_dim()
        + (2 * c.n_ff).max(c.q_dim() + 2 * c.kv_dim())
        + 2 * c.n_ff
        + c.n_rot;
    let buf_bytes = n_batch.checked_mul(per_token)?.checked_mul(4)?;
    let scores = c
        .n_head
        .checked_mul(attn::GROUP)?
        .checked_mul(n_ctx)?
        .checked_mul(4)?;
    let logits = n_batch.checked_mul(c.n_vocab)?.checked_mul(4)?;
    kv_bytes
        .checked_add(buf_bytes)?
        .checked_add(scores)?
        .checked_add(logits)
}

/// MemAvailable from /proc/meminfo (Linux), if it can be read.
fn available_memory() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Checks `kv_type` against the model and the memory a cache of `n_cells`
/// cells with buffers for `n_batch` tokens needs against `max_memory` (0 =
/// what the system has available), then allocates the cells of every layer.
pub(crate) fn alloc_kv(
    c: &Config,
    kv_type: KvType,
    n_cells: usize,
    n_batch: usize,
    max_memory: usize,
) -> Result<Vec<LayerKv>> {
    if kv_type == KvType::Q8_0 && !c.head_dim.is_multiple_of(Q8_0_BLOCK.values) {
        return Err(PhiError::InvalidArgument(format!(
            "a q8_0 KV cache needs a head size that is a multiple of {} (this model's is {})",
            Q8_0_BLOCK.values, c.head_dim
        )));
    }
    let kv_elems = n_cells
        .checked_mul(c.kv_dim())
        .ok_or_else(|| PhiError::InvalidArgument(format!("context of {n_cells} is too large")))?;
    let needed = memory_needed(c, n_cells, n_batch, kv_type).ok_or_else(|| {
        PhiError::InvalidArgument(format!("context of {n_cells} tokens is too large"))
    })?;
    let limit = if max_memory > 0 {
        Some(max_memory)
    } else {
        available_memory()
    };
    if let Some(limit) = limit {
        if needed > limit {
            return Err(PhiError::OutOfMemory {
                needed,
                limit,
                n_ctx: n_cells,
            });
        }
    }
    Ok((0..c.n_layer)
        .map(|_| LayerKv {
            k: KvStore::new(kv_type, kv_elems),
            v: KvStore::new(kv_type, kv_elems),
        })
        .collect())
}

pub(crate) enum KvStore {
    F32(Vec<f32>),
    /// f16 bits: a `Vec<u16>` of zeros comes from calloc, so an untouched
    /// cache costs no resident memory (a `Vec<f16>` would be written eagerly).
    F16(Vec<u16>),
    /// Q8_0 blocks ([`Q8_0_BLOCK`]).
    Q8_0(Vec<u8>),
}

/// The block layout of a Q8_0 KV store, as the kernels describe it.
const Q8_0_BLOCK: phi_kernels::BlockLayout = match phi_kernels::layout(GgmlType::Q8_0) {
    Some(l) => l,
    None => panic!("the kernels describe Q8_0"),
};

/// Byte offset of element `at` in a Q8_0 store (`at` is a whole number of
/// blocks: rows are whole heads, checked by `Context::new`).
fn q8_0_offset(at: usize) -> usize {
    at / Q8_0_BLOCK.values * Q8_0_BLOCK.bytes
}

impl KvStore {
    pub(crate) fn new(ty: KvType, n: usize) -> KvStore {
        match ty {
            KvType::F32 => KvStore::F32(vec![0.0; n]),
            KvType::F16 => KvStore::F16(vec![0u16; n]),
            KvType::Q8_0 => KvStore::Q8_0(vec![0u8; q8_0_offset(n)]),
        }
    }
    fn write(&mut self, at: usize, src: &[f32]) {
        match self {
            KvStore::F32(v) => v[at..at + src.len()].copy_from_slice(src),
            // One vectorised conversion per row (half's F16C slice path;
            // round to nearest even, as `f16::from_f32`).
            KvStore::F16(v) => bytemuck::cast_slice_mut::<u16, f16>(&mut v[at..at + src.len()])
                .convert_from_f32_slice(src),
            KvStore::Q8_0(v) => {
                let (a, b) = (q8_0_offset(at), q8_0_offset(at + src.len()));
                // Lengths are whole blocks: Context::new checked the head size.
                phi_kernels::quantize_row(GgmlType::Q8_0, src, &mut v[a..b])
                    .expect("KV rows are whole Q8_0 blocks");
            }
        }
    }
    /// The rows from element `at` on (a whole number of blocks for Q8_0).
    fn rows(&self, at: usize) -> attn::KvRows<'_> {
        match self {
            KvStore::F32(v) => attn::KvRows::F32(&v[at..]),
            KvStore::F16(v) => attn::KvRows::F16(bytemuck::cast_slice(&v[at..])),
            KvStore::Q8_0(v) => attn::KvRows::Q8_0(&v[q8_0_offset(at)..]),
        }
    }
}

pub(crate) struct LayerKv {
    pub(crate) k: KvStore,
    pub(crate) v: KvStore,
}

/// Activations for one batch, allocated once per context.
pub(crate) struct Buffers {
    x: Vec<f32>,
    xn: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    fused: Vec<f32>,
    attn: Vec<f32>,
    attn_heads: Vec<f32>,
    scores: Vec<f32>,
    proj: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

/// One sequence's state: KV cache and position. Used by one thread at a time;
/// many contexts may share one [`Model`].
///
/// ```
/// # use std::sync::Arc;
/// # use phi::{Context, ContextParams, KvType, Model};
/// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/models/phi3-tiny-q8_0.gguf");
/// let model = Arc::new(Model::load(path)?);
/// let params = ContextParams { n_ctx: 128, kv_type: KvType::F32, ..Default::default() };
/// let mut ctx = Context::new(model, &params)?;
/// ctx.eval(&[1, 391, 464], true)?; // one batched pass, logits for every position
/// assert_eq!(ctx.logits().len(), 3 * ctx.model().config().n_vocab);
/// ctx.eval(&[269], false)?; // then one token through the KV cache
/// assert_eq!(ctx.n_past(), 4);
/// # Ok::<(), phi::PhiError>(())
/// ```
pub struct Context {
    model: Arc<Model>,
    n_ctx: usize,
    n_batch: usize,
    window: usize,
    n_past: usize,
    kv: Vec<LayerKv>,
    buf: Buffers,
    /// Rotary inverse frequencies, LongRoPE factors applied.
    inv_freq: Vec<f64>,
    scratch: Scratch,
    /// Runs decoding passes (one token).
    pool: ThreadPool,
    /// Runs prompt passes (several tokens): `pool` again unless
    /// `n_threads_batch` asked for another size.
    pool_batch: ThreadPool,
    logits: Vec<f32>,
    /// Time spent in each layer since timing was switched on.
    layer_times: Option<Vec<std::time::Duration>>,
}

impl Context {
    /// Allocates the KV cache and buffers for `params`.
    pub fn new(model: Arc<Model>, params: &ContextParams) -> Result<Context> {
        let c = &model.config;
        let n_ctx = if params.n_ctx == 0 {
            c.n_ctx_train.min(4096)
        } else {
            params.n_ctx
        };
        if params.n_batch == 0 {
            return Err(PhiError::InvalidArgument(
                "the batch size must be at least 1".into(),
            ));
        }
        let n_batch = params.n_batch.min(n_ctx);
        let kv = alloc_kv(c, params.kv_type, n_ctx, n_batch, params.max_memory)?;
        let buf = Buffers::new(&model, n_batch, n_ctx);
        let inv_freq = rotary_inv_freq(&model, n_ctx);
        let window = if params.sliding_window {
            c.sliding_window
        } else {
            0
        };
        let (pool, pool_batch) = match &params.thread_pool {
            Some(shared) => (shared.clone(), shared.clone()),
            None => {
                let pool = ThreadPool::new(params.n_threads)?;
                let batch = params.n_threads_batch;
                let pool_batch = if batch == 0 || batch == pool.n_threads() {
                    pool.clone()
                } else {
                    ThreadPool::new(batch)?
                };
                (pool, pool_batch)
            }
        };
        Ok(Context {
            model,
            n_ctx,
            n_batch,
            window,
            n_past: 0,
            kv,
            buf,
            inv_freq,
            scratch: Scratch::default(),
            pool,
            pool_batch,
            logits: Vec::new(),
            layer_times: None,
        })
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }
    /// Tokens the KV cache can hold.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }
    /// Tokens already in the KV cache.
    pub fn n_past(&self) -> usize {
        self.n_past
    }
    /// Worker threads of decoding passes.
    pub fn n_threads(&self) -> usize {
        self.pool.n_threads()
    }
    /// Worker threads of prompt passes.
    pub fn n_threads_batch(&self) -> usize {
        self.pool_batch.n_threads()
    }
    /// Starts (or stops) accumulating the time each layer takes.
    pub fn set_layer_timing(&mut self, on: bool) {
        self.layer_times = on.then(|| vec![Default::default(); self.model.config.n_layer]);
    }

    /// Time spent in each layer since [`set_layer_timing`](Self::set_layer_timing).
    pub fn layer_times(&self) -> &[std::time::Duration] {
        self.layer_times.as_deref().unwrap_or(&[])
    }

    /// Forgets the sequence (the cache is overwritten from position 0).
    pub fn reset(&mut self) {
        self.n_past = 0;
    }
    /// Drops cached tokens from position `n` on.
    pub fn truncate(&mut self, n: usize) {
        self.n_past = self.n_past.min(n);
    }

    /// Logits of the last [`eval`](Self::eval): `[rows × n_vocab]`, row-major.
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// The last row of [`logits`](Self::logits).
    pub fn last_logits(&self) -> &[f32] {
        let n = self.model.config.n_vocab;
        &self.logits[self.logits.len().saturating_sub(n)..]
    }

    /// Appends `tokens` to the sequence and runs them through the model in
    /// batches. Afterwards [`logits`](Self::logits) holds one row per token when
    /// `all_logits`, else only the last token's row.
    pub fn eval(&mut self, tokens: &[u32], all_logits: bool) -> Result<()> {
        let n_vocab = self.model.config.n_vocab;
        if tokens.is_empty() {
            return Err(PhiError::InvalidArgument("no tokens to evaluate".into()));
        }
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(PhiError::BadToken { id, n_vocab });
        }
        let needed = self.n_past + tokens.len();
        if needed > self.n_ctx {
            return Err(PhiError::ContextFull {
                n_ctx: self.n_ctx,
                needed,
            });
        }
        let rows = if all_logits { tokens.len() } else { 1 };
        self.logits.clear();
        self.logits.resize(rows * n_vocab, 0.0);
        let n_batch = self.n_batch;
        let n_chunks = tokens.len().div_ceil(n_batch);
        for (i, chunk) in tokens.chunks(n_batch).enumerate() {
            let out_rows = if all_logits {
                Some(i * n_batch..i * n_batch + chunk.len())
            } else if i + 1 == n_chunks {
                Some(0..1)
            } else {
                None
            };
            self.forward(chunk, out_rows)?;
        }
        Ok(())
    }

    /// Runs one batch at positions n_past.. and writes logits for the batch's
    /// rows into `self.logits[rows]` (all of them, or just the last token).
    fn forward(&mut self, tokens: &[u32], out_rows: Option<std::ops::Range<usize>>) -> Result<()> {
        // The one place the thread count reaches the kernels (see `threads`).
        let pool = if tokens.len() > 1 {
            self.pool_batch.clone()
        } else {
            self.pool.clone()
        };
        pool.install(|| self.forward_inner(tokens, out_rows))
    }

    fn forward_inner(
        &mut self,
        tokens: &[u32],
        out_rows: Option<std::ops::Range<usize>>,
    ) -> Result<()> {
        let model = Arc::clone(&self.model);
        let b = tokens.len();
        let runs = [Run {
            cell0: 0,
            pos0: self.n_past,
            len: b,
        }];
        let mut pass = Pass {
            model: &model,
            kv: &mut self.kv,
            buf: &mut self.buf,
            scratch: &mut self.scratch,
            inv_freq: &self.inv_freq,
            window: self.window,
            n_ctx: self.n_ctx,
            layer_times: self.layer_times.as_deref_mut(),
        };
        pass.layers(tokens, &runs)?;
        self.n_past += b;
        if let Some(rows) = out_rows {
            let nv = model.config.n_vocab;
            let first = b - rows.len();
            let out = &mut self.logits[rows.start * nv..rows.end * nv];
            pass.logits(first..b, out)?;
        }
        Ok(())
    }
}

impl Buffers {
    /// Activation buffers for batches of up to `b` tokens attending over up
    /// to `n_ctx` positions each.
    pub(crate) fn new(model: &Model, b: usize, n_ctx: usize) -> Buffers {
        let c = &model.config;
        let ff_fused = matches!(
            model.layers.first().map(|l| &l.gate_up),
            Some(GateUp::Fused(_))
        );
        let qkv_fused = matches!(model.layers.first().map(|l| &l.qkv), Some(Qkv::Fused(_)));
        let fused_len = b * usize::max(
            if ff_fused { 2 * c.n_ff } else { 0 },
            if qkv_fused {
                c.q_dim() + 2 * c.kv_dim()
            } else {
                0
            },
        );
        Buffers {
            x: vec![0.0; b * c.n_embd],
            xn: vec![0.0; b * c.n_embd],
            q: vec![0.0; b * c.q_dim()],
            k: vec![0.0; b * c.kv_dim()],
            v: vec![0.0; b * c.kv_dim()],
            fused: vec![0.0; fused_len],
            attn: vec![0.0; b * c.q_dim()],
            attn_heads: vec![0.0; b * c.q_dim()],
            scores: vec![0.0; c.n_head * attn::GROUP * n_ctx],
            proj: vec![0.0; b * c.n_embd],
            gate: vec![0.0; b * c.n_ff],
            up: vec![0.0; if ff_fused { 0 } else { b * c.n_ff }],
            cos: vec![0.0; b * c.n_rot / 2],
            sin: vec![0.0; b * c.n_rot / 2],
        }
    }
}

/// Rotary inverse frequencies for a context of `n_ctx`, LongRoPE factors applied.
pub(crate) fn rotary_inv_freq(model: &Model, n_ctx: usize) -> Vec<f64> {
    let c = &model.config;
    let factors = model.rope_factors(n_ctx);
    (0..c.n_rot / 2)
        .map(|i| {
            let f = (c.rope_base as f64).powf(-2.0 * i as f64 / c.n_rot as f64);
            match factors {
                Some(ff) => f / ff[i] as f64,
                None => f,
            }
        })
        .collect()
}

/// Consecutive tokens of one forward pass that belong to one sequence: they
/// sit at positions `pos0..pos0 + len` of that sequence, whose KV cells start
/// at cell `cell0` of the cache (0 for a [`Context`]; one block of `n_ctx`
/// cells per sequence in a [`Batch`](crate::batch::Batch)).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run {
    pub(crate) cell0: usize,
    pub(crate) pos0: usize,
    pub(crate) len: usize,
}

/// One forward pass over the layers: everything it reads and writes. Both
/// [`Context`] (one sequence) and [`Batch`](crate::batch::Batch) (several)
/// drive the decoder through it, so they compute the same numbers.
pub(crate) struct Pass<'a> {
    pub(crate) model: &'a Model,
    pub(crate) kv: &'a mut [LayerKv],
    pub(crate) buf: &'a mut Buffers,
    pub(crate) scratch: &'a mut Scratch,
    pub(crate) inv_freq: &'a [f64],
    pub(crate) window: usize,
    /// Positions one sequence can hold (the stride of the score buffer).
    pub(crate) n_ctx: usize,
    pub(crate) layer_times: Option<&'a mut [std::time::Duration]>,
}

impl Pass<'_> {
    /// Runs `tokens` (grouped into `runs`, in order) through every layer,
    /// writing their keys and values into their sequences' cells. The final
    /// hidden states stay in the buffers for [`logits`](Self::logits).
    pub(crate) fn layers(&mut self, tokens: &[u32], runs: &[Run]) -> Result<()> {
        let model = self.model;
        let c = &model.config;
        let b = tokens.len();
        let (e, qd, kvd) = (c.n_embd, c.q_dim(), c.kv_dim());
        let buf = &mut *self.buf;
        let scratch = &mut *self.scratch;

        // Token embeddings.
        let emb = model.weights(&model.tok_embd)?;
        let row_bytes = emb.row_bytes();
        for (t, &id) in tokens.iter().enumerate() {
            let src = &emb.data[id as usize * row_bytes..(id as usize + 1) * row_bytes];
            phi_kernels::dequantize_row(emb.ty, src, &mut buf.x[t * e..(t + 1) * e])?;
        }

        // Rotary angles for each token's position in its own sequence.
        let half = c.n_rot / 2;
        let positions = runs.iter().flat_map(|r| r.pos0..r.pos0 + r.len);
        for (t, pos) in positions.enumerate() {
            let p = pos as f64;
            for i in 0..half {
                let (s, co) = (p * self.inv_freq[i]).sin_cos();
                buf.cos[t * half + i] = co as f32 * c.rope_attn_factor;
                buf.sin[t * half + i] = s as f32 * c.rope_attn_factor;
            }
        }

        for (li, layer) in model.layers.iter().enumerate() {
            let t_layer = self.layer_times.is_some().then(std::time::Instant::now);
            rms_norm(
                &buf.x[..b * e],
                &layer.attn_norm,
                c.rms_eps,
                &mut buf.xn[..b * e],
            );
            let xn = &buf.xn[..b * e];
            match &layer.qkv {
                Qkv::Fused(w) => {
                    let out = &mut buf.fused[..b * (qd + 2 * kvd)];
                    mm(model, w, xn, b, out, scratch)?;
                    for t in 0..b {
                        let row = &out[t * (qd + 2 * kvd)..(t + 1) * (qd + 2 * kvd)];
                        buf.q[t * qd..(t + 1) * qd].copy_from_slice(&row[..qd]);
                        buf.k[t * kvd..(t + 1) * kvd].copy_from_slice(&row[qd..qd + kvd]);
                        buf.v[t * kvd..(t + 1) * kvd].copy_from_slice(&row[qd + kvd..]);
                    }
                }
                Qkv::Split { q, k, v } => {
                    mm(model, q, xn, b, &mut buf.q[..b * qd], scratch)?;
                    mm(model, k, xn, b, &mut buf.k[..b * kvd], scratch)?;
                    mm(model, v, xn, b, &mut buf.v[..b * kvd], scratch)?;
                }
            }
            for t in 0..b {
                let (cos, sin) = (
                    &buf.cos[t * half..(t + 1) * half],
                    &buf.sin[t * half..(t + 1) * half],
                );
                for h in buf.q[t * qd..(t + 1) * qd].chunks_exact_mut(c.head_dim) {
                    rope(h, cos, sin, c.rope_neox);
                }
                for h in buf.k[t * kvd..(t + 1) * kvd].chunks_exact_mut(c.head_dim) {
                    rope(h, cos, sin, c.rope_neox);
                }
            }
            let kv = &mut self.kv[li];
            let mut t0 = 0;
            for r in runs {
                let rows = t0 * kvd..(t0 + r.len) * kvd;
                kv.k.write((r.cell0 + r.pos0) * kvd, &buf.k[rows.clone()]);
                kv.v.write((r.cell0 + r.pos0) * kvd, &buf.v[rows]);
                t0 += r.len;
            }

            // Head-major queries (buf.attn is free until the output lands).
            let d = c.head_dim;
            for t in 0..b {
                for h in 0..c.n_head {
                    let src = &buf.q[t * qd + h * d..t * qd + (h + 1) * d];
                    buf.attn[(h * b + t) * d..(h * b + t + 1) * d].copy_from_slice(src);
                }
            }
            attention(
                c,
                kv,
                &buf.attn[..b * qd],
                runs,
                b,
                self.window,
                self.n_ctx,
                &mut buf.attn_heads[..b * qd],
                &mut buf.scores,
            );
            for h in 0..c.n_head {
                for t in 0..b {
                    let src = &buf.attn_heads[(h * b + t) * d..(h * b + t + 1) * d];
                    buf.attn[t * qd + h * d..t * qd + (h + 1) * d].copy_from_slice(src);
                }
            }
            mm(
                model,
                &layer.attn_out,
                &buf.attn[..b * qd],
                b,
                &mut buf.proj[..b * e],
                scratch,
            )?;
            add_assign(&mut buf.x[..b * e], &buf.proj[..b * e]);

            rms_norm(
                &buf.x[..b * e],
                &layer.ffn_norm,
                c.rms_eps,
                &mut buf.xn[..b * e],
            );
            let xn = &buf.xn[..b * e];
            let ff = c.n_ff;
            match &layer.gate_up {
                GateUp::Fused(w) => {
                    let out = &mut buf.fused[..b * 2 * ff];
                    mm(model, w, xn, b, out, scratch)?;
                    for t in 0..b {
                        let row = &out[t * 2 * ff..(t + 1) * 2 * ff];
                        let (g, u) = row.split_at(ff);
                        swiglu(g, u, &mut buf.gate[t * ff..(t + 1) * ff]);
                    }
                }
                GateUp::Split { gate, up } => {
                    mm(model, gate, xn, b, &mut buf.gate[..b * ff], scratch)?;
                    mm(model, up, xn, b, &mut buf.up[..b * ff], scratch)?;
                    for (g, u) in buf.gate[..b * ff].iter_mut().zip(&buf.up[..b * ff]) {
                        *g = silu(*g) * u;
                    }
                }
            }
            mm(
                model,
                &layer.down,
                &buf.gate[..b * ff],
                b,
                &mut buf.proj[..b * e],
                scratch,
            )?;
            add_assign(&mut buf.x[..b * e], &buf.proj[..b * e]);
            if let (Some(times), Some(t0)) = (self.layer_times.as_deref_mut(), t_layer) {
                times[li] += t0.elapsed();
            }
        }
        Ok(())
    }

    /// Logits of the tokens at batch indices `rows` (after [`layers`](Self::layers)),
    /// one row of `n_vocab` each, into `out`.
    pub(crate) fn logits(
        &mut self,
        rows: impl ExactSizeIterator<Item = usize>,
        out: &mut [f32],
    ) -> Result<()> {
        let model = self.model;
        let c = &model.config;
        let e = c.n_embd;
        let n = rows.len();
        let buf = &mut *self.buf;
        for (i, r) in rows.enumerate() {
            rms_norm(
                &buf.x[r * e..(r + 1) * e],
                &model.output_norm,
                c.rms_eps,
                &mut buf.xn[i * e..(i + 1) * e],
            );
        }
        let out = &mut out[..n * c.n_vocab];
        mm(model, &model.output, &buf.xn[..n * e], n, out, self.scratch)
    }
}

fn mm(model: &Model, m: &Mat, x: &[f32], n: usize, y: &mut [f32], s: &mut Scratch) -> Result<()> {
    model.matmul(m, x, n, y, s)
}

/// RMSNorm as ggml computes it: mean of squares in f64, scale in f32, then × weight.
fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let n = w.len();
    for (xr, or) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let sum: f64 = xr.iter().map(|&v| (v as f64) * (v as f64)).sum();
        let mean = (sum / n as f64) as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for ((o, &v), &wi) in or.iter_mut().zip(xr).zip(w) {
            *o = (v * scale) * wi;
        }
    }
}

/// Rotates the first `2 * cos.len()` dims of one head in place.
fn rope(h: &mut [f32], cos: &[f32], sin: &[f32], neox: bool) {
    let half = cos.len();
    if neox {
        for i in 0..half {
            let (a, b) = (h[i], h[i + half]);
            h[i] = a * cos[i] - b * sin[i];
            h[i + half] = a * sin[i] + b * cos[i];
        }
    } else {
        for i in 0..half {
            let (a, b) = (h[2 * i], h[2 * i + 1]);
            h[2 * i] = a * cos[i] - b * sin[i];
            h[2 * i + 1] = a * sin[i] + b * cos[i];
        }
    }
}

#[inline]
fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

fn swiglu(g: &[f32], u: &[f32], out: &mut [f32]) {
    for ((o, &gv), &uv) in out.iter_mut().zip(g).zip(u) {
        *o = silu(gv) * uv;
    }
}

fn add_assign(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// Causal (optionally windowed) attention for the `b` tokens of `runs`, each
/// over its own sequence's cells. `q` and `out` are head-major
/// ([head][token][head_dim]); `scores` holds `attn::GROUP × n_ctx` floats
/// per head. Each token's result is the same whatever the runs around it
/// (see `phi_kernels::attn`), so batching never changes a sequence's output.
#[allow(clippy::too_many_arguments)]
fn attention(
    c: &Config,
    kv: &LayerKv,
    q: &[f32],
    runs: &[Run],
    b: usize,
    window: usize,
    n_ctx: usize,
    out: &mut [f32],
    scores: &mut [f32],
) {
    let d = c.head_dim;
    let kvd = c.kv_dim();
    let group = c.n_head / c.n_head_kv;
    let scale = 1.0 / (d as f32).sqrt();
    out.par_chunks_mut(b * d)
        .zip(q.par_chunks(b * d))
        .zip(scores.par_chunks_mut(attn::GROUP * n_ctx))
        .enumerate()
        .for_each(|(h, ((out_h, q_h), s))| {
            let kvh = h / group;
            let mut t0 = 0;
            for r in runs {
                let at = r.cell0 * kvd + kvh * d;
                let head = attn::KvHead {
                    k: kv.k.rows(at),
                    v: kv.v.rows(at),
                    stride: kvd,
                    dim: d,
                };
                // Up to GROUP consecutive tokens of the run at a time.
                let mut i = 0;
                while i < r.len {
                    let m = (r.len - i).min(attn::GROUP);
                    let mut spans: [std::ops::Range<usize>; attn::GROUP] = Default::default();
                    for (u, sp) in spans[..m].iter_mut().enumerate() {
                        let p = r.pos0 + i + u;
                        let lo = if window > 0 {
                            (p + 1).saturating_sub(window)
                        } else {
                            0
                        };
                        *sp = lo..p + 1;
                    }
                    let rows = (t0 + i) * d..(t0 + i + m) * d;
                    attn::attend(
                        &head,
                        &q_h[rows.clone()],
                        &spans[..m],
                        scale,
                        s,
                        &mut out_h[rows],
                    );
                    i += m;
                }
                t0 += r.len;
            }
        });
}
