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

use crate::formats::iq4::KVALUES_IQ4NL;
use crate::formats::k_quants::BlockQ8_K;

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

/// The 8 Q4_K / Q5_K mins (bytes of `mn`) as i16, each twice: lane pair
/// `2j, 2j+1` holds min `j`, the weight of bsums `2j` and `2j + 1`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn k4_mins16(mn: u64) -> __m256i {
    let mins = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(mn as i64));
    _mm256_set_m128i(
        _mm_unpackhi_epi16(mins, mins),
        _mm_unpacklo_epi16(mins, mins),
    )
}

/// `sumi[t] += Σ pairs of (u·q8_t) · s` for the 32 activation bytes at
/// `a[t] + off` (`vpmaddubsw` then `vpmaddwd` with the pair scales `s`).
///
/// # Safety
/// AVX2; 32 bytes readable at every `a[t] + off`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_group<const T: usize>(
    sumi: &mut [__m256i; T],
    u: __m256i,
    s: __m256i,
    a: &[*const u8; T],
    off: usize,
) {
    for t in 0..T {
        // SAFETY: per the contract.
        let q8 = unsafe { _mm256_loadu_si256(a[t].add(off).cast()) };
        let p = _mm256_madd_epi16(_mm256_maddubs_epi16(u, q8), s);
        sumi[t] = _mm256_add_epi32(sumi[t], p);
    }
}

/// Block `i`'s float step for the types with mins (Q2_K, Q4_K, Q5_K):
/// `acc += d_a·dx·sumi`, `acc_m += d_a·dmx·(bsums · mins16)` per token.
///
/// # Safety
/// AVX2; Q8_K block `i` readable at every `a[t]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn acc_with_mins<const T: usize>(
    (acc, acc_m): (&mut [__m256; T], &mut [__m256; T]),
    sumi: &[__m256i; T],
    a: &[*const u8; T],
    i: usize,
    (dx, dmx): (f32, f32),
    mins16: __m256i,
) {
    for t in 0..T {
        // SAFETY: per the contract.
        let (dy, bsums) = unsafe {
            let y = a[t].add(i * Q8K_SIZE);
            (f32_at(y), _mm256_loadu_si256(y.add(Q8K_BSUMS).cast()))
        };
        let d = dy * dx;
        let dmin = dy * dmx;
        let prod_m = _mm256_madd_epi16(bsums, mins16);
        acc_m[t] = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(prod_m), acc_m[t]);
        acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
    }
}

/// Block `i`'s float step for the types whose values carry an offset
/// (Q3_K: 4, Q6_K: 32 = `1 << SHIFT`) removed through the block sums:
/// `acc += d_a·dx·(sumi − (bsums · sc16) << SHIFT)` per token.
///
/// # Safety
/// AVX2; Q8_K block `i` readable at every `a[t]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn acc_with_offset<const SHIFT: i32, const T: usize>(
    acc: &mut [__m256; T],
    sumi: &[__m256i; T],
    a: &[*const u8; T],
    i: usize,
    dx: f32,
    sc16: __m256i,
) {
    for t in 0..T {
        // SAFETY: per the contract.
        let (dy, bsums) = unsafe {
            let y = a[t].add(i * Q8K_SIZE);
            (f32_at(y), _mm256_loadu_si256(y.add(Q8K_BSUMS).cast()))
        };
        let d = dy * dx;
        let offs = _mm256_madd_epi16(bsums, sc16);
        let s = _mm256_sub_epi32(sumi[t], _mm256_slli_epi32::<SHIFT>(offs));
        acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(s), acc[t]);
    }
}

/// The row results: `Σ acc[t] − Σ acc_m[t]` per token (no mins: `acc_m` zero).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn finish<const T: usize>(acc: &[__m256; T], acc_m: Option<&[__m256; T]>) -> [f32; T] {
    core::array::from_fn(|t| match acc_m {
        Some(m) => hsum_ps(acc[t]) - hsum_ps(m[t]),
        None => hsum_ps(acc[t]),
    })
}

/// One Q4_K (`Q5 == false`) or Q5_K weight row against `T` Q8_K
/// activation rows: weights decoded once per block and reused for every
/// token; each token's arithmetic is the same sequence as for `T = 1`.
/// Q5_K is Q4_K plus one high bit per value (`qh`), merged into the
/// nibbles before the dot.
///
/// # Safety
/// AVX2, FMA and F16C must be available; `w` must point to `nb` readable
/// Q4_K (Q5_K) blocks and each of the `T` pointers in `a` to `nb` readable
/// Q8_K blocks (any alignment).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_q45_k_n<const Q5: bool, const T: usize>(
    nb: usize,
    w: *const u8,
    a: [*const u8; T],
) -> [f32; T] {
    use crate::formats::layout::fields::{k4, K4_SC as SC, K5_QH as QH};
    let (bs, qs) = k4(Q5);
    let m4 = _mm256_set1_epi8(0x0F);
    let one = _mm256_set1_epi8(1);
    let lo_pick = _mm256_set1_epi16(0x0100);
    let hi_pick = _mm256_set1_epi16(0x0302);
    let mut acc = [_mm256_setzero_ps(); T];
    let mut acc_m = [_mm256_setzero_ps(); T];
    for i in 0..nb {
        // SAFETY: block i of each operand is in bounds per the contract; every
        // load below stays inside its block.
        unsafe {
            let x = w.add(i * bs);
            let dx = f16_at(x);
            let dmx = f16_at(x.add(2));
            let (sc, mn) = k4_scales_mins(x.add(SC));
            let mdup = k4_mins16(mn);
            // Scale pair p sits in dword p of the 16-bit widened scales.
            let sc16 = _mm256_castsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(sc as i64)));
            // Q5_K: bit j of qh[l] is the high bit of element l of sub-block
            // j; shifting right once per sub-block brings it to bit 0.
            let mut qh = if Q5 {
                _mm256_loadu_si256(x.add(QH).cast())
            } else {
                _mm256_setzero_si256()
            };
            let mut sumi = [_mm256_setzero_si256(); T];
            for p in 0..4 {
                let q = _mm256_loadu_si256(x.add(qs + 32 * p).cast());
                let mut lo = _mm256_and_si256(q, m4);
                let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
                if Q5 {
                    let h0 = _mm256_slli_epi16::<4>(_mm256_and_si256(qh, one));
                    qh = _mm256_srli_epi16::<1>(qh);
                    let h1 = _mm256_slli_epi16::<4>(_mm256_and_si256(qh, one));
                    qh = _mm256_srli_epi16::<1>(qh);
                    lo = _mm256_or_si256(lo, h0);
                    hi = _mm256_or_si256(hi, h1);
                }
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
            acc_with_mins((&mut acc, &mut acc_m), &sumi, &a, i, (dx, dmx), mdup);
        }
    }
    finish(&acc, Some(&acc_m))
}

/// One Q6_K weight row against `T` Q8_K activation rows (see [`dot_q45_k_n`]).
///
/// # Safety
/// As [`dot_q45_k_n`], with Q6_K weight blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_q6_k_n<const T: usize>(
    nb: usize,
    w: *const u8,
    a: [*const u8; T],
) -> [f32; T] {
    use crate::formats::layout::fields::q6_k::*;
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
                    let off = i * Q8K_SIZE + Q8K_QS + 128 * n + 32 * k;
                    dot_group(&mut sumi, u, s, &a, off);
                }
            }
            // Σ_j scale_j · bsum_j, times the offset 32.
            acc_with_offset::<5, T>(&mut acc, &sumi, &a, i, dx, sc16);
        }
    }
    finish(&acc, None)
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

/// One Q2_K (`Q3 == false`) or Q3_K weight row against `T` Q8_K activation
/// rows (see [`dot_q45_k_n`]). Both store 2-bit values in the same `qs`
/// order under 16 sub-block scales; Q3_K adds a third bit from `hmask`
/// (value = low 2 bits | hmask bit << 2, minus the offset 4 taken out through
/// the block sums) and signed 6-bit scales where Q2_K has 4-bit scales and
/// mins.
///
/// # Safety
/// As [`dot_q45_k_n`], with Q2_K (Q3_K) weight blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_q23_k_n<const Q3: bool, const T: usize>(
    nb: usize,
    w: *const u8,
    a: [*const u8; T],
) -> [f32; T] {
    use crate::formats::layout::fields::{q2_k, q3_k};
    let (bs, qs) = if Q3 {
        (q3_k::BS, q3_k::QS)
    } else {
        (q2_k::BS, q2_k::QS)
    };
    let m3 = _mm256_set1_epi8(0x03);
    let m4 = _mm_set1_epi8(0x0F);
    let one = _mm256_set1_epi8(1);
    let mut acc = [_mm256_setzero_ps(); T];
    let mut acc_m = [_mm256_setzero_ps(); T];
    for i in 0..nb {
        // SAFETY: block i of each operand is in bounds per the contract.
        unsafe {
            let x = w.add(i * bs);
            // (d, scales, mins, hmask): Q3_K has no mins, Q2_K no hmask.
            let (dx, sc16, mn16, mut hm) = if Q3 {
                let hm = _mm256_loadu_si256(x.add(q3_k::HM).cast());
                let sc16 = q3_k_scales16(x.add(q3_k::SC));
                (f16_at(x.add(q3_k::D)), sc16, _mm256_setzero_si256(), hm)
            } else {
                let raw = _mm_loadu_si128(x.add(q2_k::SC).cast());
                let sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(raw, m4));
                let mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16::<4>(raw), m4));
                (f16_at(x.add(q2_k::D)), sc16, mn16, _mm256_setzero_si256())
            };
            let mut sumi = [_mm256_setzero_si256(); T];
            for n in 0..2 {
                let mut q = _mm256_loadu_si256(x.add(qs + 32 * n).cast());
                for j in 0..4 {
                    let mut u = _mm256_and_si256(q, m3);
                    q = _mm256_srli_epi16::<2>(q);
                    if Q3 {
                        let h = _mm256_slli_epi16::<2>(_mm256_and_si256(hm, one));
                        hm = _mm256_srli_epi16::<1>(hm);
                        u = _mm256_or_si256(u, h);
                    }
                    let s = pair_scales(sc16, (4 * n + j) as i32);
                    let off = i * Q8K_SIZE + Q8K_QS + 128 * n + 32 * j;
                    dot_group(&mut sumi, u, s, &a, off);
                }
            }
            if Q3 {
                acc_with_offset::<2, T>(&mut acc, &sumi, &a, i, dx, sc16);
            } else {
                let dmx = f16_at(x.add(q2_k::DMIN));
                acc_with_mins((&mut acc, &mut acc_m), &sumi, &a, i, (dx, dmx), mn16);
            }
        }
    }
    finish(&acc, if Q3 { None } else { Some(&acc_m) })
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
/// [`dot_q45_k_n`]).
///
/// # Safety
/// As [`dot_q45_k_n`], with IQ4_XS weight blocks; activations must lie in
/// `-127..=127` (what [`crate::formats::k_quants::quantize_row_q8_k`] produces).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_iq4_xs_n<const T: usize>(
    nb: usize,
    w: *const u8,
    a: [*const u8; T],
) -> [f32; T] {
    use crate::formats::layout::fields::iq4_xs::*;
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
    finish(&acc, None)
}

/// IQ4_NL · Q8_0 over `nb` blocks of 32.
///
/// # Safety
/// AVX2/FMA/F16C available; `w` points to `nb` readable IQ4_NL blocks and
/// `a` to `nb` readable Q8_0 blocks whose values lie in `-127..=127`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_iq4_nl(nb: usize, w: *const u8, a: *const u8) -> f32 {
    use crate::formats::layout::fields::iq4_nl::{BS, QS};
    use crate::formats::layout::fields::q8_0::{BS as ABS, QS as AQS};
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

k_tiles! {
    "avx2,fma,f16c";
    IQ4_NL => dot_iq4_nl;
    Q2_K => dot_q23_k_n[false];
    Q3_K => dot_q23_k_n[true];
    Q4_K => dot_q45_k_n[false];
    Q5_K => dot_q45_k_n[true];
    Q6_K => dot_q6_k_n[];
    IQ4_XS => dot_iq4_xs_n[];
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
