//! Q8_0: 32 signed bytes per block times an f16 scale. Used both as a
//! weight format and as the activation partner of Q4_0 / Q5_0 / Q8_0.

use super::{quantize_q8_block, QK};
use bytemuck::{Pod, Zeroable};
use half::f16;

/// ggml `block_q8_0`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; QK],
}
const _: () = assert!(core::mem::size_of::<BlockQ8_0>() == 34);

/// Quantizes like ggml's `quantize_row_q8_0_ref` (the quantizer
/// `llama-quantize` uses for Q8_0 weights): `d = amax / 127`,
/// `id = 1 / d`, `q = roundf(x * id)` (half away from zero).
pub fn quantize_row_q8_0(x: &[f32], y: &mut [BlockQ8_0]) {
    debug_assert_eq!(x.len(), y.len() * QK);
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        yb.d = f16::from_f32(quantize_q8_block(xb, &mut yb.qs, false));
    }
}

/// Quantizes activations the way ggml-cpu does on x86 before a matmul
/// (`quantize_row_q8_0` in the AVX2 path): `d = amax / 127` stored as f16,
/// but the multiplier is `127 / amax` and the rounding is to nearest even.
/// This differs from [`quantize_row_q8_0`] only on exact rounding ties and
/// in the last bit of the multiplier.
pub fn quantize_row_q8_0_act(x: &[f32], y: &mut [BlockQ8_0]) {
    debug_assert_eq!(x.len(), y.len() * QK);
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        yb.d = f16::from_f32(quantize_q8_block(xb, &mut yb.qs, true));
    }
}

/// Dequantizes blocks into `y` (`y.len() == x.len() * 32`).
pub fn dequantize_row_q8_0(x: &[BlockQ8_0], y: &mut [f32]) {
    debug_assert_eq!(y.len(), x.len() * QK);
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        for (v, &q) in yb.iter_mut().zip(&b.qs) {
            *v = q as f32 * d;
        }
    }
}

/// Integer dot of two Q8_0 blocks.
#[inline(always)]
pub fn block_dot_q8_0_q8_0(w: &BlockQ8_0, a: &BlockQ8_0) -> i32 {
    w.qs.iter()
        .zip(&a.qs)
        .map(|(&x, &y)| x as i32 * y as i32)
        .sum()
}

/// Reference dot (integer per block, times `d_w * d_a`, f32 accumulation).
pub fn vec_dot_q8_0_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
    debug_assert_eq!(w.len(), a.len());
    let mut sum = 0.0f32;
    for (wb, ab) in w.iter().zip(a) {
        sum += block_dot_q8_0_q8_0(wb, ab) as f32 * (wb.d.to_f32() * ab.d.to_f32());
    }
    sum
}

/// Byte-level dequantizer (any alignment): `src` holds `dst.len() / 32` blocks.
pub(crate) fn dequantize_bytes(src: &[u8], dst: &mut [f32]) {
    super::dequantize_blocks(src, dst, QK, dequantize_row_q8_0);
}

/// Byte-level reference dot (any alignment): `n` elements.
pub(crate) fn vec_dot_bytes(n: usize, w: &[u8], a: &[u8]) -> f32 {
    super::vec_dot_blocks(n, w, a, QK, vec_dot_q8_0_q8_0)
}

/// Activation quantizer on bytes: `out` holds `x.len() / 32` blocks.
pub(crate) fn quantize_act_bytes(x: &[f32], out: &mut [u8]) {
    let blocks: &mut [BlockQ8_0] = bytemuck::cast_slice_mut(out);
    quantize_row_q8_0_act(x, blocks);
}
