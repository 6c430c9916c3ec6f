//! Q5_1: 32 weights per block, 5-bit unsigned `q * d + m`.

use super::q5_0::q5_value;
use super::{pack_nibbles, quantize_min_block, BlockQ8_1, QK};
use bytemuck::{Pod, Zeroable};
use half::f16;

/// ggml `block_q5_1`: `d`, `m`, 5th bits `qh`, low nibbles `qs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct BlockQ5_1 {
    pub d: f16,
    pub m: f16,
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(core::mem::size_of::<BlockQ5_1>() == 24);

/// Quantizes like ggml's `quantize_row_q5_1_ref` (no clamp to 31 there:
/// `(uint8_t)(x + 0.5f)`; the value cannot exceed 31 for finite input).
pub fn quantize_row_q5_1(x: &[f32], y: &mut [BlockQ5_1]) {
    debug_assert_eq!(x.len(), y.len() * QK);
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        let (d, min, q) = quantize_min_block(xb, 31.0, |v| v as u8);
        yb.d = f16::from_f32(d);
        yb.m = f16::from_f32(min);
        yb.qh = pack_nibbles(&q, &mut yb.qs).to_le_bytes();
    }
}

/// Dequantizes blocks into `y` (`y.len() == x.len() * 32`).
pub fn dequantize_row_q5_1(x: &[BlockQ5_1], y: &mut [f32]) {
    debug_assert_eq!(y.len(), x.len() * QK);
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        let m = b.m.to_f32();
        let qh = u32::from_le_bytes(b.qh);
        for (j, v) in yb.iter_mut().enumerate() {
            *v = q5_value(&b.qs, qh, j) as f32 * d + m;
        }
    }
}

/// Integer dot of the unsigned 5-bit values with one Q8_1 block's quants.
#[inline(always)]
pub fn block_dot_q5_1_q8_1(w: &BlockQ5_1, a: &BlockQ8_1) -> i32 {
    let qh = u32::from_le_bytes(w.qh);
    let mut s = 0i32;
    for j in 0..QK {
        s += q5_value(&w.qs, qh, j) as i32 * a.qs[j] as i32;
    }
    s
}

/// Reference dot: `Σ_b d_w d_a · isum + m_w · s_a`, accumulated in f32.
pub fn vec_dot_q5_1_q8_1(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
    debug_assert_eq!(w.len(), a.len());
    let mut sum = 0.0f32;
    for (wb, ab) in w.iter().zip(a) {
        sum += block_dot_q5_1_q8_1(wb, ab) as f32 * (wb.d.to_f32() * ab.d.to_f32())
            + wb.m.to_f32() * ab.s.to_f32();
    }
    sum
}

/// Byte-level dequantizer (any alignment): `src` holds `dst.len() / 32` blocks.
pub(crate) fn dequantize_bytes(src: &[u8], dst: &mut [f32]) {
    super::dequantize_blocks(src, dst, QK, dequantize_row_q5_1);
}

/// Byte-level reference dot (any alignment): `n` elements.
pub(crate) fn vec_dot_bytes(n: usize, w: &[u8], a: &[u8]) -> f32 {
    super::vec_dot_blocks(n, w, a, QK, vec_dot_q5_1_q8_1)
}
