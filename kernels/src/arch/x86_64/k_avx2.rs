//! AVX2 (+ FMA + F16C) dot products of K-quant / IQ4 weights with Q8_K
//! (Q8_0 for IQ4_NL) activations.
//!
//! Every K-quant is computed the same way: the weights are decoded to
//! *unsigned* bytes `u` (for the symmetric types the stored value plus its
//! offset: Q3_K `q + 4`, Q6_K `q + 32`), `vpmaddubsw(u, q8)` gives i16 pair
//! sums (never saturating: `u ≤ 63`, `|q8| ≤ 128`), `vpmaddwd` with the
//! sub-block scales widens them to i32, and the offsets / mins are taken out
//! once per block through the activation block sums `bsums`
//! (`Σ_j scale_j · bsum_j`). The integer result per block is exactly the
//! scalar reference's; only the f32 accumulation order differs (8 lanes).
//!
//! IQ4 values are signed codebook entries: `vpmaddubsw(|v|, sign(q8, v))`,
//! exact while activations stay in `-127..=127` (which both activation
//! quantizers guarantee).
//!
//! All functions read blocks through raw pointers with unaligned loads, so
//! weight bytes need no alignment.

use core::arch::x86_64::*;
use core::mem::{offset_of, size_of};

use crate::formats::iq4::{BlockIQ4_NL, BlockIQ4_XS, KVALUES_IQ4NL, QK4_NL};
use crate::formats::k_quants::{
    BlockQ2_K, BlockQ3_K, BlockQ4_K, BlockQ5_K, BlockQ6_K, BlockQ8_K, QK_K,
};
use crate::formats::BlockQ8_0;
use crate::table::{MatArgs, MatFn};
use crate::GgmlType;

pub(crate) const Q8K_SIZE: usize = size_of::<BlockQ8_K>();
pub(crate) const Q8K_QS: usize = offset_of!(BlockQ8_K, qs);
pub(crate) const Q8K_BSUMS: usize = offset_of!(BlockQ8_K, bsums);

/// Reads an f16 at `p` (any alignment) as f32 with F16C's `vcvtph2ps`
/// (exact, like every f16 → f32 conversion).
///
/// # Safety
/// F16C must be available; `p..p+2` must be readable.
#[inline]
#[target_feature(enable = "f16c")]
pub(crate) unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees 2 readable bytes; read_unaligned has no
    // alignment requirement.
    let bits = unsafe { p.cast::<u16>().read_unaligned() };
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

/// Reads an f32 at `p` (any alignment).
///
/// # Safety
/// `p..p+4` must be readable.
#[inline(always)]
pub(crate) unsafe fn f32_at(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees 4 readable bytes.
    unsafe { p.cast::<f32>().read_unaligned() }
}

/// Reads a little-endian u32 at `p` (any alignment).
///
/// # Safety
/// `p..p+4` must be readable.
#[inline(always)]
pub(crate) unsafe fn u32_at(p: *const u8) -> u32 {
    // SAFETY: the caller guarantees 4 readable bytes.
    u32::from_le(unsafe { p.cast::<u32>().read_unaligned() })
}

/// The 8 scales and 8 mins (6 bits each) of Q4_K / Q5_K from the 12 packed
/// bytes at `s`, as two little-endian u64 of bytes.
///
/// # Safety
/// `s..s+12` must be readable.
#[inline(always)]
pub(crate) unsafe fn k4_scales_mins(s: *const u8) -> (u64, u64) {
    // SAFETY: 12 readable bytes per the contract.
    let (a0, a1, a2) = unsafe { (u32_at(s), u32_at(s.add(4)), u32_at(s.add(8))) };
    let sc_lo = a0 & 0x3f3f_3f3f;
    let mn_lo = a1 & 0x3f3f_3f3f;
    let sc_hi = (a2 & 0x0f0f_0f0f) | (((a0 >> 6) & 0x0303_0303) << 4);
    let mn_hi = ((a2 >> 4) & 0x0f0f_0f0f) | (((a1 >> 6) & 0x0303_0303) << 4);
    (
        sc_lo as u64 | ((sc_hi as u64) << 32),
        mn_lo as u64 | ((mn_hi as u64) << 32),
    )
}

/// The 16 signed Q3_K scales (minus 32) from the 12 packed bytes at `s`
/// (scalar reference of the SIMD decoders, checked in the tests below).
///
/// # Safety
/// `s..s+12` must be readable.
#[cfg(test)]
pub(crate) unsafe fn q3_k_scales(s: *const u8) -> [i8; 16] {
    // SAFETY: 12 readable bytes per the contract.
    let (a0, a1, t) = unsafe { (u32_at(s), u32_at(s.add(4)), u32_at(s.add(8))) };
    let m2 = 0x0f0f_0f0f;
    let m3 = 0x0303_0303;
    let w = [
        (a0 & m2) | ((t & m3) << 4),
        (a1 & m2) | (((t >> 2) & m3) << 4),
        ((a0 >> 4) & m2) | (((t >> 4) & m3) << 4),
        ((a1 >> 4) & m2) | (((t >> 6) & m3) << 4),
    ];
    let mut out = [0i8; 16];
    for (k, word) in w.iter().enumerate() {
        for (b, byte) in word.to_le_bytes().iter().enumerate() {
            out[4 * k + b] = *byte as i8 - 32;
        }
    }
    out
}

/// Horizontal sum of 8 f32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// For 16 i16 scales `sc16` (element `k` of sub-block `k`), the vector
/// holding scale `2g` in the low 128-bit lane and `2g+1` in the high lane:
/// the `vpmaddwd` multiplier for 32 elements made of two 16-element
/// sub-blocks.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn pair_scales(sc16: __m256i, g: i32) -> __m256i {
    let dw = _mm256_permutevar8x32_epi32(sc16, _mm256_set1_epi32(g));
    let pick = _mm256_setr_epi8(
        0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, //
        2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3,
    );
    _mm256_shuffle_epi8(dw, pick)
}

/// One Q4_K weight row against `T` Q8_K activation rows: weights decoded
/// once per block and reused for every token; each token's arithmetic is
/// the same sequence as for `T = 1`.
///
/// # Safety
/// AVX2, FMA and F16C must be available; `w` must point to `nb` readable
/// Q4_K blocks and each of the `T` pointers in `a` to `nb` readable Q8_K
/// blocks (any alignment).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_q4_k_n<const T: usize>(
    nb: usize,
    w: *const u8,
    a: [*const u8; T],
) -> [f32; T] {
    const BS: usize = size_of::<BlockQ4_K>();
    const SC: usize = offset_of!(BlockQ4_K, scales);
    const QS: usize = offset_of!(BlockQ4_K, qs);
    let m4 = _mm256_set1_epi8(0x0F);
    let lo_pick = _mm256_set1_epi16(0x0100);
    let hi_pick = _mm256_set1_epi16(0x0302);
    let mut acc = [_mm256_setzero_ps(); T];
    let mut acc_m = [_mm256_setzero_ps(); T];
    for i in 0..nb {
        // SAFETY: block i of each operand is in bounds per the contract; every
        // load below stays inside its block.
        unsafe {
            let x = w.add(i * BS);
            let dx = f16_at(x);
            let dmx = f16_at(x.add(2));
            let (sc, mn) = k4_scales_mins(x.add(SC));
            let mins = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(mn as i64));
            let mdup = _mm256_set_m128i(
                _mm_unpackhi_epi16(mins, mins),
                _mm_unpacklo_epi16(mins, mins),
            );
            // Scale pair p sits in dword p of the 16-bit widened scales.
            let sc16 = _mm256_castsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(sc as i64)));
            let mut sumi = [_mm256_setzero_si256(); T];
            for p in 0..4 {
                let q = _mm256_loadu_si256(x.add(QS + 32 * p).cast());
                let lo = _mm256_and_si256(q, m4);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
                let s2 = _mm256_permutevar8x32_epi32(sc16, _mm256_set1_epi32(p as i32));
                let sa = _mm256_shuffle_epi8(s2, lo_pick);
                let sb = _mm256_shuffle_epi8(s2, hi_pick);
                for t in 0..T {
                    let y = a[t].add(i * Q8K_SIZE + Q8K_QS + 64 * p);
                    let qa = _mm256_loadu_si256(y.cast());
                    let qb = _mm256_loadu_si256(y.add(32).cast());
                    let pa = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, qa), sa);
                    let pb = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, qb), sb);
                    sumi[t] = _mm256_add_epi32(sumi[t], _mm256_add_epi32(pa, pb));
                }
            }
            for t in 0..T {
                let y = a[t].add(i * Q8K_SIZE);
                let dy = f32_at(y);
                let d = dy * dx;
                let dmin = dy * dmx;
                let bsums = _mm256_loadu_si256(y.add(Q8K_BSUMS).cast());
                let prod_m = _mm256_madd_epi16(bsums, mdup);
                acc_m[t] =
                    _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(prod_m), acc_m[t]);
                acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
            }
        }
    }
    let mut out = [0.0f32; T];
    for t in 0..T {
        out[t] = hsum_ps(acc[t]) - hsum_ps(acc_m[t]);
    }
    out
}

/// One Q5_K weight row against `T` Q8_K activation rows (see [`dot_q4_k_n`]).
///
/// # Safety
/// As [`dot_q4_k_n`], with Q5_K weight blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_q5_k_n<const T: usize>(
    nb: usize,
    w: *const u8,
    a: [*const u8; T],
) -> [f32; T] {
    const BS: usize = size_of::<BlockQ5_K>();
    const SC: usize = offset_of!(BlockQ5_K, scales);
    const QH: usize = offset_of!(BlockQ5_K, qh);
    const QS: usize = offset_of!(BlockQ5_K, qs);
    let m4 = _mm256_set1_epi8(0x0F);
    let one = _mm256_set1_epi8(1);
    let lo_pick = _mm256_set1_epi16(0x0100);
    let hi_pick = _mm256_set1_epi16(0x0302);
    let mut acc = [_mm256_setzero_ps(); T];
    let mut acc_m = [_mm256_setzero_ps(); T];
    for i in 0..nb {
        // SAFETY: block i of each operand is in bounds per the contract.
        unsafe {
            let x = w.add(i * BS);
            let dx = f16_at(x);
            let dmx = f16_at(x.add(2));
            let (sc, mn) = k4_scales_mins(x.add(SC));
            let mins = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(mn as i64));
            let mdup = _mm256_set_m128i(
                _mm_unpackhi_epi16(mins, mins),
                _mm_unpacklo_epi16(mins, mins),
            );
            let sc16 = _mm256_castsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(sc as i64)));
            // Bit j of qh[l] is the high bit of element l of sub-block j;
            // shifting right once per sub-block brings it to bit 0.
            let mut qh = _mm256_loadu_si256(x.add(QH).cast());
            let mut sumi = [_mm256_setzero_si256(); T];
            for p in 0..4 {
                let q = _mm256_loadu_si256(x.add(QS + 32 * p).cast());
                let h0 = _mm256_slli_epi16::<4>(_mm256_and_si256(qh, one));
                qh = _mm256_srli_epi16::<1>(qh);
                let h1 = _mm256_slli_epi16::<4>(_mm256_and_si256(qh, one));
                qh = _mm256_srli_epi16::<1>(qh);
                let lo = _mm256_or_si256(_mm256_and_si256(q, m4), h0);
                let hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(q), m4), h1);
                let s2 = _mm256_permutevar8x32_epi32(sc16, _mm256_set1_epi32(p as i32));
                let sa = _mm256_shuffle_epi8(s2, lo_pick);
                let sb = _mm256_shuffle_epi8(s2, hi_pick);
                for t in 0..T {
                    let y = a[t].add(i * Q8K_SIZE + Q8K_QS + 64 * p);
                    let qa = _mm256_loadu_si256(y.cast());
                    let qb = _mm256_loadu_si256(y.add(32).cast());
                    let pa = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, qa), sa);
                    let pb = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, qb), sb);
                    sumi[t] = _mm256_add_epi32(sumi[t], _mm256_add_epi32(pa, pb));
                }
            }
            for t in 0..T {
                let y = a[t].add(i * Q8K_SIZE);
                let dy = f32_at(y);
                let d = dy * dx;
                let dmin = dy * dmx;
                let bsums = _mm256_loadu_si256(y.add(Q8K_BSUMS).cast());
                let prod_m = _mm256_madd_epi16(bsums, mdup);
                acc_m[t] =
                    _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(prod_m), acc_m[t]);
                acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
            }
        }
    }
    let mut out = [0.0f32; T];
    for t in 0..T {
        out[t] = hsum_ps(acc[t]) - hsum_ps(acc_m[t]);
    }
    out
}

/// One Q6_K weight row against `T` Q8_K activation rows (see [`dot_q4_k_n`]).
///
/// # Safety
/// As [`dot_q4_k_n`], with Q6_K weight blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_q6_k_n<const T: usize>(
    nb: usize,
    w: *const u8,
    a: [*const u8; T],
) -> [f32; T] {
    const BS: usize = size_of::<BlockQ6_K>();
    const QL: usize = offset_of!(BlockQ6_K, ql);
    const QH: usize = offset_of!(BlockQ6_K, qh);
    const SC: usize = offset_of!(BlockQ6_K, scales);
    const D: usize = offset_of!(BlockQ6_K, d);
    let m4 = _mm256_set1_epi8(0x0F);
    let m3 = _mm256_set1_epi8(0x03);
    let m30 = _mm256_set1_epi8(0x30);
    let mut acc = [_mm256_setzero_ps(); T];
    for i in 0..nb {
        // SAFETY: block i of each operand is in bounds per the contract.
        unsafe {
            let x = w.add(i * BS);
            let dx = f16_at(x.add(D));
            let sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(x.add(SC).cast()));
            let mut sumi = [_mm256_setzero_si256(); T];
            for n in 0..2 {
                let ql0 = _mm256_loadu_si256(x.add(QL + 64 * n).cast());
                let ql1 = _mm256_loadu_si256(x.add(QL + 64 * n + 32).cast());
                let qh = _mm256_loadu_si256(x.add(QH + 32 * n).cast());
                let q = [
                    _mm256_or_si256(
                        _mm256_and_si256(ql0, m4),
                        _mm256_slli_epi16::<4>(_mm256_and_si256(qh, m3)),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(ql1, m4),
                        _mm256_and_si256(_mm256_slli_epi16::<2>(qh), m30),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16::<4>(ql0), m4),
                        _mm256_and_si256(qh, m30),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), m4),
                        _mm256_and_si256(_mm256_srli_epi16::<2>(qh), m30),
                    ),
                ];
                for (k, &u) in q.iter().enumerate() {
                    let s = pair_scales(sc16, (4 * n + k) as i32);
                    for t in 0..T {
                        let q8 = _mm256_loadu_si256(
                            a[t].add(i * Q8K_SIZE + Q8K_QS + 128 * n + 32 * k).cast(),
                        );
                        let p = _mm256_madd_epi16(_mm256_maddubs_epi16(u, q8), s);
                        sumi[t] = _mm256_add_epi32(sumi[t], p);
                    }
                }
            }
            for t in 0..T {
                let y = a[t].add(i * Q8K_SIZE);
                let d = f32_at(y) * dx;
                // Σ_j scale_j · bsum_j, times the offset 32.
                let offs = _mm256_madd_epi16(_mm256_loadu_si256(y.add(Q8K_BSUMS).cast()), sc16);
                let s = _mm256_sub_epi32(sumi[t], _mm256_slli_epi32::<5>(offs));
                acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(s), acc[t]);
            }
        }
    }
    let mut out = [0.0f32; T];
    for t in 0..T {
        out[t] = hsum_ps(acc[t]);
    }
    out
}

/// The 16 Q3_K sub-block scales (6 bits, minus 32) from the 12 packed bytes
/// at `s` as i16, in one vector pass (equal to [`q3_k_scales`]): the low 4
/// bits are the nibbles of bytes 0..8 (low nibbles for scales 0..8, high for
/// 8..16), the high 2 bits are bit pair `k / 4` of byte `k % 4` of bytes 8..12.
/// The AVX-512 Q3_K kernels use it too.
///
/// # Safety
/// AVX2 available; `s..s+12` readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn q3_k_scales16(s: *const u8) -> __m256i {
    // SAFETY: 12 readable bytes per the contract.
    let (l, t) = unsafe {
        (
            _mm_loadl_epi64(s.cast()),
            _mm_set1_epi32(u32_at(s.add(8)) as i32),
        )
    };
    let m4 = _mm_set1_epi8(0x0F);
    let lo = _mm_unpacklo_epi64(
        _mm_and_si128(l, m4),
        _mm_and_si128(_mm_srli_epi16::<4>(l), m4),
    );
    // Dword k of `hi`: t >> 2k, bits 0..2 of each byte moved to 4..6.
    let hi = _mm_and_si128(
        _mm_slli_epi32::<4>(_mm_srlv_epi32(t, _mm_setr_epi32(0, 2, 4, 6))),
        _mm_set1_epi8(0x30),
    );
    _mm256_cvtepi8_epi16(_mm_sub_epi8(_mm_or_si128(lo, hi), _mm_set1_epi8(32)))
}

/// One Q3_K weight row against `T` Q8_K activation rows (see [`dot_q4_k_n`]).
///
/// # Safety
/// As [`dot_q4_k_n`], with Q3_K weight blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_q3_k_n<const T: usize>(
    nb: usize,
    w: *const u8,
    a: [*const u8; T],
) -> [f32; T] {
    const BS: usize = size_of::<BlockQ3_K>();
    const HM: usize = offset_of!(BlockQ3_K, hmask);
    const QS: usize = offset_of!(BlockQ3_K, qs);
    const SC: usize = offset_of!(BlockQ3_K, scales);
    const D: usize = offset_of!(BlockQ3_K, d);
    let m3 = _mm256_set1_epi8(0x03);
    let one = _mm256_set1_epi8(1);
    let mut acc = [_mm256_setzero_ps(); T];
    for i in 0..nb {
        // SAFETY: block i of each operand is in bounds per the contract.
        unsafe {
            let x = w.add(i * BS);
            let dx = f16_at(x.add(D));
            let sc16 = q3_k_scales16(x.add(SC));
            // Element value = (low 2 bits | hmask bit << 2) - 4.
            let mut hm = _mm256_loadu_si256(x.add(HM).cast());
            let mut sumi = [_mm256_setzero_si256(); T];
            for n in 0..2 {
                let mut q = _mm256_loadu_si256(x.add(QS + 32 * n).cast());
                for j in 0..4 {
                    let low = _mm256_and_si256(q, m3);
                    q = _mm256_srli_epi16::<2>(q);
                    let h = _mm256_slli_epi16::<2>(_mm256_and_si256(hm, one));
                    hm = _mm256_srli_epi16::<1>(hm);
                    let u = _mm256_or_si256(low, h);
                    let s = pair_scales(sc16, (4 * n + j) as i32);
                    for t in 0..T {
                        let q8 = _mm256_loadu_si256(
                            a[t].add(i * Q8K_SIZE + Q8K_QS + 128 * n + 32 * j).cast(),
                        );
                        let p = _mm256_madd_epi16(_mm256_maddubs_epi16(u, q8), s);
                        sumi[t] = _mm256_add_epi32(sumi[t], p);
                    }
                }
            }
            for t in 0..T {
                let y = a[t].add(i * Q8K_SIZE);
                let d = f32_at(y) * dx;
                let offs = _mm256_madd_epi16(_mm256_loadu_si256(y.add(Q8K_BSUMS).cast()), sc16);
                let s = _mm256_sub_epi32(sumi[t], _mm256_slli_epi32::<2>(offs));
                acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(s), acc[t]);
            }
        }
    }
    let mut out = [0.0f32; T];
    for t in 0..T {
        out[t] = hsum_ps(acc[t]);
    }
    out
}

/// One Q2_K weight row against `T` Q8_K activation rows (see [`dot_q4_k_n`]).
///
/// # Safety
/// As [`dot_q4_k_n`], with Q2_K weight blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_q2_k_n<const T: usize>(
    nb: usize,
    w: *const u8,
    a: [*const u8; T],
) -> [f32; T] {
    const BS: usize = size_of::<BlockQ2_K>();
    const SC: usize = offset_of!(BlockQ2_K, scales);
    const QS: usize = offset_of!(BlockQ2_K, qs);
    const D: usize = offset_of!(BlockQ2_K, d);
    const DMIN: usize = offset_of!(BlockQ2_K, dmin);
    let m3 = _mm256_set1_epi8(0x03);
    let m4 = _mm_set1_epi8(0x0F);
    let mut acc = [_mm256_setzero_ps(); T];
    let mut acc_m = [_mm256_setzero_ps(); T];
    for i in 0..nb {
        // SAFETY: block i of each operand is in bounds per the contract.
        unsafe {
            let x = w.add(i * BS);
            let dx = f16_at(x.add(D));
            let dmx = f16_at(x.add(DMIN));
            let raw = _mm_loadu_si128(x.add(SC).cast());
            let sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(raw, m4));
            let mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16::<4>(raw), m4));
            let mut sumi = [_mm256_setzero_si256(); T];
            for n in 0..2 {
                let mut q = _mm256_loadu_si256(x.add(QS + 32 * n).cast());
                for j in 0..4 {
                    let u = _mm256_and_si256(q, m3);
                    q = _mm256_srli_epi16::<2>(q);
                    let s = pair_scales(sc16, (4 * n + j) as i32);
                    for t in 0..T {
                        let q8 = _mm256_loadu_si256(
                            a[t].add(i * Q8K_SIZE + Q8K_QS + 128 * n + 32 * j).cast(),
                        );
                        let p = _mm256_madd_epi16(_mm256_maddubs_epi16(u, q8), s);
                        sumi[t] = _mm256_add_epi32(sumi[t], p);
                    }
                }
            }
            for t in 0..T {
                let y = a[t].add(i * Q8K_SIZE);
                let dy = f32_at(y);
                let d = dy * dx;
                let dmin = dy * dmx;
                let bsums = _mm256_loadu_si256(y.add(Q8K_BSUMS).cast());
                let prod_m = _mm256_madd_epi16(bsums, mn16);
                acc_m[t] =
                    _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(prod_m), acc_m[t]);
                acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
            }
        }
    }
    let mut out = [0.0f32; T];
    for t in 0..T {
        out[t] = hsum_ps(acc[t]) - hsum_ps(acc_m[t]);
    }
    out
}

/// 32 IQ4 codebook values (signed bytes) from 16 packed bytes at `p`: low
/// nibbles first, then high nibbles.
///
/// # Safety
/// `p..p+16` must be readable.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn iq4_values(p: *const u8, lut: __m256i) -> __m256i {
    // SAFETY: 16 readable bytes per the contract.
    let q = unsafe { _mm_loadu_si128(p.cast()) };
    let idx = _mm256_and_si256(
        _mm256_set_m128i(_mm_srli_epi16::<4>(q), q),
        _mm256_set1_epi8(0x0F),
    );
    _mm256_shuffle_epi8(lut, idx)
}

/// One IQ4_XS weight row against `T` Q8_K activation rows (see
/// [`dot_q4_k_n`]).
///
/// # Safety
/// As [`dot_q4_k_n`], with IQ4_XS weight blocks; activations must lie in
/// `-127..=127` (what [`crate::formats::k_quants::quantize_row_q8_k`] produces).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_iq4_xs_n<const T: usize>(
    nb: usize,
    w: *const u8,
    a: [*const u8; T],
) -> [f32; T] {
    const BS: usize = size_of::<BlockIQ4_XS>();
    const SH: usize = offset_of!(BlockIQ4_XS, scales_h);
    const SL: usize = offset_of!(BlockIQ4_XS, scales_l);
    const QS: usize = offset_of!(BlockIQ4_XS, qs);
    // SAFETY: KVALUES_IQ4NL is 16 bytes.
    let lut =
        _mm256_broadcastsi128_si256(unsafe { _mm_loadu_si128(KVALUES_IQ4NL.as_ptr().cast()) });
    let mut acc = [_mm256_setzero_ps(); T];
    for i in 0..nb {
        // SAFETY: block i of each operand is in bounds per the contract.
        unsafe {
            let x = w.add(i * BS);
            let dx = f16_at(x);
            let sh = x.add(SH).cast::<u16>().read_unaligned() as u32;
            let sl = u32_at(x.add(SL));
            let mut sumi = [_mm256_setzero_si256(); T];
            for ib in 0..8 {
                let ls = (((sl >> (4 * ib)) & 0xF) | (((sh >> (2 * ib)) & 3) << 4)) as i32 - 32;
                let s = _mm256_set1_epi16(ls as i16);
                let v = iq4_values(x.add(QS + 16 * ib), lut);
                let av = _mm256_sign_epi8(v, v);
                for t in 0..T {
                    let q8 = _mm256_loadu_si256(a[t].add(i * Q8K_SIZE + Q8K_QS + 32 * ib).cast());
                    let p = _mm256_maddubs_epi16(av, _mm256_sign_epi8(q8, v));
                    sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(p, s));
                }
            }
            for t in 0..T {
                let d = f32_at(a[t].add(i * Q8K_SIZE)) * dx;
                acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
            }
        }
    }
    let mut out = [0.0f32; T];
    for t in 0..T {
        out[t] = hsum_ps(acc[t]);
    }
    out
}

/// IQ4_NL · Q8_0 over `nb` blocks of 32.
///
/// # Safety
/// AVX2/FMA/F16C available; `w` points to `nb` readable IQ4_NL blocks and
/// `a` to `nb` readable Q8_0 blocks whose values lie in `-127..=127`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_iq4_nl(nb: usize, w: *const u8, a: *const u8) -> f32 {
    const BS: usize = size_of::<BlockIQ4_NL>();
    const QS: usize = offset_of!(BlockIQ4_NL, qs);
    const ABS: usize = size_of::<BlockQ8_0>();
    const AQS: usize = offset_of!(BlockQ8_0, qs);
    // SAFETY: KVALUES_IQ4NL is 16 bytes.
    let lut =
        _mm256_broadcastsi128_si256(unsafe { _mm_loadu_si128(KVALUES_IQ4NL.as_ptr().cast()) });
    let ones = _mm256_set1_epi16(1);
    let mut acc = _mm256_setzero_ps();
    for i in 0..nb {
        // SAFETY: block i of each operand is in bounds per the contract.
        unsafe {
            let x = w.add(i * BS);
            let y = a.add(i * ABS);
            let d = f16_at(x) * f16_at(y);
            let v = iq4_values(x.add(QS), lut);
            let q8 = _mm256_loadu_si256(y.add(AQS).cast());
            let p = _mm256_maddubs_epi16(_mm256_sign_epi8(v, v), _mm256_sign_epi8(q8, v));
            let s = _mm256_madd_epi16(p, ones);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(s), acc);
        }
    }
    hsum_ps(acc)
}

/// A tile function over a per-row dot `$dot(nb, w, a)` with `$qk` elements
/// per block.
macro_rules! mat_fn {
    ($name:ident, $dot:ident, $qk:expr) => {
        /// Tile function (see [`crate::table::MatFn`]).
        ///
        /// # Safety
        /// AVX2, FMA and F16C must be available and `args` must satisfy
        /// `MatArgs::is_valid` for this type and `out`.
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn $name(args: &MatArgs<'_>, out: &mut [f32]) {
            let nb = args.n / $qk;
            for t in 0..args.nt {
                for r in 0..args.nr {
                    // SAFETY: is_valid guarantees rows r and t lie inside the
                    // slices (`nb` whole blocks each).
                    let v = unsafe {
                        $dot(
                            nb,
                            args.w.as_ptr().add(r * args.w_stride),
                            args.a.as_ptr().add(t * args.a_stride),
                        )
                    };
                    out[t * args.nr + r] = v;
                }
            }
        }
    };
}

/// Tile function over a multi-token row dot `$dotn::<T>`: 4 tokens per
/// weight-row decode, then the remainder one by one.
macro_rules! mat_multi {
    ($name:ident, $dotn:ident) => {
        /// Tile function (see [`crate::table::MatFn`]).
        ///
        /// # Safety
        /// AVX2, FMA and F16C must be available and `args` must satisfy
        /// `MatArgs::is_valid` for this type and `out`.
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn $name(args: &MatArgs<'_>, out: &mut [f32]) {
            let nb = args.n / QK_K;
            let ap = |t: usize| args.a.as_ptr().wrapping_add(t * args.a_stride);
            for r in 0..args.nr {
                let wp = args.w.as_ptr().wrapping_add(r * args.w_stride);
                let mut t = 0;
                while t + 4 <= args.nt {
                    // SAFETY: is_valid guarantees weight row r and activation
                    // rows t..t+4 lie inside the slices.
                    let v = unsafe { $dotn::<4>(nb, wp, [ap(t), ap(t + 1), ap(t + 2), ap(t + 3)]) };
                    for (k, &vk) in v.iter().enumerate() {
                        out[(t + k) * args.nr + r] = vk;
                    }
                    t += 4;
                }
                while t < args.nt {
                    // SAFETY: as above, for row t.
                    let v = unsafe { $dotn::<1>(nb, wp, [ap(t)]) };
                    out[t * args.nr + r] = v[0];
                    t += 1;
                }
            }
        }
    };
}

mat_multi!(mat_q2_k, dot_q2_k_n);
mat_multi!(mat_q3_k, dot_q3_k_n);
mat_multi!(mat_q4_k, dot_q4_k_n);
mat_multi!(mat_q5_k, dot_q5_k_n);
mat_multi!(mat_q6_k, dot_q6_k_n);
mat_multi!(mat_iq4_xs, dot_iq4_xs_n);
mat_fn!(mat_iq4_nl, dot_iq4_nl, QK4_NL);

/// The AVX2 tile function for a K-quant / IQ4 weight type.
pub(crate) fn mat(ty: GgmlType) -> Option<MatFn> {
    Some(match ty {
        GgmlType::Q2_K => mat_q2_k,
        GgmlType::Q3_K => mat_q3_k,
        GgmlType::Q4_K => mat_q4_k,
        GgmlType::Q5_K => mat_q5_k,
        GgmlType::Q6_K => mat_q6_k,
        GgmlType::IQ4_XS => mat_iq4_xs,
        GgmlType::IQ4_NL => mat_iq4_nl,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector Q3_K scale decoder equals the scalar one on random and
    /// all-ones / all-zeros bytes.
    #[test]
    fn q3_k_scales16_matches_scalar() {
        if !crate::dispatch::is_available(crate::Isa::Avx2) {
            return;
        }
        let mut st = 0x9e37_79b9_7f4a_7c15u64;
        let mut cases = vec![[0u8; 12], [0xFF; 12]];
        for _ in 0..1000 {
            let mut b = [0u8; 12];
            for v in b.iter_mut() {
                st ^= st << 13;
                st ^= st >> 7;
                st ^= st << 17;
                *v = st as u8;
            }
            cases.push(b);
        }
        for b in cases {
            // SAFETY: 12 readable bytes; AVX2 checked above.
            let (want, got) = unsafe { (q3_k_scales(b.as_ptr()), q3_k_scales16(b.as_ptr())) };
            let mut g = [0i16; 16];
            // SAFETY: 32 writable bytes.
            unsafe { _mm256_storeu_si256(g.as_mut_ptr().cast(), got) };
            let w: Vec<i16> = want.iter().map(|&v| v as i16).collect();
            assert_eq!(g.to_vec(), w, "{b:?}");
        }
    }
}
