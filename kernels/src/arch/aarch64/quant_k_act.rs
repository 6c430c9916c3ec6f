//! NEON Q8_K activation quantizer (the partner of every K-quant and
//! IQ4_XS), bit-identical to the scalar `k_quants::quantize_row_q8_k`
//! (ggml's `quantize_row_q8_K_ref`) for every input, NaN and infinities
//! included:
//!
//! * `amax` as an integer maximum of the magnitudes' bit patterns with NaNs
//!   masked to 0, so NaN is skipped as the scalar `>` skips it (`fmax`
//!   propagates NaN; `fmaxnm` returns NaN for a signalling NaN, and LLVM
//!   turns a float compare-and-select into `fmaxnm`: the test's signalling
//!   NaN caught that);
//! * the signed `max` is the first element whose magnitude equals `amax`
//!   (the scalar loop keeps the first one of largest magnitude);
//! * the same f32 division `iscale = −127/max`, per element the same product
//!   `iscale·x` and the same magic-number rounding (`(p + 1.5·2^23)` bits,
//!   masked, minus `2^22`), `min(127, ·)`, then a truncating narrow to i8
//!   (the low byte, as `as i8` does);
//! * `bsums` from the stored bytes (`saddlv`), and `d = 1/iscale`.
//!
//! No dotprod needed: one body for every NEON CPU.

use core::arch::aarch64::*;

use crate::formats::k_quants::QK_K;
use crate::formats::layout::{Q8_K_BSUMS, Q8_K_BYTES as BLOCK, Q8_K_QS};

/// Quantizes `x` (a multiple of 256 long) into Q8_K blocks at `out`.
///
/// # Safety
/// The CPU has NEON.
#[target_feature(enable = "neon")]
unsafe fn quantize_q8_k(x: &[f32], out: &mut [u8]) {
    let nb = x.len() / QK_K;
    assert!(
        x.len().is_multiple_of(QK_K) && out.len() >= nb * BLOCK,
        "activation buffer too small"
    );
    let magic = vdupq_n_f32(12_582_912.0);
    let mant = vdupq_n_u32(0x007f_ffff);
    let half = vdupq_n_s32(0x0040_0000);
    let top = vdupq_n_s32(127);
    let abs_mask = vdupq_n_u32(0x7fff_ffff);
    let inf = vdupq_n_u32(0x7f80_0000);
    for (src, o) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(BLOCK)) {
        let xp = src.as_ptr();
        // SAFETY: 256 floats at xp (one chunk of x), i < 64.
        let ld = |i: usize| unsafe { vld1q_f32(xp.add(4 * i)) };
        // Magnitudes as integers: for non-NaN values the bit patterns of
        // |x| order as the floats do; NaNs (bits above infinity's) count as
        // 0. Four running maxima, lanes independent.
        let mut m = [vdupq_n_u32(0); 4];
        for i in 0..QK_K / 16 {
            for (k, mk) in m.iter_mut().enumerate() {
                let a = vandq_u32(vreinterpretq_u32_f32(ld(4 * i + k)), abs_mask);
                *mk = vmaxq_u32(*mk, vandq_u32(a, vcleq_u32(a, inf)));
            }
        }
        let m = vmaxq_u32(vmaxq_u32(m[0], m[1]), vmaxq_u32(m[2], m[3]));
        let amax = f32::from_bits(vmaxvq_u32(m));
        if amax == 0.0 {
            o.fill(0);
            continue;
        }
        // The first element whose magnitude is amax (amax is the magnitude
        // of a non-NaN element, so the scan finds it).
        let va = vdupq_n_f32(amax);
        let mut max = amax;
        for i in 0..QK_K / 4 {
            let eq = vceqq_f32(vabsq_f32(ld(i)), va);
            if vmaxvq_u32(eq) != 0 {
                let k = (0..4).find(|&k| src[4 * i + k].abs() == amax).unwrap_or(0);
                max = src[4 * i + k];
                break;
            }
        }
        let iscale = -127.0f32 / max;
        let vs = vdupq_n_f32(iscale);
        let (d, rest) = o.split_at_mut(Q8_K_QS);
        d.copy_from_slice(&(1.0 / iscale).to_le_bytes());
        let (qs, bsums) = rest.split_at_mut(Q8_K_BSUMS - Q8_K_QS);
        for c in 0..QK_K / 16 {
            let q: [int16x4_t; 4] = core::array::from_fn(|k| {
                // The scalar `iscale * v`, then nearest_int's bit trick.
                let r = vaddq_f32(vmulq_f32(vs, ld(4 * c + k)), magic);
                let n = vsubq_s32(
                    vreinterpretq_s32_u32(vandq_u32(vreinterpretq_u32_f32(r), mant)),
                    half,
                );
                vmovn_s32(vminq_s32(n, top))
            });
            let bytes = vcombine_s8(
                vmovn_s16(vcombine_s16(q[0], q[1])),
                vmovn_s16(vcombine_s16(q[2], q[3])),
            );
            // SAFETY: 16 bytes at 16c inside the 256 quant bytes.
            unsafe { vst1q_s8(qs.as_mut_ptr().add(16 * c) as *mut i8, bytes) };
            bsums[2 * c..][..2].copy_from_slice(&vaddlvq_s8(bytes).to_le_bytes());
        }
    }
}

/// Safe entry for the registry: the NEON body when the CPU has NEON, else
/// the scalar quantizer.
pub(crate) fn quantize_act_q8_k(x: &[f32], out: &mut [u8]) {
    if crate::dispatch::is_available(crate::Isa::Neon) {
        // SAFETY: NEON checked just above (the body asserts the sizes).
        unsafe { quantize_q8_k(x, out) }
    } else {
        crate::formats::k_quants::quantize_act_q8_k_bytes(x, out)
    }
}
