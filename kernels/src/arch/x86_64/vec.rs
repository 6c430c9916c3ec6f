//! AVX2 + FMA + F16C vector ops for attention (used on the AVX-512 path
//! too: attention vectors are a head long, 64–128 elements, where 256-bit
//! vectors are already the sweet spot). Four independent accumulators.

use core::arch::x86_64::*;

/// # Safety
/// CPU has AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn hsum(v: __m256) -> f32 {
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

/// Bytes of one Q8_0 block (f16 scale + 32 × i8).
const Q8_0_BLOCK: usize = crate::formats::layout::Q8_0_BYTES;

/// The 32 quants of the Q8_0 block at `p` as four vectors of 8 f32.
///
/// # Safety
/// CPU has AVX2; `p..p + 34` is readable.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn q8_0_block_f32(p: *const u8) -> [__m256; 4] {
    let mut v = [_mm256_setzero_ps(); 4];
    for (k, o) in v.iter_mut().enumerate() {
        // SAFETY: bytes 2 + 8k .. 2 + 8k + 8 lie inside the block (caller).
        let q = unsafe { _mm_loadl_epi64(p.add(2 + 8 * k) as *const __m128i) };
        *o = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
    }
    v
}

/// Σ dequant(k)·b over `b.len() / 32` Q8_0 blocks: per block
/// `d · Σ q·b` as the scalar reference, the inner sum in a different order.
///
/// # Safety
/// CPU has AVX2, FMA and F16C; `b.len()` is a multiple of 32 and `k` holds
/// at least `b.len() / 32` blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_q8_0_f32(k: &[u8], b: &[f32]) -> f32 {
    let nb = (b.len() / 32).min(k.len() / Q8_0_BLOCK);
    let mut total = _mm256_setzero_ps();
    for i in 0..nb {
        // SAFETY: block i < nb lies inside `k`, its 32 activations inside `b`.
        unsafe {
            let p = k.as_ptr().add(i * Q8_0_BLOCK);
            let q = q8_0_block_f32(p);
            let x = b.as_ptr().add(32 * i);
            let mut s = _mm256_mul_ps(q[0], _mm256_loadu_ps(x));
            for (j, qj) in q.iter().enumerate().skip(1) {
                s = _mm256_fmadd_ps(*qj, _mm256_loadu_ps(x.add(8 * j)), s);
            }
            let d = half::f16::from_le_bytes([*p, *p.add(1)]).to_f32();
            total = _mm256_fmadd_ps(_mm256_set1_ps(d), s, total);
        }
    }
    hsum(total)
}

/// y += alpha · dequant(k) over `y.len() / 32` Q8_0 blocks.
///
/// # Safety
/// CPU has AVX2, FMA and F16C; `y.len()` is a multiple of 32 and `k` holds
/// at least `y.len() / 32` blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn axpy_q8_0(y: &mut [f32], alpha: f32, k: &[u8]) {
    let nb = (y.len() / 32).min(k.len() / Q8_0_BLOCK);
    for i in 0..nb {
        // SAFETY: block i < nb lies inside `k`, its 32 outputs inside `y`.
        unsafe {
            let p = k.as_ptr().add(i * Q8_0_BLOCK);
            let a = alpha * half::f16::from_le_bytes([*p, *p.add(1)]).to_f32();
            let va = _mm256_set1_ps(a);
            let q = q8_0_block_f32(p);
            let o = y.as_mut_ptr().add(32 * i);
            for (j, qj) in q.iter().enumerate() {
                let r = _mm256_fmadd_ps(va, *qj, _mm256_loadu_ps(o.add(8 * j)));
                _mm256_storeu_ps(o.add(8 * j), r);
            }
        }
    }
}

/// The AVX2 vec table.
pub(crate) const OPS: crate::vec::VecOps = crate::vec::VecOps {
    dot_f32,
    dot_f16_f32,
    axpy_f32,
    axpy_f16,
    dot_q8_0_f32,
    axpy_q8_0,
    exp_sum: super::attn::avx2::exp_sum,
    attn_f16: Some(super::attn::avx2::attn_f16),
    attn_f16_dim: 8,
};

/// The AVX-512 vec table: the AVX2 row ops, AVX-512 attention and exp.
pub(crate) const OPS_512: crate::vec::VecOps = crate::vec::VecOps {
    exp_sum: super::attn::avx512::exp_sum,
    attn_f16: Some(super::attn::avx512::attn_f16),
    attn_f16_dim: 1,
    ..OPS
};
