//! Q4_1: 32 weights per block, 4-bit unsigned `q * d + m`.

use super::{pack_nibbles, quantize_min_block, trunc_i8, BlockQ8_1, QK};
use bytemuck::{Pod, Zeroable};
use half::f16;

/// ggml `block_q4_1`: scale `d`, minimum `m`, nibbles as in Q4_0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; QK / 2],
}
const _: () = assert!(core::mem::size_of::<BlockQ4_1>() == 20);

/// Quantizes like ggml's `quantize_row_q4_1_ref`.
pub fn quantize_row_q4_1(x: &[f32], y: &mut [BlockQ4_1]) {
    debug_assert_eq!(x.len(), y.len() * QK);
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        let (d, min, q) = quantize_min_block(xb, 15.0, |v| trunc_i8(v).min(15) as u8);
        yb.d = f16::from_f32(d);
        yb.m = f16::from_f32(min);
        pack_nibbles(&q, &mut yb.qs);
    }
}

/// Dequantizes blocks into `y` (`y.len() == x.len() * 32`).
pub fn dequantize_row_q4_1(x: &[BlockQ4_1], y: &mut [f32]) {
    debug_assert_eq!(y.len(), x.len() * QK);
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        let m = b.m.to_f32();
        for j in 0..QK / 2 {
            yb[j] = (b.qs[j] & 0x0F) as f32 * d + m;
            yb[j + QK / 2] = (b.qs[j] >> 4) as f32 * d + m;
        }
    }
}

/// Integer dot of the unsigned nibbles with one Q8_1 block's quants.
#[inline(always)]
pub fn block_dot_q4_1_q8_1(w: &BlockQ4_1, a: &BlockQ8_1) -> i32 {
    let mut s = 0i32;
    for j in 0..QK / 2 {
        s += (w.qs[j] & 0x0F) as i32 * a.qs[j] as i32;
        s += (w.qs[j] >> 4) as i32 * a.qs[j + QK / 2] as i32;
    }
    s
}

/// Reference dot: `Σ_b d_w d_a · isum + m_w · s_a`, accumulated in f32.
pub fn vec_dot_q4_1_q8_1(w: &[BlockQ4_1], a: &[BlockQ8_1]) -> f32 {
    debug_assert_eq!(w.len(), a.len());
    let mut sum = 0.0f32;
    for (wb, ab) in w.iter().zip(a) {
        sum += block_dot_q4_1_q8_1(wb, ab) as f32 * (wb.d.to_f32() * ab.d.to_f32())
            + wb.m.to_f32() * ab.s.to_f32();
    }
    sum
}

/// Byte-level dequantizer (any alignment): `src` holds `dst.len() / 32` blocks.
pub(crate) fn dequantize_bytes(src: &[u8], dst: &mut [f32]) {
    super::dequantize_blocks(src, dst, QK, dequantize_row_q4_1);
}

/// Byte-level reference dot (any alignment): `n` elements.
pub(crate) fn vec_dot_bytes(n: usize, w: &[u8], a: &[u8]) -> f32 {
    super::vec_dot_blocks(n, w, a, QK, vec_dot_q4_1_q8_1)
}
