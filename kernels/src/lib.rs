//! phi-kernels: ggml block formats and the dot products / matrix products
//! over them, with a scalar reference and AVX2 / AVX-512 / NEON paths.
//!
//! Nothing here knows about models or files: inputs are byte slices of
//! blocks and f32 activations. See README.md for the layout and how to add
//! a type or an instruction set.

pub use phi_gguf::GgmlType;

pub mod attn;
pub mod dispatch;
pub mod formats;
mod matmul;
pub mod packed;
mod pages;
pub mod registry;
pub(crate) mod tile;
pub mod vec;

mod arch;

/// The registry under its former name (tests and benches use `table::ops`).
#[doc(hidden)]
pub use registry as table;

pub use formats::layout::{layout, BlockLayout};
pub use matmul::{matmul, matmul_with_isa, quantize_activations, Scratch};
pub use registry::{prepare, Config, Matrix, MatrixRef};

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
    #[error("unknown AVX2 dot flavour `{0}` (expected maddubs, avxvnni, avx512vl or auto)")]
    UnknownAvx2Dot(String),
    #[error("unknown NEON dot tier `{0}` (expected plain, sdot, smmla or auto)")]
    UnknownNeonDot(String),
}

/// An instruction-set path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isa {
    Scalar,
    Avx2,
    Avx512,
    Neon,
}

/// A row-major weight matrix of `rows` rows, each `cols` elements of `ty`
/// (in GGUF terms: dims = [cols, rows]). The data may have any alignment.
#[derive(Debug, Clone, Copy)]
pub struct Weights<'a> {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
}

/// Bytes of `rows` rows of `cols` elements of `ty`, if `cols` is a whole
/// number of blocks and nothing overflows.
pub(crate) fn matrix_bytes(
    ty: GgmlType,
    rows: usize,
    cols: usize,
) -> Result<(usize, usize), KernelError> {
    let bs = ty.block_size();
    if !cols.is_multiple_of(bs) {
        return Err(KernelError::Shape(format!(
            "{cols} columns is not a multiple of the {ty} block size {bs}"
        )));
    }
    let row = (cols / bs)
        .checked_mul(ty.type_size())
        .ok_or_else(|| KernelError::Shape(format!("{cols} columns of {ty} overflow")))?;
    let total = row
        .checked_mul(rows)
        .ok_or_else(|| KernelError::Shape(format!("{rows} x {cols} of {ty} overflows")))?;
    Ok((row, total))
}

impl<'a> Weights<'a> {
    /// Checks that `data` holds exactly `rows` rows of `cols` elements of `ty`.
    pub fn new(
        ty: GgmlType,
        rows: usize,
        cols: usize,
        data: &'a [u8],
    ) -> Result<Self, KernelError> {
        let (_, total) = matrix_bytes(ty, rows, cols)?;
        if data.len() != total {
            return Err(KernelError::Shape(format!(
                "{rows} x {cols} {ty} weights need {total} bytes, got {}",
                data.len()
            )));
        }
        Ok(Weights {
            ty,
            rows,
            cols,
            data,
        })
    }

    /// Bytes in one row (0 if the fields are inconsistent: build with [`Weights::new`]).
    pub fn row_bytes(&self) -> usize {
        matrix_bytes(self.ty, 1, self.cols)
            .map(|(r, _)| r)
            .unwrap_or(0)
    }

    /// Rows `start..start + n` as their own matrix, if in range.
    pub fn rows_slice(&self, start: usize, n: usize) -> Option<Weights<'a>> {
        let rb = self.row_bytes();
        let end = start.checked_add(n)?;
        if end > self.rows {
            return None;
        }
        let data = self
            .data
            .get(start.checked_mul(rb)?..end.checked_mul(rb)?)?;
        Some(Weights {
            ty: self.ty,
            rows: n,
            cols: self.cols,
            data,
        })
    }
}

/// Quantizes one row `x` into `out` as `ty` with the reference weight
/// quantizers (bit-identical to ggml's for the 32-element types): the basis of
/// synthetic models and of a `phi quantize` tool. `x.len()` must be a whole
/// number of blocks and `out` exactly the row's size.
pub fn quantize_row(ty: GgmlType, x: &[f32], out: &mut [u8]) -> Result<(), KernelError> {
    use formats::{float, iq4, k_quants, q4_0, q4_1, q5_0, q5_1, q8_0};
    fn blocks<B: bytemuck::Pod>(x: &[f32], out: &mut [u8], q: fn(&[f32], &mut [B])) {
        match bytemuck::try_cast_slice_mut::<u8, B>(out) {
            Ok(b) => q(x, b),
            Err(_) => {
                // `out` is not aligned for B: quantize into an aligned copy.
                let mut b = vec![B::zeroed(); out.len() / std::mem::size_of::<B>()];
                q(x, &mut b);
                out.copy_from_slice(bytemuck::cast_slice(&b));
            }
        }
    }
    let need = ty.bytes_for(x.len() as u64);
    if need != Some(out.len() as u64) {
        return Err(KernelError::Shape(format!(
            "{} values as {ty} need {need:?} bytes, the output has {}",
            x.len(),
            out.len()
        )));
    }
    use GgmlType as T;
    match ty {
        T::F32 => out.copy_from_slice(bytemuck::cast_slice(x)),
        T::F16 => {
            for (o, v) in out.chunks_exact_mut(2).zip(x) {
                o.copy_from_slice(&half::f16::from_f32(*v).to_le_bytes());
            }
        }
        T::BF16 => {
            for (o, v) in out.chunks_exact_mut(2).zip(x) {
                o.copy_from_slice(&float::f32_to_bf16(*v).to_le_bytes());
            }
        }
        T::Q4_0 => blocks(x, out, q4_0::quantize_row_q4_0),
        T::Q4_1 => blocks(x, out, q4_1::quantize_row_q4_1),
        T::Q5_0 => blocks(x, out, q5_0::quantize_row_q5_0),
        T::Q5_1 => blocks(x, out, q5_1::quantize_row_q5_1),
        T::Q8_0 => blocks(x, out, q8_0::quantize_row_q8_0),
        T::Q2_K => blocks(x, out, k_quants::quantize_row_q2_k),
        T::Q3_K => blocks(x, out, k_quants::quantize_row_q3_k),
        T::Q4_K => blocks(x, out, k_quants::quantize_row_q4_k),
        T::Q5_K => blocks(x, out, k_quants::quantize_row_q5_k),
        T::Q6_K => blocks(x, out, k_quants::quantize_row_q6_k),
        T::IQ4_NL => blocks(x, out, iq4::quantize_row_iq4_nl),
        T::IQ4_XS => blocks(x, out, iq4::quantize_row_iq4_xs),
        other => return Err(KernelError::Unsupported(other)),
    }
    Ok(())
}

/// Dequantizes one row (`dst.len()` elements) of `ty` blocks from the start
/// of `src` (extra bytes after the row are ignored; any alignment).
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), KernelError> {
    let f = registry::dequantizer(ty).ok_or(KernelError::Unsupported(ty))?;
    let (need, _) = matrix_bytes(ty, 1, dst.len())?;
    if src.len() < need {
        return Err(KernelError::Shape(format!(
            "{} elements of {ty} need {need} bytes, got {}",
            dst.len(),
            src.len()
        )));
    }
    f(&src[..need], dst);
    Ok(())
}

/// Whether `matmul` / `dequantize_row` accept weights of `ty`.
pub fn supports(ty: GgmlType) -> bool {
    registry::ops(ty, Isa::Scalar).is_some()
}
