//! AVX2 activation quantizers for Q8_0 / Q8_1, bit-identical to the scalar
//! `quantize_row_q8_0_act` / `quantize_row_q8_1_act` for finite inputs:
//! the same `amax` (a max is order-independent), the same f32 products
//! `x · (127/amax)`, the same round-half-to-even, the same f16 rounding of
//! `d` and `s`. (The scalar `round_ties_even` is a libm call on baseline
//! x86-64, so this matters: ~10 % of a 3072-wide gemv.)

use core::arch::x86_64::*;

/// Quantizes `x` (a multiple of 32 long) into Q8_0 (`SUM = false`, 34-byte
/// blocks) or Q8_1 (`SUM = true`, 36-byte blocks) at `out`.
///
/// # Safety
/// CPU has AVX2 + FMA + F16C; `out.len() >= x.len() / 32 * block bytes`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn quantize_q8<const SUM: bool>(x: &[f32], out: &mut [u8]) {
    use crate::formats::layout::{Q8_0_BYTES, Q8_0_QS, Q8_1_BYTES, Q8_1_QS};
    let (bs, qoff) = if SUM {
        (Q8_1_BYTES, Q8_1_QS)
    } else {
        (Q8_0_BYTES, Q8_0_QS)
    };
    let nb = x.len() / 32;
    assert!(out.len() >= nb * bs, "activation buffer too small");
    let sign = _mm256_set1_ps(-0.0);
    let perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    let f16_bits = |v: f32| {
        _mm_extract_epi16::<0>(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set_ss(v))) as u16
    };
    for b in 0..nb {
        let xp = x[b * 32..].as_ptr();
        // SAFETY: block b has 32 floats inside `x` (b < nb).
        let v = unsafe {
            [
                _mm256_loadu_ps(xp),
                _mm256_loadu_ps(xp.add(8)),
                _mm256_loadu_ps(xp.add(16)),
                _mm256_loadu_ps(xp.add(24)),
            ]
        };
        let m01 = _mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1]));
        let m23 = _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3]));
        let m = _mm256_max_ps(m01, m23);
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_max_ss(m, _mm_movehdup_ps(m));
        let amax = _mm_cvtss_f32(m);
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let idv = _mm256_set1_ps(id);
        let q: [__m256i; 4] = core::array::from_fn(|k| {
            _mm256_cvtps_epi32(_mm256_round_ps::<
                { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
            >(_mm256_mul_ps(v[k], idv)))
        });
        let p01 = _mm256_packs_epi32(q[0], q[1]);
        let p23 = _mm256_packs_epi32(q[2], q[3]);
        let bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p01, p23), perm);
        let o = &mut out[b * bs..(b + 1) * bs];
        o[..2].copy_from_slice(&f16_bits(d).to_le_bytes());
        // SAFETY: `o` has `bs` bytes, so 32 bytes fit at `qoff` (bs = qoff + 32).
        unsafe { _mm256_storeu_si256(o.as_mut_ptr().add(qoff) as *mut __m256i, bytes) };
        if SUM {
            let s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
            let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
            let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
            let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
            let sum = _mm_cvtsi128_si32(s);
            o[2..4].copy_from_slice(&f16_bits(d * sum as f32).to_le_bytes());
        }
    }
}

/// Safe entry for the type table: AVX2 body when the CPU has it, else scalar.
pub(crate) fn quantize_act_q8_0(x: &[f32], out: &mut [u8]) {
    if crate::dispatch::is_available(crate::Isa::Avx2) {
        // SAFETY: AVX2+FMA+F16C checked just above; the driver sizes `out`
        // for x.len()/32 blocks (and the body asserts it).
        unsafe { quantize_q8::<false>(x, out) }
    } else {
        crate::formats::q8_0::quantize_act_bytes(x, out)
    }
}

/// As [`quantize_act_q8_0`], for Q8_1.
pub(crate) fn quantize_act_q8_1(x: &[f32], out: &mut [u8]) {
    if crate::dispatch::is_available(crate::Isa::Avx2) {
        // SAFETY: as in `quantize_act_q8_0`.
        unsafe { quantize_q8::<true>(x, out) }
    } else {
        crate::formats::q8_1::quantize_act_bytes(x, out)
    }
}

/// f32 → f16 activations with F16C `vcvtps2ph` (round to nearest even, as
/// the scalar `half::f16::from_f32`).
///
/// # Safety
/// CPU has AVX2 + FMA + F16C; `out.len() >= 2 * x.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn to_f16(x: &[f32], out: &mut [u8]) {
    assert!(out.len() >= 2 * x.len(), "activation buffer too small");
    let n8 = x.len() / 8 * 8;
    let (xp, op) = (x.as_ptr(), out.as_mut_ptr());
    let mut i = 0;
    while i < n8 {
        // SAFETY: i + 8 <= x.len() floats, and 16 bytes at 2i fit in `out`.
        unsafe {
            let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(xp.add(i)));
            _mm_storeu_si128(op.add(2 * i) as *mut __m128i, h);
        }
        i += 8;
    }
    for j in n8..x.len() {
        out[2 * j..2 * j + 2].copy_from_slice(&half::f16::from_f32(x[j]).to_bits().to_le_bytes());
    }
}

/// Safe entry for F16 activations: F16C when available, else scalar.
pub(crate) fn quantize_act_f16(x: &[f32], out: &mut [u8]) {
    if crate::dispatch::is_available(crate::Isa::Avx2) {
        // SAFETY: AVX2+FMA+F16C checked just above; the driver sizes `out`
        // for 2 bytes per element (and the body asserts it).
        unsafe { to_f16(x, out) }
    } else {
        crate::formats::float::quantize_act_f16_bytes(x, out)
    }
}
