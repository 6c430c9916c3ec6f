//! Q4_0: 32 weights per block, 4-bit signed (q - 8) times an f16 scale.

use super::{pack_nibbles, quantize_signed_block, BlockQ8_0, QK};
use bytemuck::{Pod, Zeroable};
use half::f16;

/// ggml `block_q4_0`: `d`, then 16 bytes holding element `j` in the low
/// nibble of `qs[j]` and element `j + 16` in the high nibble.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct BlockQ4_0 {
    pub d: f16,
    pub qs: [u8; QK / 2],
}
const _: () = assert!(core::mem::size_of::<BlockQ4_0>() == 18);

/// Quantizes `x` (a multiple of 32 long) like ggml's `quantize_row_q4_0_ref`.
pub fn quantize_row_q4_0(x: &[f32], y: &mut [BlockQ4_0]) {
    debug_assert_eq!(x.len(), y.len() * QK);
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        let (d, q) = quantize_signed_block(xb, 8);
        yb.d = f16::from_f32(d);
        pack_nibbles(&q, &mut yb.qs);
    }
}

/// Dequantizes blocks into `y` (`y.len() == x.len() * 32`).
pub fn dequantize_row_q4_0(x: &[BlockQ4_0], y: &mut [f32]) {
    debug_assert_eq!(y.len(), x.len() * QK);
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        for j in 0..QK / 2 {
            yb[j] = ((b.qs[j] & 0x0F) as i32 - 8) as f32 * d;
            yb[j + QK / 2] = ((b.qs[j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

/// Integer dot of one Q4_0 block with one Q8_0 block.
#[inline(always)]
pub fn block_dot_q4_0_q8_0(w: &BlockQ4_0, a: &BlockQ8_0) -> i32 {
    let mut s = 0i32;
    for j in 0..QK / 2 {
        s += ((w.qs[j] & 0x0F) as i32 - 8) * a.qs[j] as i32;
        s += ((w.qs[j] >> 4) as i32 - 8) * a.qs[j + QK / 2] as i32;
    }
    s
}

/// Reference dot: per block the exact integer dot times `d_w * d_a`,
/// accumulated in f32 in block order.
pub fn vec_dot_q4_0_q8_0(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
    debug_assert_eq!(w.len(), a.len());
    let mut sum = 0.0f32;
    for (wb, ab) in w.iter().zip(a) {
        let d = wb.d.to_f32() * ab.d.to_f32();
        sum += block_dot_q4_0_q8_0(wb, ab) as f32 * d;
    }
    sum
}

/// Byte-level dequantizer (any alignment): `src` holds `dst.len() / 32` blocks.
pub(crate) fn dequantize_bytes(src: &[u8], dst: &mut [f32]) {
    super::dequantize_blocks(src, dst, QK, dequantize_row_q4_0);
}

/// Byte-level reference dot (any alignment): `n` elements.
pub(crate) fn vec_dot_bytes(n: usize, w: &[u8], a: &[u8]) -> f32 {
    super::vec_dot_blocks(n, w, a, QK, vec_dot_q4_0_q8_0)
}
