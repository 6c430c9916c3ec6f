//! AVX2 + FMA + F16C vector ops for attention (used on the AVX-512 path
//! too: attention vectors are a head long, 64–128 elements, where 256-bit
//! vectors are already the sweet spot). Four independent accumulators.

use core::arch::x86_64::*;

/// # Safety
/// CPU has AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Σ a·b (equal lengths checked by the caller).
///
/// # Safety
/// CPU has AVX2, FMA and F16C; `a.len() == b.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (k, s) in acc.iter_mut().enumerate() {
            // SAFETY: i + 8k + 8 <= n elements lie inside both slices.
            unsafe {
                *s = _mm256_fmadd_ps(
                    _mm256_loadu_ps(pa.add(i + 8 * k)),
                    _mm256_loadu_ps(pb.add(i + 8 * k)),
                    *s,
                );
            }
        }
        i += 32;
    }
    while i + 8 <= n {
        // SAFETY: i + 8 <= n.
        unsafe {
            acc[0] = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i)),
                _mm256_loadu_ps(pb.add(i)),
                acc[0],
            );
        }
        i += 8;
    }
    let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut s = hsum(v);
    for j in i..n {
        s += a[j] * b[j];
    }
    s
}

/// Σ f32(a)·b.
///
/// # Safety
/// CPU has AVX2, FMA and F16C; `a.len() == b.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_f16_f32(a: &[half::f16], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr() as *const u8, b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (k, s) in acc.iter_mut().enumerate() {
            // SAFETY: i + 8k + 8 <= n elements lie inside both slices
            // (f16 is 2 bytes, so element j is at byte 2j).
            unsafe {
                let w = _mm256_cvtph_ps(_mm_loadu_si128(pa.add(2 * (i + 8 * k)) as *const __m128i));
                *s = _mm256_fmadd_ps(w, _mm256_loadu_ps(pb.add(i + 8 * k)), *s);
            }
        }
        i += 32;
    }
    while i + 8 <= n {
        // SAFETY: i + 8 <= n.
        unsafe {
            let w = _mm256_cvtph_ps(_mm_loadu_si128(pa.add(2 * i) as *const __m128i));
            acc[0] = _mm256_fmadd_ps(w, _mm256_loadu_ps(pb.add(i)), acc[0]);
        }
        i += 8;
    }
    let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut s = hsum(v);
    for j in i..n {
        s += a[j].to_f32() * b[j];
    }
    s
}

/// y += alpha·x.
///
/// # Safety
/// CPU has AVX2, FMA and F16C; `y.len() == x.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn axpy_f32(y: &mut [f32], alpha: f32, x: &[f32]) {
    let n = y.len().min(x.len());
    let (py, px) = (y.as_mut_ptr(), x.as_ptr());
    let va = _mm256_set1_ps(alpha);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n elements lie inside both slices.
        unsafe {
            let r = _mm256_fmadd_ps(va, _mm256_loadu_ps(px.add(i)), _mm256_loadu_ps(py.add(i)));
            _mm256_storeu_ps(py.add(i), r);
        }
        i += 8;
    }
    for j in i..n {
        y[j] += alpha * x[j];
    }
}

/// y += alpha·f32(x).
///
/// # Safety
/// CPU has AVX2, FMA and F16C; `y.len() == x.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn axpy_f16(y: &mut [f32], alpha: f32, x: &[half::f16]) {
    let n = y.len().min(x.len());
    let (py, px) = (y.as_mut_ptr(), x.as_ptr() as *const u8);
    let va = _mm256_set1_ps(alpha);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n elements lie inside both slices.
        unsafe {
            let xv = _mm256_cvtph_ps(_mm_loadu_si128(px.add(2 * i) as *const __m128i));
            let r = _mm256_fmadd_ps(va, xv, _mm256_loadu_ps(py.add(i)));
            _mm256_storeu_ps(py.add(i), r);
        }
        i += 8;
    }
    for j in i..n {
        y[j] += alpha * x[j].to_f32();
    }
}
