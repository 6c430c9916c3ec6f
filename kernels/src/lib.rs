//! phi-kernels: ggml block formats and the dot products / matrix products
//! over them, with a scalar reference and AVX2 / AVX-512 / NEON paths.
//!
//! API CONTRACT (the runtime codes against these names; bodies are being
//! written — see README.md). Nothing here knows about models or files:
//! inputs are byte slices of blocks and f32 activations.

pub use phi_gguf::GgmlType;

/// Errors from kernel entry points.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("tensor type {0} is not supported by the kernels")]
    Unsupported(GgmlType),
    #[error("instruction set {0} is not available on this CPU")]
    IsaUnavailable(&'static str),
    #[error("unknown instruction set `{0}` (expected scalar, avx2, avx512 or neon)")]
    UnknownIsa(String),
    #[error("shape mismatch: {0}")]
    Shape(String),
}

/// An instruction-set path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isa {
    Scalar,
    Avx2,
    Avx512,
    Neon,
}

/// Detect once, `PHI_ISA` override, forced choice from tests and benches.
pub mod dispatch {
    use super::{Isa, KernelError};
    /// The path in use (the best available one, unless `PHI_ISA` or `force` chose).
    pub fn active() -> Isa {
        todo!()
    }
    /// Whether this CPU can run `isa`.
    pub fn is_available(isa: Isa) -> bool {
        let _ = isa;
        todo!()
    }
    /// Use `isa` from now on, process-wide. Error if the CPU lacks it.
    pub fn force(isa: Isa) -> Result<(), KernelError> {
        let _ = isa;
        todo!()
    }
}

/// A row-major weight matrix of `rows` rows, each `cols` elements of `ty`
/// (in GGUF terms: dims = [cols, rows]).
#[derive(Debug, Clone, Copy)]
pub struct Weights<'a> {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
}

impl<'a> Weights<'a> {
    /// Checks that `data` holds exactly `rows` rows of `cols` elements of `ty`.
    pub fn new(ty: GgmlType, rows: usize, cols: usize, data: &'a [u8]) -> Result<Self, KernelError> {
        let _ = (ty, rows, cols, data);
        todo!()
    }
    /// Bytes in one row.
    pub fn row_bytes(&self) -> usize {
        todo!()
    }
}

/// Reusable buffers for `matmul` (quantized activations), so that the hot
/// path never allocates after warm-up.
#[derive(Default)]
pub struct Scratch {
    _private: (),
}

/// `y[t * w.rows + r] = Σ_c W[r, c] · x[t * w.cols + c]` for `t < n_tokens`.
///
/// Activations are quantized once to the weight type's partner (Q8_0 for
/// Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K for K-quants, F16 for F16, BF16
/// for BF16) exactly as ggml does, then reused by every row. n_tokens == 1 is
/// gemv; more tokens take the tiled gemm path. Runs on the current rayon pool.
pub fn matmul(
    w: &Weights<'_>,
    x: &[f32],
    n_tokens: usize,
    y: &mut [f32],
    scratch: &mut Scratch,
) -> Result<(), KernelError> {
    let _ = (w, x, n_tokens, y, scratch);
    todo!()
}

/// Dequantizes one row (`dst.len()` elements) of `ty` blocks in `src`.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), KernelError> {
    let _ = (ty, src, dst);
    todo!()
}

/// Whether `matmul` / `dequantize_row` accept weights of `ty`.
pub fn supports(ty: GgmlType) -> bool {
    let _ = ty;
    todo!()
}

/// Small vector ops for attention and elementwise work (SIMD-dispatched).
pub mod vec {
    use half::f16;
    pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        let _ = (a, b);
        todo!()
    }
    pub fn dot_f16_f32(a: &[f16], b: &[f32]) -> f32 {
        let _ = (a, b);
        todo!()
    }
    /// y += alpha * x
    pub fn axpy_f32(y: &mut [f32], alpha: f32, x: &[f32]) {
        let _ = (y, alpha, x);
        todo!()
    }
    /// y += alpha * x
    pub fn axpy_f16(y: &mut [f32], alpha: f32, x: &[f16]) {
        let _ = (y, alpha, x);
        todo!()
    }
}
