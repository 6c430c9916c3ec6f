//! AVX2 Q8_K activation quantizer (the partner of every K-quant and
//! IQ4_XS), bit-identical to the scalar `k_quants::quantize_row_q8_k` (which
//! is ggml's `quantize_row_q8_K_ref`) for every input, NaN and infinities
//! included: the same `amax` (`vmaxps` with the running maximum as second
//! operand skips NaN as the scalar `>` does), the same signed `max` (the
//! first element of largest magnitude, found by compare + `movemask`), the
//! same f32 division `iscale = −127/max`, per element the same product and
//! magic-number rounding (`(x·iscale + 1.5·2^23)` bits, masked, minus
//! `2^22`), `min(127, ·)` and a truncating cast to i8 (the low byte of each
//! i32, as `as i8` does), then `bsums` from the stored bytes and `d =
//! 1/iscale`. Used on AVX2 and AVX-512 CPUs alike (the work is small next
//! to the matmul; 256-bit registers suffice).

use core::arch::x86_64::*;

use crate::formats::k_quants::QK_K;
use crate::formats::layout::{Q8_K_BSUMS, Q8_K_BYTES as BLOCK, Q8_K_QS};

/// Quantizes `x` (a multiple of 256 long) into Q8_K blocks at `out`.
///
/// # Safety
/// The CPU has AVX2.
#[target_feature(enable = "avx2")]
unsafe fn quantize_q8_k(x: &[f32], out: &mut [u8]) {
    let nb = x.len() / QK_K;
    assert!(
        x.len().is_multiple_of(QK_K) && out.len() >= nb * BLOCK,
        "activation buffer too small"
    );
    let sign = _mm256_set1_ps(-0.0);
    let magic = _mm256_set1_ps(12_582_912.0);
    let mant = _mm256_set1_epi32(0x007f_ffff);
    let half = _mm256_set1_epi32(0x0040_0000);
    let top = _mm256_set1_epi32(127);
    let low_byte = _mm256_set1_epi32(0xFF);
    let perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    let ones8 = _mm256_set1_epi8(1);
    let ones16 = _mm256_set1_epi16(1);
    for (src, o) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(BLOCK)) {
        let xp = src.as_ptr();
        // SAFETY: 256 floats at xp (one chunk of x).
        let ld = |i: usize| unsafe { _mm256_loadu_ps(xp.add(8 * i)) };
        let mut m = _mm256_setzero_ps();
        for i in 0..QK_K / 8 {
            m = _mm256_max_ps(_mm256_andnot_ps(sign, ld(i)), m);
        }
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_max_ss(m, _mm_movehdup_ps(m));
        let amax = _mm_cvtss_f32(m);
        if amax == 0.0 {
            o.fill(0);
            continue;
        }
        // The first element whose magnitude is amax (a max over non-NaN
        // values is one of them, so the scan finds it).
        let va = _mm256_set1_ps(amax);
        let mut max = amax;
        for i in 0..QK_K / 8 {
            let eq = _mm256_cmp_ps::<_CMP_EQ_OQ>(_mm256_andnot_ps(sign, ld(i)), va);
            let bits = _mm256_movemask_ps(eq);
            if bits != 0 {
                max = src[8 * i + bits.trailing_zeros() as usize];
                break;
            }
        }
        let iscale = -127.0f32 / max;
        let vs = _mm256_set1_ps(iscale);
        let (d, rest) = o.split_at_mut(Q8_K_QS);
        d.copy_from_slice(&(1.0 / iscale).to_le_bytes());
        let (qs, bsums) = rest.split_at_mut(Q8_K_BSUMS - Q8_K_QS);
        for c in 0..QK_K / 32 {
            let q: [__m256i; 4] = core::array::from_fn(|k| {
                let r = _mm256_add_ps(_mm256_mul_ps(ld(4 * c + k), vs), magic);
                let n = _mm256_sub_epi32(_mm256_and_si256(_mm256_castps_si256(r), mant), half);
                _mm256_and_si256(_mm256_min_epi32(n, top), low_byte)
            });
            // Values 0..=255: the unsigned packs keep them exactly.
            let p01 = _mm256_packus_epi32(q[0], q[1]);
            let p23 = _mm256_packus_epi32(q[2], q[3]);
            let bytes = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(p01, p23), perm);
            // SAFETY: 32 bytes at 32c inside the 256 quant bytes.
            unsafe { _mm256_storeu_si256(qs.as_mut_ptr().add(32 * c) as *mut __m256i, bytes) };
            // Sums of bytes 0..16 and 16..32 (i8 each).
            let s = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, bytes), ones16);
            let s = _mm256_hadd_epi32(s, s);
            let s = _mm256_hadd_epi32(s, s);
            let lo = _mm256_cvtsi256_si32(s) as i16;
            let hi = _mm256_extract_epi32::<4>(s) as i16;
            bsums[4 * c..][..2].copy_from_slice(&lo.to_le_bytes());
            bsums[4 * c + 2..][..2].copy_from_slice(&hi.to_le_bytes());
        }
    }
}

/// Safe entry for the type table: AVX2 body when the CPU has it, else the
/// scalar quantizer.
pub(crate) fn quantize_act_q8_k(x: &[f32], out: &mut [u8]) {
    if crate::dispatch::is_available(crate::Isa::Avx2) {
        // SAFETY: AVX2 checked just above (the body asserts the sizes).
        unsafe { quantize_q8_k(x, out) }
    } else {
        crate::formats::k_quants::quantize_act_q8_k_bytes(x, out)
    }
}
