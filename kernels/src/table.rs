//! The per-type kernel table: for each weight type, its activation partner,
//! the activation quantizer, a dequantizer and the matrix tile function,
//! chosen per instruction set. THE place to register a new type or ISA path
//! (see the crate README).

use crate::formats::{float, iq4, k_quants, q4_0, q4_1, q5_0, q5_1, q8_0, q8_1};
use crate::{GgmlType, Isa};

/// Quantizes one activation row `x` (`cols` floats) into `out`
/// (`act.bytes_for(cols)` bytes, 64-byte aligned).
pub type QuantizeActFn = fn(x: &[f32], out: &mut [u8]);

/// Dequantizes `dst.len()` elements from the start of `src` (any alignment).
pub type DequantizeFn = fn(src: &[u8], dst: &mut [f32]);

/// Arguments of a tile function: `nr` weight rows × `nt` activation rows.
#[derive(Clone, Copy, Debug)]
pub struct MatArgs<'a> {
    /// Elements per row (a multiple of the type's block size).
    pub n: usize,
    /// `nr` weight rows, `w_stride` bytes apart.
    pub w: &'a [u8],
    pub w_stride: usize,
    pub nr: usize,
    /// `nt` quantized activation rows, `a_stride` bytes apart.
    pub a: &'a [u8],
    pub a_stride: usize,
    pub nt: usize,
}

impl MatArgs<'_> {
    /// Whether every row the tile may read lies inside the slices and `out`
    /// can hold `nr * nt` results. SIMD tile functions rely on this.
    pub fn is_valid(&self, w_row_bytes: usize, a_row_bytes: usize, out_len: usize) -> bool {
        let fits = |len: usize, stride: usize, rows: usize, row_bytes: usize| {
            rows == 0
                || (stride >= row_bytes
                    && (rows - 1)
                        .checked_mul(stride)
                        .and_then(|v| v.checked_add(row_bytes))
                        .is_some_and(|end| end <= len))
        };
        fits(self.w.len(), self.w_stride, self.nr, w_row_bytes)
            && fits(self.a.len(), self.a_stride, self.nt, a_row_bytes)
            && self.nr.checked_mul(self.nt).is_some_and(|v| v <= out_len)
    }
}

/// Computes `out[t * nr + r] = dot(weight row r, activation row t)`.
///
/// # Safety
///
/// The CPU must support the instruction set the function was compiled for
/// ([`ops`] only returns functions whose ISA [`crate::dispatch::is_available`]
/// reported), and `args.is_valid(ty.bytes_for(n), act.bytes_for(n), out.len())`
/// must hold.
pub type MatFn = unsafe fn(args: &MatArgs<'_>, out: &mut [f32]);

/// Everything the matmul driver needs for one weight type on one ISA.
#[derive(Clone, Copy)]
pub struct TypeOps {
    pub ty: GgmlType,
    /// The activation format (ggml's `vec_dot_type`).
    pub act: GgmlType,
    pub quantize_act: QuantizeActFn,
    pub dequantize: DequantizeFn,
    pub mat: MatFn,
    /// The ISA `mat` was built for (may be below the one asked for when a
    /// type has no path for it yet).
    pub isa: Isa,
}

/// Generic scalar tile: one reference row dot per (row, token).
macro_rules! scalar_mat {
    ($name:ident, $dot:path) => {
        fn $name(args: &MatArgs<'_>, out: &mut [f32]) {
            for t in 0..args.nt {
                let a = &args.a[t * args.a_stride..];
                for r in 0..args.nr {
                    let w = &args.w[r * args.w_stride..];
                    out[t * args.nr + r] = $dot(args.n, w, a);
                }
            }
        }
    };
}

scalar_mat!(mat_f32_scalar, float::vec_dot_f32_bytes);
scalar_mat!(mat_f16_scalar, float::vec_dot_f16_bytes);
scalar_mat!(mat_bf16_scalar, float::vec_dot_bf16_bytes);
scalar_mat!(mat_q4_0_scalar, q4_0::vec_dot_bytes);
scalar_mat!(mat_q4_1_scalar, q4_1::vec_dot_bytes);
scalar_mat!(mat_q5_0_scalar, q5_0::vec_dot_bytes);
scalar_mat!(mat_q5_1_scalar, q5_1::vec_dot_bytes);
scalar_mat!(mat_q8_0_scalar, q8_0::vec_dot_bytes);
scalar_mat!(mat_q2_k_scalar, k_quants::vec_dot_q2_k_bytes);
scalar_mat!(mat_q3_k_scalar, k_quants::vec_dot_q3_k_bytes);
scalar_mat!(mat_q4_k_scalar, k_quants::vec_dot_q4_k_bytes);
scalar_mat!(mat_q5_k_scalar, k_quants::vec_dot_q5_k_bytes);
scalar_mat!(mat_q6_k_scalar, k_quants::vec_dot_q6_k_bytes);
scalar_mat!(mat_iq4_nl_scalar, iq4::vec_dot_iq4_nl_bytes);
scalar_mat!(mat_iq4_xs_scalar, iq4::vec_dot_iq4_xs_bytes);

/// The scalar entry for `ty`, or `None` when the kernels do not run it.
fn scalar_ops(ty: GgmlType) -> Option<TypeOps> {
    use GgmlType as T;
    let (act, quantize_act, dequantize, mat): (GgmlType, QuantizeActFn, DequantizeFn, MatFn) =
        match ty {
            T::F32 => (
                T::F32,
                float::quantize_act_f32_bytes,
                float::dequantize_f32_bytes,
                mat_f32_scalar,
            ),
            T::F16 => (
                T::F16,
                float::quantize_act_f16_bytes,
                float::dequantize_f16_bytes,
                mat_f16_scalar,
            ),
            T::BF16 => (
                T::BF16,
                float::quantize_act_bf16_bytes,
                float::dequantize_bf16_bytes,
                mat_bf16_scalar,
            ),
            T::Q4_0 => (
                T::Q8_0,
                q8_0::quantize_act_bytes,
                q4_0::dequantize_bytes,
                mat_q4_0_scalar,
            ),
            T::Q4_1 => (
                T::Q8_1,
                q8_1::quantize_act_bytes,
                q4_1::dequantize_bytes,
                mat_q4_1_scalar,
            ),
            T::Q5_0 => (
                T::Q8_0,
                q8_0::quantize_act_bytes,
                q5_0::dequantize_bytes,
                mat_q5_0_scalar,
            ),
            T::Q5_1 => (
                T::Q8_1,
                q8_1::quantize_act_bytes,
                q5_1::dequantize_bytes,
                mat_q5_1_scalar,
            ),
            T::Q8_0 => (
                T::Q8_0,
                q8_0::quantize_act_bytes,
                q8_0::dequantize_bytes,
                mat_q8_0_scalar,
            ),
            T::Q2_K => (
                T::Q8_K,
                k_quants::quantize_act_q8_k_bytes,
                k_quants::dequantize_q2_k_bytes,
                mat_q2_k_scalar,
            ),
            T::Q3_K => (
                T::Q8_K,
                k_quants::quantize_act_q8_k_bytes,
                k_quants::dequantize_q3_k_bytes,
                mat_q3_k_scalar,
            ),
            T::Q4_K => (
                T::Q8_K,
                k_quants::quantize_act_q8_k_bytes,
                k_quants::dequantize_q4_k_bytes,
                mat_q4_k_scalar,
            ),
            T::Q5_K => (
                T::Q8_K,
                k_quants::quantize_act_q8_k_bytes,
                k_quants::dequantize_q5_k_bytes,
                mat_q5_k_scalar,
            ),
            T::Q6_K => (
                T::Q8_K,
                k_quants::quantize_act_q8_k_bytes,
                k_quants::dequantize_q6_k_bytes,
                mat_q6_k_scalar,
            ),
            T::IQ4_NL => (
                T::Q8_0,
                q8_0::quantize_act_bytes,
                iq4::dequantize_iq4_nl_bytes,
                mat_iq4_nl_scalar,
            ),
            T::IQ4_XS => (
                T::Q8_K,
                k_quants::quantize_act_q8_k_bytes,
                iq4::dequantize_iq4_xs_bytes,
                mat_iq4_xs_scalar,
            ),
            _ => return None,
        };
    Some(TypeOps {
        ty,
        act,
        quantize_act,
        dequantize,
        mat,
        isa: Isa::Scalar,
    })
}

/// Dequantizer for `ty` (scalar; also covers activation-only types).
pub fn dequantizer(ty: GgmlType) -> Option<DequantizeFn> {
    match ty {
        GgmlType::Q8_1 => Some(q8_1::dequantize_bytes),
        GgmlType::Q8_K => Some(k_quants::dequantize_q8_k_bytes),
        _ => scalar_ops(ty).map(|o| o.dequantize),
    }
}

/// The kernels for weights of `ty` on `isa` (falling back per type to the
/// best lower path of the same CPU family), or `None` if `ty` is
/// unsupported. Returns SIMD functions only when `isa` is available.
pub fn ops(ty: GgmlType, isa: Isa) -> Option<TypeOps> {
    let base = scalar_ops(ty)?;
    if isa == Isa::Scalar || !crate::dispatch::is_available(isa) {
        return Some(base);
    }
    #[cfg(target_arch = "x86_64")]
    {
        // Q8_0/Q8_1 activations: the AVX2 quantizer (bit-identical to scalar).
        let base = TypeOps {
            quantize_act: crate::arch::x86_64::quantize_act(base.act).unwrap_or(base.quantize_act),
            ..base
        };
        if isa == Isa::Avx512 {
            if let Some(mat) = crate::arch::x86_64::avx512_mat(ty) {
                return Some(TypeOps {
                    mat,
                    isa: Isa::Avx512,
                    ..base
                });
            }
        }
        if matches!(isa, Isa::Avx512 | Isa::Avx2) {
            if let Some(mat) = crate::arch::x86_64::avx2_mat(ty) {
                return Some(TypeOps {
                    mat,
                    isa: Isa::Avx2,
                    ..base
                });
            }
        }
    }
    #[cfg(target_arch = "aarch64")]
    if isa == Isa::Neon {
        if let Some(mat) = crate::arch::aarch64::neon_mat(ty) {
            return Some(TypeOps {
                mat,
                isa: Isa::Neon,
                ..base
            });
        }
    }
    Some(base)
}

/// Every SIMD tile function built for `ty` that this CPU can run, with a
/// name (for tests and benches: includes builds `ops` would not choose here).
#[doc(hidden)]
pub fn mat_variants(ty: GgmlType) -> Vec<(&'static str, MatFn)> {
    #[cfg(target_arch = "x86_64")]
    {
        crate::arch::x86_64::variants(ty)
    }
    #[cfg(target_arch = "aarch64")]
    {
        crate::arch::aarch64::variants(ty)
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = ty;
        Vec::new()
    }
}
