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
}
