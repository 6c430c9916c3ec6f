//! Q5_0: 32 weights per block, 5-bit signed (q - 16) times an f16 scale.

use super::{pack_nibbles, quantize_signed_block, BlockQ8_0, QK};
use bytemuck::{Pod, Zeroable};
use half::f16;

/// ggml `block_q5_0`: `d`, the 5th bits `qh` (little-endian u32, bit `j`
/// belongs to element `j`), and the low nibbles as in Q4_0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct BlockQ5_0 {
    pub d: f16,
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(core::mem::size_of::<BlockQ5_0>() == 22);

/// The 5-bit unsigned value (0..=31) of element `j` of a Q5_0/Q5_1 block.
#[inline(always)]
pub(crate) fn q5_value(qs: &[u8; 16], qh: u32, j: usize) -> u8 {
    if j < 16 {
        (qs[j] & 0x0F) | ((((qh >> j) & 1) as u8) << 4)
    } else {
        (qs[j - 16] >> 4) | ((((qh >> j) & 1) as u8) << 4)
    }
}

/// Quantizes like ggml's `quantize_row_q5_0_ref`.
pub fn quantize_row_q5_0(x: &[f32], y: &mut [BlockQ5_0]) {
    debug_assert_eq!(x.len(), y.len() * QK);
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        let (d, q) = quantize_signed_block(xb, 16);
        yb.d = f16::from_f32(d);
        yb.qh = pack_nibbles(&q, &mut yb.qs).to_le_bytes();
    }
}

/// Dequantizes blocks into `y` (`y.len() == x.len() * 32`).
pub fn dequantize_row_q5_0(x: &[BlockQ5_0], y: &mut [f32]) {
    debug_assert_eq!(y.len(), x.len() * QK);
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        let qh = u32::from_le_bytes(b.qh);
        for (j, v) in yb.iter_mut().enumerate() {
            *v = (q5_value(&b.qs, qh, j) as i32 - 16) as f32 * d;
        }
    }
}

/// Integer dot of one Q5_0 block with one Q8_0 block.
#[inline(always)]
pub fn block_dot_q5_0_q8_0(w: &BlockQ5_0, a: &BlockQ8_0) -> i32 {
    let qh = u32::from_le_bytes(w.qh);
    let mut s = 0i32;
    for j in 0..QK {
        s += (q5_value(&w.qs, qh, j) as i32 - 16) * a.qs[j] as i32;
    }
    s
}

/// Reference dot (integer per block, times `d_w * d_a`, f32 accumulation).
pub fn vec_dot_q5_0_q8_0(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
    debug_assert_eq!(w.len(), a.len());
    let mut sum = 0.0f32;
    for (wb, ab) in w.iter().zip(a) {
        sum += block_dot_q5_0_q8_0(wb, ab) as f32 * (wb.d.to_f32() * ab.d.to_f32());
    }
    sum
}

/// Byte-level dequantizer (any alignment): `src` holds `dst.len() / 32` blocks.
pub(crate) fn dequantize_bytes(src: &[u8], dst: &mut [f32]) {
    super::dequantize_blocks(src, dst, QK, dequantize_row_q5_0);
}

/// Byte-level reference dot (any alignment): `n` elements.
pub(crate) fn vec_dot_bytes(n: usize, w: &[u8], a: &[u8]) -> f32 {
    super::vec_dot_blocks(n, w, a, QK, vec_dot_q5_0_q8_0)
}
