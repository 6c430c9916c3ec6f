//! Plain float formats: F32, F16 and BF16 rows, their conversions (as ggml
//! rounds them) and reference dots (products and sums in f32).

use half::{bf16, f16};

/// f32 → bf16 as ggml's `ggml_compute_fp32_to_bf16`: round to nearest even,
/// NaN kept NaN (quiet bit forced).
#[inline(always)]
pub fn f32_to_bf16(x: f32) -> bf16 {
    let u = x.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return bf16::from_bits(((u >> 16) | 64) as u16);
    }
    bf16::from_bits((u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16)
}

/// bf16 → f32 (exact).
#[inline(always)]
pub fn bf16_to_f32(x: bf16) -> f32 {
    f32::from_bits((x.to_bits() as u32) << 16)
}

/// f32 → f16, round to nearest even (as F16C `vcvtps2ph` and ggml).
pub fn quantize_row_f16(x: &[f32], y: &mut [f16]) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o = f16::from_f32(v);
    }
}

/// f32 → bf16 row.
pub fn quantize_row_bf16(x: &[f32], y: &mut [bf16]) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o = f32_to_bf16(v);
    }
}

/// Reference F16·F16 dot: products and sum in f32, element order.
pub fn vec_dot_f16(w: &[f16], a: &[f16]) -> f32 {
    let mut s = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        s += x.to_f32() * y.to_f32();
    }
    s
}

/// Reference BF16·BF16 dot: products and sum in f32, element order.
pub fn vec_dot_bf16(w: &[bf16], a: &[bf16]) -> f32 {
    let mut s = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        s += bf16_to_f32(*x) * bf16_to_f32(*y);
    }
    s
}

/// Reference F32 dot, element order.
pub fn vec_dot_f32(w: &[f32], a: &[f32]) -> f32 {
    let mut s = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        s += x * y;
    }
    s
}

#[inline(always)]
fn le16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

#[inline(always)]
fn le32(b: &[u8]) -> f32 {
    f32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

pub(crate) fn dequantize_f32_bytes(src: &[u8], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
        *d = le32(s);
    }
}

pub(crate) fn dequantize_f16_bytes(src: &[u8], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *d = f16::from_bits(le16(s)).to_f32();
    }
}

pub(crate) fn dequantize_bf16_bytes(src: &[u8], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *d = bf16_to_f32(bf16::from_bits(le16(s)));
    }
}

pub(crate) fn vec_dot_f32_bytes(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut s = 0.0f32;
    for (x, y) in w.chunks_exact(4).zip(a.chunks_exact(4)).take(n) {
        s += le32(x) * le32(y);
    }
    s
}

pub(crate) fn vec_dot_f16_bytes(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut s = 0.0f32;
    for (x, y) in w.chunks_exact(2).zip(a.chunks_exact(2)).take(n) {
        s += f16::from_bits(le16(x)).to_f32() * f16::from_bits(le16(y)).to_f32();
    }
    s
}

pub(crate) fn vec_dot_bf16_bytes(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut s = 0.0f32;
    for (x, y) in w.chunks_exact(2).zip(a.chunks_exact(2)).take(n) {
        s += bf16_to_f32(bf16::from_bits(le16(x))) * bf16_to_f32(bf16::from_bits(le16(y)));
    }
    s
}

pub(crate) fn quantize_act_f32_bytes(x: &[f32], out: &mut [u8]) {
    for (o, v) in out.chunks_exact_mut(4).zip(x) {
        o.copy_from_slice(&v.to_le_bytes());
    }
}

pub(crate) fn quantize_act_f16_bytes(x: &[f32], out: &mut [u8]) {
    for (o, v) in out.chunks_exact_mut(2).zip(x) {
        o.copy_from_slice(&f16::from_f32(*v).to_bits().to_le_bytes());
    }
}

pub(crate) fn quantize_act_bf16_bytes(x: &[f32], out: &mut [u8]) {
    for (o, v) in out.chunks_exact_mut(2).zip(x) {
        o.copy_from_slice(&f32_to_bf16(*v).to_bits().to_le_bytes());
    }
}
