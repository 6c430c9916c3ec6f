//! Q8_1: Q8_0 plus `s = d * Σq`, the activation partner of Q4_1 / Q5_1.

use super::{quantize_q8_block, QK};
use bytemuck::{Pod, Zeroable};
use half::f16;

/// ggml `block_q8_1`: scale `d`, `s = d * Σ qs` (both f16), 32 quants.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct BlockQ8_1 {
    pub d: f16,
    pub s: f16,
    pub qs: [i8; QK],
}
const _: () = assert!(core::mem::size_of::<BlockQ8_1>() == 36);

/// Quantizes like ggml's `quantize_row_q8_1_ref`: as Q8_0's reference
/// quantizer, plus `s = fp16(Σq · d)` with the unrounded f32 `d`.
pub fn quantize_row_q8_1(x: &[f32], y: &mut [BlockQ8_1]) {
    quantize_q8_1_with(x, y, false);
}

/// Quantizes activations as ggml-cpu does on x86 (multiplier `127 / amax`,
/// round to nearest even, `s = fp16(d · Σq)`); see
/// [`super::q8_0::quantize_row_q8_0_act`].
pub fn quantize_row_q8_1_act(x: &[f32], y: &mut [BlockQ8_1]) {
    quantize_q8_1_with(x, y, true);
}

/// Both Q8_1 quantizers: [`quantize_q8_block`] per block, then
/// `s = fp16(d · Σq)` with the unrounded f32 `d`.
fn quantize_q8_1_with(x: &[f32], y: &mut [BlockQ8_1], act: bool) {
    debug_assert_eq!(x.len(), y.len() * QK);
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        let d = quantize_q8_block(xb, &mut yb.qs, act);
        yb.d = f16::from_f32(d);
        let sum: i32 = yb.qs.iter().map(|&q| q as i32).sum();
        yb.s = f16::from_f32(d * sum as f32);
    }
}

/// Dequantizes blocks into `y` (`y.len() == x.len() * 32`).
pub fn dequantize_row_q8_1(x: &[BlockQ8_1], y: &mut [f32]) {
    debug_assert_eq!(y.len(), x.len() * QK);
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        for (v, &q) in yb.iter_mut().zip(&b.qs) {
            *v = q as f32 * d;
        }
    }
}

/// Byte-level dequantizer (any alignment): `src` holds `dst.len() / 32` blocks.
pub(crate) fn dequantize_bytes(src: &[u8], dst: &mut [f32]) {
    super::dequantize_blocks(src, dst, QK, dequantize_row_q8_1);
}

/// Activation quantizer on bytes: `out` holds `x.len() / 32` blocks.
pub(crate) fn quantize_act_bytes(x: &[f32], out: &mut [u8]) {
    let blocks: &mut [BlockQ8_1] = bytemuck::cast_slice_mut(out);
    quantize_row_q8_1_act(x, blocks);
}
