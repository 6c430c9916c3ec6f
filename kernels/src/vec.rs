//! Small vector ops for attention and elementwise work (SIMD-dispatched).
//!
//! Lengths must match (a mismatch is a caller bug and panics, like
//! `copy_from_slice`). Sums are in f32; SIMD paths sum in a different order
//! than the scalar loop (difference bounded by n·ε·Σ|aᵢbᵢ|).

use crate::{dispatch, Isa};
use half::f16;

/// Whether the x86 AVX2 bodies may run (true on the Avx2 and Avx512 paths,
/// which `dispatch` only selects on CPUs that have AVX2+FMA+F16C).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn use_avx2() -> bool {
    cfg!(target_arch = "x86_64") && matches!(dispatch::active(), Isa::Avx2 | Isa::Avx512)
}

/// Σ a·b.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot_f32 length mismatch");
    #[cfg(target_arch = "x86_64")]
    if use_avx2() {
        // SAFETY: `active()` is Avx2/Avx512 only when the CPU has
        // AVX2+FMA+F16C (checked by `dispatch`); lengths are equal.
        return unsafe { crate::arch::x86_64::vec::dot_f32(a, b) };
    }
    #[cfg(target_arch = "aarch64")]
    if dispatch::active() == Isa::Neon {
        // SAFETY: `active()` is Neon only when the CPU has it; lengths are equal.
        return unsafe { crate::arch::aarch64::vec::dot_f32(a, b) };
    }
    scalar::dot_f32(a, b)
}

/// Σ f32(a)·b.
pub fn dot_f16_f32(a: &[f16], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot_f16_f32 length mismatch");
    #[cfg(target_arch = "x86_64")]
    if use_avx2() {
        // SAFETY: `active()` is Avx2/Avx512 only when the CPU has
        // AVX2+FMA+F16C (checked by `dispatch`); lengths are equal.
        return unsafe { crate::arch::x86_64::vec::dot_f16_f32(a, b) };
    }
    #[cfg(target_arch = "aarch64")]
    if dispatch::active() == Isa::Neon {
        // SAFETY: `active()` is Neon only when the CPU has it; lengths are equal.
        return unsafe { crate::arch::aarch64::vec::dot_f16_f32(a, b) };
    }
    scalar::dot_f16_f32(a, b)
}

/// y += alpha * x
pub fn axpy_f32(y: &mut [f32], alpha: f32, x: &[f32]) {
    assert_eq!(y.len(), x.len(), "axpy_f32 length mismatch");
    #[cfg(target_arch = "x86_64")]
    if use_avx2() {
        // SAFETY: `active()` is Avx2/Avx512 only when the CPU has
        // AVX2+FMA+F16C (checked by `dispatch`); lengths are equal.
        return unsafe { crate::arch::x86_64::vec::axpy_f32(y, alpha, x) };
    }
    #[cfg(target_arch = "aarch64")]
    if dispatch::active() == Isa::Neon {
        // SAFETY: `active()` is Neon only when the CPU has it; lengths are equal.
        return unsafe { crate::arch::aarch64::vec::axpy_f32(y, alpha, x) };
    }
    scalar::axpy_f32(y, alpha, x)
}

/// y += alpha * x
pub fn axpy_f16(y: &mut [f32], alpha: f32, x: &[f16]) {
    assert_eq!(y.len(), x.len(), "axpy_f16 length mismatch");
    #[cfg(target_arch = "x86_64")]
    if use_avx2() {
        // SAFETY: `active()` is Avx2/Avx512 only when the CPU has
        // AVX2+FMA+F16C (checked by `dispatch`); lengths are equal.
        return unsafe { crate::arch::x86_64::vec::axpy_f16(y, alpha, x) };
    }
    #[cfg(target_arch = "aarch64")]
    if dispatch::active() == Isa::Neon {
        // SAFETY: `active()` is Neon only when the CPU has it; lengths are equal.
        return unsafe { crate::arch::aarch64::vec::axpy_f16(y, alpha, x) };
    }
    scalar::axpy_f16(y, alpha, x)
}

/// Bytes of one Q8_0 block (f16 scale + 32 × i8).
const Q8_0_BLOCK: usize = 34;

/// `Σ dequant(k)·b` for `k` holding `b.len() / 32` Q8_0 blocks (a quantized
/// KV-cache row): per block `d · Σ q·b`.
///
/// Panics if `b.len()` is not a multiple of 32 or `k` is shorter than the blocks.
pub fn dot_q8_0_f32(k: &[u8], b: &[f32]) -> f32 {
    assert!(b.len().is_multiple_of(32) && k.len() >= b.len() / 32 * Q8_0_BLOCK);
    #[cfg(target_arch = "x86_64")]
    if use_avx2() {
        // SAFETY: `active()` is Avx2/Avx512 only when the CPU has
        // AVX2+FMA+F16C (checked by `dispatch`); block counts checked above.
        return unsafe { crate::arch::x86_64::vec::dot_q8_0_f32(k, b) };
    }
    scalar::dot_q8_0_f32(k, b)
}

/// `y += alpha · dequant(k)` for `k` holding `y.len() / 32` Q8_0 blocks.
///
/// Panics if `y.len()` is not a multiple of 32 or `k` is shorter than the blocks.
pub fn axpy_q8_0(y: &mut [f32], alpha: f32, k: &[u8]) {
    assert!(y.len().is_multiple_of(32) && k.len() >= y.len() / 32 * Q8_0_BLOCK);
    #[cfg(target_arch = "x86_64")]
    if use_avx2() {
        // SAFETY: `active()` is Avx2/Avx512 only when the CPU has
        // AVX2+FMA+F16C (checked by `dispatch`); block counts checked above.
        return unsafe { crate::arch::x86_64::vec::axpy_q8_0(y, alpha, k) };
    }
    scalar::axpy_q8_0(y, alpha, k)
}

#[cfg(test)]
mod q8_0_tests {
    #[test]
    fn q8_0_row_ops_match_dequantized_f32() {
        let x: Vec<f32> = (0..96).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..96).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut k = vec![0u8; 3 * super::Q8_0_BLOCK];
        crate::quantize_row(crate::GgmlType::Q8_0, &x, &mut k).unwrap();
        let mut deq = vec![0f32; 96];
        crate::dequantize_row(crate::GgmlType::Q8_0, &k, &mut deq).unwrap();
        let want: f32 = deq.iter().zip(&b).map(|(p, q)| p * q).sum();
        assert!((super::dot_q8_0_f32(&k, &b) - want).abs() < 1e-4);
        let mut y = b.clone();
        super::axpy_q8_0(&mut y, 0.5, &k);
        for ((o, d), b) in y.iter().zip(&deq).zip(&b) {
            assert!((o - (b + 0.5 * d)).abs() < 1e-6);
        }
    }
}

/// Scalar references.
pub mod scalar {
    use half::f16;

    pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).fold(0.0, |s, (x, y)| s + x * y)
    }
    pub fn dot_f16_f32(a: &[f16], b: &[f32]) -> f32 {
        a.iter().zip(b).fold(0.0, |s, (x, y)| s + x.to_f32() * y)
    }
    pub fn axpy_f32(y: &mut [f32], alpha: f32, x: &[f32]) {
        for (o, v) in y.iter_mut().zip(x) {
            *o += alpha * v;
        }
    }
    pub fn axpy_f16(y: &mut [f32], alpha: f32, x: &[f16]) {
        for (o, v) in y.iter_mut().zip(x) {
            *o += alpha * v.to_f32();
        }
    }
    /// Σ over the `b.len() / 32` Q8_0 blocks of `k` of `d · Σ q·b`.
    pub fn dot_q8_0_f32(k: &[u8], b: &[f32]) -> f32 {
        let mut total = 0f32;
        for (blk, x) in k.chunks_exact(super::Q8_0_BLOCK).zip(b.chunks_exact(32)) {
            let d = f16::from_le_bytes([blk[0], blk[1]]).to_f32();
            let s: f32 = blk[2..]
                .iter()
                .zip(x)
                .map(|(&q, &v)| q as i8 as f32 * v)
                .sum();
            total += d * s;
        }
        total
    }
    /// y += alpha · dequant(k) over the `y.len() / 32` Q8_0 blocks of `k`.
    pub fn axpy_q8_0(y: &mut [f32], alpha: f32, k: &[u8]) {
        for (blk, o) in k
            .chunks_exact(super::Q8_0_BLOCK)
            .zip(y.chunks_exact_mut(32))
        {
            let a = alpha * f16::from_le_bytes([blk[0], blk[1]]).to_f32();
            for (v, &q) in o.iter_mut().zip(&blk[2..]) {
                *v += a * (q as i8 as f32);
            }
        }
    }
}
