//! NEON bodies of the small vector ops in [`crate::vec`] (attention).
//!
//! Dots use four FMA accumulators (a different summation order from the
//! scalar loop); axpy multiplies then adds, like the scalar loop, so its
//! results are bit-identical.

use super::cvt_f16x8;
use core::arch::aarch64::*;
use half::f16;

/// Σ a·b.
///
/// # Safety
///
/// The CPU has NEON, and `a.len() == b.len()`.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut i = 0;
    // SAFETY: every load reads lanes `i..i + 4` with `i + 4 <= n`, inside
    // both slices (f32 pointers from slices are aligned).
    let mut s = unsafe {
        let z = vdupq_n_f32(0.0);
        let (mut s0, mut s1, mut s2, mut s3) = (z, z, z, z);
        while i + 16 <= n {
            s0 = vfmaq_f32(s0, vld1q_f32(pa.add(i)), vld1q_f32(pb.add(i)));
            s1 = vfmaq_f32(s1, vld1q_f32(pa.add(i + 4)), vld1q_f32(pb.add(i + 4)));
            s2 = vfmaq_f32(s2, vld1q_f32(pa.add(i + 8)), vld1q_f32(pb.add(i + 8)));
            s3 = vfmaq_f32(s3, vld1q_f32(pa.add(i + 12)), vld1q_f32(pb.add(i + 12)));
            i += 16;
        }
        while i + 4 <= n {
            s0 = vfmaq_f32(s0, vld1q_f32(pa.add(i)), vld1q_f32(pb.add(i)));
            i += 4;
        }
        vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)))
    };
    for (x, y) in a[i..n].iter().zip(&b[i..n]) {
        s += x * y;
    }
    s
}

/// Σ f32(a)·b.
///
/// # Safety
///
/// The CPU has NEON, and `a.len() == b.len()`.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn dot_f16_f32(a: &[f16], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr() as *const u8, b.as_ptr());
    let mut i = 0;
    // SAFETY: loads read halves `i..i + 8` (16 bytes from `pa + 2i`) and
    // floats `i..i + 8` with `i + 8 <= n`, inside both slices.
    let mut s = unsafe {
        let z = vdupq_n_f32(0.0);
        let (mut s0, mut s1) = (z, z);
        while i + 8 <= n {
            let (h0, h1) = cvt_f16x8(vreinterpretq_u16_u8(vld1q_u8(pa.add(2 * i))));
            s0 = vfmaq_f32(s0, h0, vld1q_f32(pb.add(i)));
            s1 = vfmaq_f32(s1, h1, vld1q_f32(pb.add(i + 4)));
            i += 8;
        }
        vaddvq_f32(vaddq_f32(s0, s1))
    };
    for (x, y) in a[i..n].iter().zip(&b[i..n]) {
        s += x.to_f32() * y;
    }
    s
}

/// y += alpha · x.
///
/// # Safety
///
/// The CPU has NEON, and `y.len() == x.len()`.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn axpy_f32(y: &mut [f32], alpha: f32, x: &[f32]) {
    let n = y.len().min(x.len());
    let (py, px) = (y.as_mut_ptr(), x.as_ptr());
    let mut i = 0;
    // SAFETY: lanes `i..i + 4` with `i + 4 <= n` lie inside both slices;
    // `y` is borrowed mutably, so nothing else aliases it.
    unsafe {
        let va = vdupq_n_f32(alpha);
        while i + 4 <= n {
            let v = vaddq_f32(vld1q_f32(py.add(i)), vmulq_f32(va, vld1q_f32(px.add(i))));
            vst1q_f32(py.add(i), v);
            i += 4;
        }
    }
    for (o, v) in y[i..n].iter_mut().zip(&x[i..n]) {
        *o += alpha * v;
    }
}

/// y += alpha · f32(x).
///
/// # Safety
///
/// The CPU has NEON, and `y.len() == x.len()`.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn axpy_f16(y: &mut [f32], alpha: f32, x: &[f16]) {
    let n = y.len().min(x.len());
    let (py, px) = (y.as_mut_ptr(), x.as_ptr() as *const u8);
    let mut i = 0;
    // SAFETY: halves `i..i + 8` (16 bytes at `px + 2i`) and floats
    // `i..i + 8` with `i + 8 <= n` lie inside both slices; `y` is borrowed
    // mutably.
    unsafe {
        let va = vdupq_n_f32(alpha);
        while i + 8 <= n {
            let (h0, h1) = cvt_f16x8(vreinterpretq_u16_u8(vld1q_u8(px.add(2 * i))));
            let y0 = vaddq_f32(vld1q_f32(py.add(i)), vmulq_f32(va, h0));
            let y1 = vaddq_f32(vld1q_f32(py.add(i + 4)), vmulq_f32(va, h1));
            vst1q_f32(py.add(i), y0);
            vst1q_f32(py.add(i + 4), y1);
            i += 8;
        }
    }
    for (o, v) in y[i..n].iter_mut().zip(&x[i..n]) {
        *o += alpha * v.to_f32();
    }
}

/// The NEON vec table (Q8_0 rows: the scalar references).
pub(crate) const OPS: crate::vec::VecOps = crate::vec::VecOps {
    dot_f32,
    dot_f16_f32,
    axpy_f32,
    axpy_f16,
    ..crate::vec::SCALAR
};
