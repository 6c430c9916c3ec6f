//! A decoder assembled from a GGUF file: hyper-parameters plus references
//! to the weight tensors, which stay in the memory map (zero-copy).

use crate::config::{Arch, Config};
use crate::error::{PhiError, Result};
use crate::tokenizer::Tokenizer;
use phi_gguf::{GgmlType, Gguf};
use phi_kernels::{Matrix, Scratch, Weights};
use std::path::Path;

/// A weight matrix inside the file: `rows` rows of `cols` elements.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mat {
    pub(crate) ty: GgmlType,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    /// Byte range in the file.
    offset: usize,
    len: usize,
    /// Index into `Model::matrices` (set when the model is assembled).
    matrix: usize,
}

/// The attention input projections: Phi-3 fuses q|k|v, Llama keeps them apart.
#[derive(Debug)]
pub(crate) enum Qkv {
    Fused(Mat),
    Split { q: Mat, k: Mat, v: Mat },
}

/// The feed-forward input projections: Phi-3 fuses gate|up, Llama keeps them apart.
#[derive(Debug)]
pub(crate) enum GateUp {
    Fused(Mat),
    Split { gate: Mat, up: Mat },
}

#[derive(Debug)]
pub(crate) struct Layer {
    pub(crate) attn_norm: Vec<f32>,
    pub(crate) qkv: Qkv,
    pub(crate) attn_out: Mat,
    pub(crate) ffn_norm: Vec<f32>,
    pub(crate) gate_up: GateUp,
    pub(crate) down: Mat,
}

/// A loaded model: read-only, shareable between contexts and threads.
///
/// The fields are the runtime's own (`pub(crate)`: the forward pass and the
/// batch engine read them); users see [`config`](Model::config),
/// [`tokenizer`](Model::tokenizer) and [`gguf`](Model::gguf).
pub struct Model {
    pub(crate) gguf: Gguf,
    /// Every matrix as the kernels prepared it for this CPU (mapped, or
    /// repacked into their interleaved layout).
    pub(crate) matrices: Vec<Matrix>,
    /// The byte range in the file of each of `matrices`.
    sources: Vec<std::ops::Range<usize>>,
    pub(crate) config: Config,
    pub(crate) tokenizer: Tokenizer,
    pub(crate) tok_embd: Mat,
    pub(crate) output_norm: Vec<f32>,
    /// The output projection (`token_embd` again when embeddings are tied).
    pub(crate) output: Mat,
    pub(crate) layers: Vec<Layer>,
    /// LongRoPE frequency factors (n_rot / 2 each), when the model has them.
    pub(crate) rope_factors_long: Option<Vec<f32>>,
    pub(crate) rope_factors_short: Option<Vec<f32>>,
}

/// How a model is loaded.
#[derive(Debug, Clone)]
pub struct ModelOptions {
    /// Repack the weights the kernels have a faster interleaved layout for on
    /// this CPU (the kernels' registry decides per type; e.g. on AVX2 and
    /// AVX-512 VNNI the Q4_x / Q5_x types, Q8_0, IQ4_NL and the K-quants
    /// Q2_K..Q6_K and IQ4_XS; on NEON the 32-element types and Q4_K..Q6_K) and
    /// release their mapped pages, so the weights are still resident only
    /// once. `false` keeps every weight in the mapping (zero-copy).
    /// Default: true; [`ModelOptions::from_env`]: unless `PHI_REPACK=0`.
    pub repack: bool,
    /// With `repack`: the types whose row groups the kernels pack with SIMD
    /// (x86: Q8_0, Q4_0, Q4_1, IQ4_NL, Q4_K, Q5_K, Q6_K) are not
    /// copied at load but packed group by group, in cache, each time they
    /// are multiplied: the same results, no copy (load is a map, the
    /// weights stay resident once), until [`Model::pack_streamed`] or
    /// [`Model::pack_in_background`] makes their copies (streamed decoding
    /// is slower: call one of them). `false` copies them at load like the
    /// other types. Default: false; [`ModelOptions::from_env`]: true unless
    /// `PHI_STREAM=0` (the `phi` command makes the copies in the
    /// background).
    pub stream: bool,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            repack: true,
            stream: false,
        }
    }
}

impl ModelOptions {
    /// The defaults, overridden by the environment: `PHI_REPACK=0` turns
    /// repacking off, `PHI_STREAM=0` streaming (read through
    /// `phi_kernels::Config::from_env`). Called
    /// by the program's front end (the `phi` command, the C API's
    /// `phi_model_default_params`), never by the library on its own.
    pub fn from_env() -> ModelOptions {
        let cfg = phi_kernels::Config::from_env();
        ModelOptions {
            repack: cfg.repack,
            stream: cfg.stream,
        }
    }
}

impl Model {
    /// Maps the file at `path` and assembles the decoder with the default
    /// options.
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        Model::load_with(path, &ModelOptions::default())
    }

    /// Maps the file at `path` and assembles the decoder.
    pub fn load_with(path: impl AsRef<Path>, options: &ModelOptions) -> Result<Model> {
        Model::from_gguf_with(Gguf::open(path)?, options)
    }

    /// Assembles the decoder from a parsed file with the default options.
    pub fn from_gguf(gguf: Gguf) -> Result<Model> {
        Model::from_gguf_with(gguf, &ModelOptions::default())
    }

    /// Assembles the decoder from a parsed file.
    pub fn from_gguf_with(gguf: Gguf, options: &ModelOptions) -> Result<Model> {
        let config = Config::from_gguf(&gguf)?;
        let tokenizer = Tokenizer::from_gguf(&gguf)?;
        if tokenizer.n_vocab() > config.n_vocab {
            return Err(PhiError::BadHyperParam(format!(
                "the vocabulary has {} tokens but token_embd.weight has only {} rows",
                tokenizer.n_vocab(),
                config.n_vocab
            )));
        }
        let c = &config;
        let (e, ff) = (c.n_embd as u64, c.n_ff as u64);
        let (qd, kvd) = (c.q_dim() as u64, c.kv_dim() as u64);
        let vocab = c.n_vocab as u64;

        let tok_embd = mat(&gguf, "token_embd.weight", e, vocab)?;
        let output_norm = vector(&gguf, "output_norm.weight", e)?;
        let output = if gguf.tensor("output.weight").is_ok() {
            mat(&gguf, "output.weight", e, vocab)?
        } else {
            tok_embd
        };
        // Not `with_capacity(n_layer)`: the count comes from the file, and a lying
        // one must fail on the first missing tensor, not allocate first (found by
        // fuzzing).
        let mut layers = Vec::new();
        for i in 0..c.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            let has = |s: &str| gguf.tensor(&n(s)).is_ok();
            let qkv = match c.arch {
                Arch::Phi3 if has("attn_qkv") || !has("attn_q") => {
                    Qkv::Fused(mat(&gguf, &n("attn_qkv"), e, qd + 2 * kvd)?)
                }
                _ => Qkv::Split {
                    q: mat(&gguf, &n("attn_q"), e, qd)?,
                    k: mat(&gguf, &n("attn_k"), e, kvd)?,
                    v: mat(&gguf, &n("attn_v"), e, kvd)?,
                },
            };
            let gate_up = match c.arch {
                Arch::Phi3 if !has("ffn_gate") => {
                    GateUp::Fused(mat(&gguf, &n("ffn_up"), e, 2 * ff)?)
                }
                _ => GateUp::Split {
                    gate: mat(&gguf, &n("ffn_gate"), e, ff)?,
                    up: mat(&gguf, &n("ffn_up"), e, ff)?,
                },
            };
            layers.push(Layer {
                attn_norm: vector(&gguf, &n("attn_norm"), e)?,
                qkv,
                attn_out: mat(&gguf, &n("attn_output"), qd, e)?,
                ffn_norm: vector(&gguf, &n("ffn_norm"), e)?,
                gate_up,
                down: mat(&gguf, &n("ffn_down"), ff, e)?,
            });
        }
        let half_rot = (c.n_rot / 2) as u64;
        let factors = |name: &str| -> Result<Option<Vec<f32>>> {
            if gguf.tensor(name).is_ok() {
                vector(&gguf, name, half_rot).map(Some)
            } else {
                Ok(None)
            }
        };
        let rope_factors_long = factors("rope_factors_long.weight")?;
        let rope_factors_short = factors("rope_factors_short.weight")?;
        let mut model = Model {
            gguf,
            matrices: Vec::new(),
            sources: Vec::new(),
            config,
            tokenizer,
            tok_embd,
            output_norm,
            output,
            layers,
            rope_factors_long,
            rope_factors_short,
        };
        model.prepare(options)?;
        Ok(model)
    }

    /// Hands every matrix to the kernels' registry, which keeps it mapped or
    /// repacks it; the mapped pages of repacked matrices are released.
    fn prepare(&mut self, options: &ModelOptions) -> Result<()> {
        let cfg = phi_kernels::Config {
            repack: options.repack,
            stream: options.stream,
            ..phi_kernels::Config::default()
        };
        // The embeddings are read row by row from the mapping: never repacked
        // (nor is the output projection when it is the same tensor).
        let tied = self.output.offset == self.tok_embd.offset;
        let mapped = phi_kernels::Config {
            repack: false,
            ..cfg
        };
        let mut mats: Vec<(&mut Mat, &phi_kernels::Config)> = Vec::new();
        for l in &mut self.layers {
            match &mut l.qkv {
                Qkv::Fused(m) => mats.push((m, &cfg)),
                Qkv::Split { q, k, v } => mats.extend([(q, &cfg), (k, &cfg), (v, &cfg)]),
            }
            match &mut l.gate_up {
                GateUp::Fused(m) => mats.push((m, &cfg)),
                GateUp::Split { gate, up } => mats.extend([(gate, &cfg), (up, &cfg)]),
            }
            mats.extend([(&mut l.attn_out, &cfg), (&mut l.down, &cfg)]);
        }
        mats.push((&mut self.output, if tied { &mapped } else { &cfg }));
        mats.push((&mut self.tok_embd, &mapped));
        for (m, cfg) in mats {
            let bytes = &self.gguf.bytes()[m.offset..m.offset + m.len];
            let w = Weights::new(m.ty, m.rows, m.cols, bytes)?;
            let prepared = phi_kernels::prepare(&w, cfg)?;
            if prepared.is_packed() {
                self.gguf.release(m.offset..m.offset + m.len);
            }
            m.matrix = self.matrices.len();
            self.matrices.push(prepared);
            self.sources.push(m.offset..m.offset + m.len);
        }
        Ok(())
    }

    /// Makes the packed copy of every streamed matrix
    /// ([`ModelOptions::stream`]) now, on the current rayon pool, and
    /// releases their mapped pages; returns how many it packed. The
    /// results do not change (see [`Matrix::pack_streamed`]), only the
    /// speed: decoding reads the copy at memory speed, while streamed
    /// matrices cost the packing of every group at every step.
    ///
    /// [`Matrix::pack_streamed`]: phi_kernels::Matrix::pack_streamed
    pub fn pack_streamed(&self) -> Result<usize> {
        let mut n = 0;
        for (m, range) in self.matrices.iter().zip(&self.sources) {
            if m.pack_streamed(&self.gguf.bytes()[range.clone()])? {
                self.gguf.release(range.clone());
                n += 1;
            }
        }
        Ok(n)
    }

    /// [`pack_streamed`](Self::pack_streamed) on a background thread (one
    /// thread of its own, at normal priority), so that a prompt can be
    /// evaluated from the streamed matrices right after loading while
    /// their copies are made; each matrix switches to its copy as soon as
    /// it is made. Does nothing when no matrix is streamed. Errors are
    /// printed on stderr (the matrix then stays streamed).
    pub fn pack_in_background(self: &std::sync::Arc<Self>) {
        if self.n_streamed() == 0 {
            return;
        }
        let model = std::sync::Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("phi-pack".into())
            .spawn(move || {
                // One thread: the inference pool keeps its threads.
                let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build();
                let r = match pool {
                    Ok(p) => p.install(|| model.pack_streamed()),
                    Err(e) => Err(PhiError::Internal(format!("no packing thread: {e}"))),
                };
                if let Err(e) = r {
                    eprintln!("phi: packing the weights in the background failed: {e}");
                }
            });
        if let Err(e) = spawned {
            eprintln!("phi: cannot start the packing thread: {e}");
        }
    }

    /// `y = W·x` for `n` tokens, with the kernels `m` was prepared for.
    pub(crate) fn matmul(
        &self,
        m: &Mat,
        x: &[f32],
        n: usize,
        y: &mut [f32],
        s: &mut Scratch,
    ) -> Result<()> {
        let matrix = self.matrices.get(m.matrix).ok_or_else(|| {
            PhiError::Kernel(phi_kernels::KernelError::Shape(
                "matrix was not prepared by this model".into(),
            ))
        })?;
        let source = &self.gguf.bytes()[m.offset..m.offset + m.len];
        phi_kernels::matmul(matrix.view(source)?, x, n, y, s)?;
        Ok(())
    }

    /// How many matrices the packed kernels multiply (repacked at load or
    /// streamed).
    pub fn n_packed(&self) -> usize {
        self.matrices
            .iter()
            .filter(|m| m.is_packed() || m.is_streamed())
            .count()
    }

    /// How many of them are streamed: packed group by group from the
    /// mapping while they are multiplied ([`ModelOptions::stream`]).
    pub fn n_streamed(&self) -> usize {
        self.matrices.iter().filter(|m| m.is_streamed()).count()
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The tokenizer built from the file's `tokenizer.ggml.*` keys.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The parsed file (metadata, tokenizer keys).
    pub fn gguf(&self) -> &Gguf {
        &self.gguf
    }

    /// A kernel view of a weight matrix that is still in the mapping. A
    /// repacked matrix's mapped pages were released, so its bytes are not
    /// handed out: that is an error, not a view of zeroed pages.
    pub(crate) fn weights(&self, m: &Mat) -> Result<Weights<'_>> {
        if self.matrices.get(m.matrix).is_none_or(|x| x.is_packed()) {
            return Err(PhiError::Internal(
                "the mapped bytes of a repacked matrix were released".into(),
            ));
        }
        Ok(Weights {
            ty: m.ty,
            rows: m.rows,
            cols: m.cols,
            data: &self.gguf.bytes()[m.offset..m.offset + m.len],
        })
    }

    /// The LongRoPE factors that llama.cpp uses for a context of `n_ctx`:
    /// long ones once the context exceeds the original training length.
    pub fn rope_factors(&self, n_ctx: usize) -> Option<&[f32]> {
        if n_ctx > self.config.n_ctx_orig {
            self.rope_factors_long.as_deref()
        } else {
            self.rope_factors_short.as_deref()
        }
    }

    /// Bytes of weights read per decoded token (all matrices once).
    pub fn weight_bytes(&self) -> usize {
        let mut total = self.output.len;
        for l in &self.layers {
            let mats: Vec<&Mat> = match (&l.qkv, &l.gate_up) {
                (Qkv::Fused(a), GateUp::Fused(b)) => vec![a, b],
                (Qkv::Fused(a), GateUp::Split { gate, up }) => vec![a, gate, up],
                (Qkv::Split { q, k, v }, GateUp::Fused(b)) => vec![q, k, v, b],
                (Qkv::Split { q, k, v }, GateUp::Split { gate, up }) => vec![q, k, v, gate, up],
            };
            total += mats.iter().map(|m| m.len).sum::<usize>() + l.attn_out.len + l.down.len;
        }
        total
    }
}

/// Looks up a 2-D weight tensor of `cols` × `rows` (GGUF order) the kernels can run.
fn mat(g: &Gguf, name: &str, cols: u64, rows: u64) -> Result<Mat> {
    let t = g
        .tensor(name)
        .map_err(|_| PhiError::MissingTensor { name: name.into() })?;
    let dims = &t.info.dims;
    let ok = match dims.as_slice() {
        [c, r] => *c == cols && *r == rows,
        [c, r, rest @ ..] => *c == cols && *r == rows && rest.iter().all(|d| *d == 1),
        _ => false,
    };
    if !ok {
        return Err(PhiError::TensorShape {
            name: name.into(),
            expected: vec![cols, rows],
            found: dims.clone(),
        });
    }
    let ty = t.info.ggml_type;
    if !phi_kernels::supports(ty) {
        return Err(PhiError::TensorType {
            name: name.into(),
            ty,
        });
    }
    // The parser checked that the data lies inside the file; find its offset in the
    // whole mapping so the model can hand out slices without holding borrows.
    let base = g.bytes().as_ptr() as usize;
    let offset = t.data.as_ptr() as usize - base;
    let w = Weights::new(ty, rows as usize, cols as usize, t.data)?;
    Ok(Mat {
        ty,
        rows: w.rows,
        cols: w.cols,
        offset,
        len: t.data.len(),
        // Set by `Model::prepare`.
        matrix: usize::MAX,
    })
}

/// A 1-D tensor of `n` values (norm weights, rope factors), dequantized to f32.
fn vector(g: &Gguf, name: &str, n: u64) -> Result<Vec<f32>> {
    let t = g
        .tensor(name)
        .map_err(|_| PhiError::MissingTensor { name: name.into() })?;
    let dims = &t.info.dims;
    if dims.first() != Some(&n) || dims.iter().skip(1).any(|d| *d != 1) {
        return Err(PhiError::TensorShape {
            name: name.into(),
            expected: vec![n],
            found: dims.clone(),
        });
    }
    let ty = t.info.ggml_type;
    if !phi_kernels::supports(ty) {
        return Err(PhiError::TensorType {
            name: name.into(),
            ty,
        });
    }
    let mut out = vec![0f32; n as usize];
    phi_kernels::dequantize_row(ty, t.data, &mut out)?;
    if let Some(i) = out.iter().position(|v| !v.is_finite()) {
        return Err(PhiError::BadHyperParam(format!(
            "tensor `{name}` holds a non-finite value ({}) at index {i}",
            out[i]
        )));
    }
    Ok(out)
}
