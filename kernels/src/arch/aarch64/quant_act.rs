//! NEON activation quantizers for Q8_0 / Q8_1, bit-identical to the scalar
//! `quantize_row_q8_0_act` / `quantize_row_q8_1_act`: the same `amax`
//! (`fmaxnm` ignores NaN as `f32::max` does, and a max is
//! order-independent), the same f32 products `x · (127/amax)`, the same
//! round-half-to-even (`fcvtns`) and saturation to i8 (`sqxtn`, as Rust's
//! `as i8`), the same f16 rounding of `d` and `s` (scalar, per block).

use core::arch::aarch64::*;

use crate::formats::layout::{Q8_0_BYTES, Q8_0_QS, Q8_1_BYTES, Q8_1_QS};

/// Quantizes `x` (a multiple of 32 long) into Q8_0 (`SUM = false`, 34-byte
/// blocks) or Q8_1 (`SUM = true`, 36-byte blocks) at `out`.
///
/// # Safety
/// The CPU has NEON.
#[target_feature(enable = "neon")]
unsafe fn quantize_q8<const SUM: bool>(x: &[f32], out: &mut [u8]) {
    let (bs, qoff) = if SUM {
        (Q8_1_BYTES, Q8_1_QS)
    } else {
        (Q8_0_BYTES, Q8_0_QS)
    };
    assert!(
        out.len() >= x.len() / 32 * bs,
        "activation buffer too small"
    );
    for (xb, o) in x.chunks_exact(32).zip(out.chunks_exact_mut(bs)) {
        // SAFETY: `xb` has 32 floats (8 loads of 4) and `o` has `bs` bytes,
        // so the 32 quants fit at `qoff` (bs = qoff + 32); NEON (caller).
        unsafe {
            let v: [float32x4_t; 8] = core::array::from_fn(|k| vld1q_f32(xb.as_ptr().add(4 * k)));
            let m = v.map(|vk| vabsq_f32(vk));
            let m01 = vmaxnmq_f32(vmaxnmq_f32(m[0], m[1]), vmaxnmq_f32(m[2], m[3]));
            let m23 = vmaxnmq_f32(vmaxnmq_f32(m[4], m[5]), vmaxnmq_f32(m[6], m[7]));
            // (All NaN gives NaN here, 0 in the scalar fold.)
            let amax = 0.0f32.max(vmaxnmvq_f32(vmaxnmq_f32(m01, m23)));
            let d = amax / 127.0;
            let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
            let q: [int32x4_t; 8] = v.map(|vk| vcvtnq_s32_f32(vmulq_n_f32(vk, id)));
            let h: [int16x8_t; 4] =
                core::array::from_fn(|k| vqmovn_high_s32(vqmovn_s32(q[2 * k]), q[2 * k + 1]));
            let b0 = vqmovn_high_s16(vqmovn_s16(h[0]), h[1]);
            let b1 = vqmovn_high_s16(vqmovn_s16(h[2]), h[3]);
            let qp = o.as_mut_ptr().add(qoff) as *mut i8;
            vst1q_s8(qp, b0);
            vst1q_s8(qp.add(16), b1);
            o[..2].copy_from_slice(&half::f16::from_f32(d).to_le_bytes());
            if SUM {
                // Σ of the stored (saturated) quants, as the scalar sums them.
                let s16 = vaddq_s16(
                    vaddq_s16(vmovl_s8(vget_low_s8(b0)), vmovl_high_s8(b0)),
                    vaddq_s16(vmovl_s8(vget_low_s8(b1)), vmovl_high_s8(b1)),
                );
                let sum = vaddlvq_s16(s16);
                o[2..4].copy_from_slice(&half::f16::from_f32(d * sum as f32).to_le_bytes());
            }
        }
    }
}

/// Safe entry for the registry: Q8_0 activations (NEON is checked by the
/// registry before it hands this out; the scalar quantizer otherwise).
pub(crate) fn quantize_act_q8_0(x: &[f32], out: &mut [u8]) {
    if crate::dispatch::is_available(crate::Isa::Neon) {
        // SAFETY: NEON checked just above.
        unsafe { quantize_q8::<false>(x, out) }
    } else {
        crate::formats::q8_0::quantize_act_bytes(x, out)
    }
}

/// As [`quantize_act_q8_0`], for Q8_1.
pub(crate) fn quantize_act_q8_1(x: &[f32], out: &mut [u8]) {
    if crate::dispatch::is_available(crate::Isa::Neon) {
        // SAFETY: NEON checked just above.
        unsafe { quantize_q8::<true>(x, out) }
    } else {
        crate::formats::q8_1::quantize_act_bytes(x, out)
    }
}

#[cfg(test)]
mod tests {
    /// Bit-identical to the scalar quantizers on random rows with zeros,
    /// ties (x · 127/amax exactly k + 0.5), outliers, negative zero and
    /// all-zero blocks.
    #[test]
    fn matches_scalar() {
        let mut seed = 0x51u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for case in 0..200 {
            let n = 32 * (1 + (next() % 8) as usize);
            let mut x: Vec<f32> = (0..n)
                .map(|_| ((next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 8.0)
                .collect();
            match case % 4 {
                // Exact ties: amax 127, values k + 0.5.
                0 => {
                    for (i, v) in x.iter_mut().enumerate() {
                        *v = if i % 32 == 0 {
                            127.0
                        } else {
                            (next() % 254) as f32 - 127.0 + 0.5
                        };
                    }
                }
                1 => x[..32].fill(0.0),
                2 => x[5] = -0.0,
                _ => {}
            }
            for sum in [false, true] {
                let bs = if sum { 36 } else { 34 };
                let (mut a, mut b) = (vec![0u8; n / 32 * bs], vec![0u8; n / 32 * bs]);
                if sum {
                    super::quantize_act_q8_1(&x, &mut a);
                    crate::formats::q8_1::quantize_act_bytes(&x, &mut b);
                } else {
                    super::quantize_act_q8_0(&x, &mut a);
                    crate::formats::q8_0::quantize_act_bytes(&x, &mut b);
                }
                assert_eq!(a, b, "case {case}, n {n}, Q8_{}", if sum { 1 } else { 0 });
            }
        }
    }
}
