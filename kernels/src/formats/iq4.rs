//! ggml's non-linear 4-bit formats: IQ4_NL (blocks of 32, activations Q8_0)
//! and IQ4_XS (super-blocks of 256 with 6-bit sub-block scales, activations
//! Q8_K). Each 4-bit index selects a value from the fixed codebook
//! [`KVALUES_IQ4NL`].

use super::k_quants::{BlockQ8_K, QK_K};
use super::BlockQ8_0;
use bytemuck::{Pod, Zeroable};
use half::f16;

/// Elements per IQ4_NL block.
pub const QK4_NL: usize = 32;

/// ggml's IQ4 codebook (`kvalues_iq4nl`).
pub const KVALUES_IQ4NL: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// The codebook plus 128 as unsigned bytes (1..=241), for `u8 × i8` dot
/// instructions; the offset is removed as `−128·Σa`.
pub const KVALUES_IQ4NL_U8: [u8; 16] = {
    let mut t = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        t[i] = (KVALUES_IQ4NL[i] as i16 + 128) as u8;
        i += 1;
    }
    t
};

/// IQ4_NL: `x[j] = d * K[qs[j] & 15]`, `x[j + 16] = d * K[qs[j] >> 4]`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct BlockIQ4_NL {
    pub d: f16,
    pub qs: [u8; QK4_NL / 2],
}

/// IQ4_XS: 8 sub-blocks of 32 with 6-bit scales (offset 32): low 4 bits in
/// `scales_l` (two per byte, even sub-block in the low nibble), high 2 bits
/// at bits `2*ib` of `scales_h`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockIQ4_XS {
    pub d: f16,
    pub scales_h: u16,
    pub scales_l: [u8; QK_K / 64],
    pub qs: [u8; QK_K / 2],
}

const _: () = assert!(core::mem::size_of::<BlockIQ4_NL>() == 18);
const _: () = assert!(core::mem::size_of::<BlockIQ4_XS>() == 136);

/// The signed 6-bit scale (minus 32) of sub-block `ib` (0..8) of an IQ4_XS block.
#[inline(always)]
pub fn iq4_xs_scale(b: &BlockIQ4_XS, ib: usize) -> i32 {
    let low = (b.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF;
    let high = ((b.scales_h >> (2 * ib)) & 3) as u8;
    (low | (high << 4)) as i32 - 32
}

/// Dequantizes IQ4_NL blocks into `y` (`y.len() == 32 * x.len()`).
///
/// # Panics
/// If the lengths disagree.
pub fn dequantize_row_iq4_nl(x: &[BlockIQ4_NL], y: &mut [f32]) {
    assert_eq!(Some(y.len()), x.len().checked_mul(QK4_NL));
    for (b, out) in x.iter().zip(y.chunks_exact_mut(QK4_NL)) {
        let d = b.d.to_f32();
        for j in 0..16 {
            out[j] = d * KVALUES_IQ4NL[(b.qs[j] & 0xF) as usize] as f32;
            out[j + 16] = d * KVALUES_IQ4NL[(b.qs[j] >> 4) as usize] as f32;
        }
    }
}

/// Dequantizes IQ4_XS blocks into `y` (`y.len() == 256 * x.len()`).
///
/// # Panics
/// If the lengths disagree.
pub fn dequantize_row_iq4_xs(x: &[BlockIQ4_XS], y: &mut [f32]) {
    assert_eq!(Some(y.len()), x.len().checked_mul(QK_K));
    for (b, out) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for ib in 0..8 {
            let dl = d * iq4_xs_scale(b, ib) as f32;
            let qs = &b.qs[16 * ib..16 * ib + 16];
            let o = &mut out[32 * ib..32 * ib + 32];
            for j in 0..16 {
                o[j] = dl * KVALUES_IQ4NL[(qs[j] & 0xF) as usize] as f32;
                o[j + 16] = dl * KVALUES_IQ4NL[(qs[j] >> 4) as usize] as f32;
            }
        }
    }
}

/// Integer dot of one IQ4_NL block with one Q8_0 block.
#[inline(always)]
pub fn block_dot_iq4_nl_q8_0(x: &BlockIQ4_NL, y: &BlockQ8_0) -> i32 {
    let mut s = 0i32;
    for j in 0..16 {
        s += KVALUES_IQ4NL[(x.qs[j] & 0xF) as usize] as i32 * y.qs[j] as i32;
        s += KVALUES_IQ4NL[(x.qs[j] >> 4) as usize] as i32 * y.qs[j + 16] as i32;
    }
    s
}

/// Reference dot: per block the exact integer dot times `d_x * d_y`.
///
/// # Panics
/// If the block counts differ.
pub fn vec_dot_iq4_nl_q8_0(x: &[BlockIQ4_NL], y: &[BlockQ8_0]) -> f32 {
    assert_eq!(x.len(), y.len());
    let mut sumf = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        let d = bx.d.to_f32() * by.d.to_f32();
        sumf += d * block_dot_iq4_nl_q8_0(bx, by) as f32;
    }
    sumf
}

/// Integer part of one IQ4_XS × Q8_K block: Σ_ib (scale_ib − 32) · Σ K[q]·q8.
#[inline(always)]
pub fn block_dot_iq4_xs(x: &BlockIQ4_XS, y: &BlockQ8_K) -> i32 {
    let mut sumi = 0i32;
    for ib in 0..8 {
        let qs = &x.qs[16 * ib..16 * ib + 16];
        let q8 = &y.qs[32 * ib..32 * ib + 32];
        let mut s = 0i32;
        for j in 0..16 {
            s += KVALUES_IQ4NL[(qs[j] & 0xF) as usize] as i32 * q8[j] as i32;
            s += KVALUES_IQ4NL[(qs[j] >> 4) as usize] as i32 * q8[j + 16] as i32;
        }
        sumi += iq4_xs_scale(x, ib) * s;
    }
    sumi
}

/// Reference dot: Σ over blocks of `d·y.d·Σ_ib scale_ib·(K[q]·q8)`.
///
/// # Panics
/// If the block counts differ.
pub fn vec_dot_iq4_xs_q8_k(x: &[BlockIQ4_XS], y: &[BlockQ8_K]) -> f32 {
    assert_eq!(x.len(), y.len());
    let mut sumf = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        sumf += bx.d.to_f32() * by.d * block_dot_iq4_xs(bx, by) as f32;
    }
    sumf
}

/// Byte-level IQ4_NL dequantizer (any alignment).
pub(crate) fn dequantize_iq4_nl_bytes(src: &[u8], dst: &mut [f32]) {
    super::dequantize_blocks(src, dst, QK4_NL, dequantize_row_iq4_nl);
}

/// Byte-level IQ4_NL × Q8_0 reference dot of `n` elements (any alignment).
pub(crate) fn vec_dot_iq4_nl_bytes(n: usize, w: &[u8], a: &[u8]) -> f32 {
    super::vec_dot_blocks(n, w, a, QK4_NL, vec_dot_iq4_nl_q8_0)
}

/// Byte-level IQ4_XS dequantizer (any alignment).
pub(crate) fn dequantize_iq4_xs_bytes(src: &[u8], dst: &mut [f32]) {
    super::dequantize_blocks(src, dst, QK_K, dequantize_row_iq4_xs);
}

/// Byte-level IQ4_XS × Q8_K reference dot of `n` elements (any alignment).
pub(crate) fn vec_dot_iq4_xs_bytes(n: usize, w: &[u8], a: &[u8]) -> f32 {
    super::vec_dot_blocks(n, w, a, QK_K, vec_dot_iq4_xs_q8_k)
}

// ---------------------------------------------------------------------------
// Weight quantizers (this crate's own search; not bit-identical to ggml).
// ---------------------------------------------------------------------------

/// Index of the codebook value nearest to `v` (the lower one on ties).
#[inline]
fn nearest_code(v: f32) -> u8 {
    let mut best = 0u8;
    let mut best_err = f32::INFINITY;
    for (k, &c) in KVALUES_IQ4NL.iter().enumerate() {
        let e = (v - c as f32).abs();
        if e < best_err {
            best_err = e;
            best = k as u8;
        }
    }
    best
}

/// Best scale `s` for `x ≈ s · K[idx]` over 32 values: trial inverse scales
/// around "largest magnitude ↦ -127" and "↦ 113", each followed by the
/// closed-form least-squares scale for its codebook assignment.
fn fit_iq4(x: &[f32]) -> f32 {
    let (max, amax) = super::signed_absmax(x);
    if amax == 0.0 {
        return 0.0;
    }
    let mut best = 0.0f32;
    let mut best_score = -1.0f32;
    for target in [KVALUES_IQ4NL[0] as f32, KVALUES_IQ4NL[15] as f32] {
        for k in -7..=7 {
            let id = (target + k as f32) / max;
            let (mut sxk, mut skk) = (0.0f32, 0.0f32);
            for &v in x {
                let c = KVALUES_IQ4NL[nearest_code(id * v) as usize] as f32;
                sxk += v * c;
                skk += c * c;
            }
            if skk > 0.0 {
                let score = sxk * sxk / skk;
                if score > best_score {
                    best_score = score;
                    best = sxk / skk;
                }
            }
        }
    }
    best
}

/// Packs 32 values under scale `s` (codebook index per value) into 16 bytes:
/// value `j` in the low nibble of byte `j`, value `j+16` in the high nibble.
fn pack_iq4(x: &[f32], s: f32, qs: &mut [u8]) {
    let id = if s != 0.0 { 1.0 / s } else { 0.0 };
    for j in 0..16 {
        let lo = nearest_code(x[j] * id);
        let hi = nearest_code(x[j + 16] * id);
        qs[j] = lo | (hi << 4);
    }
}

/// Quantizes `x` (`x.len() == 32 * y.len()`) to IQ4_NL.
///
/// # Panics
/// If the lengths disagree.
pub fn quantize_row_iq4_nl(x: &[f32], y: &mut [BlockIQ4_NL]) {
    assert_eq!(Some(x.len()), y.len().checked_mul(QK4_NL));
    for (src, b) in x.chunks_exact(QK4_NL).zip(y.iter_mut()) {
        let d = f16::from_f32(fit_iq4(src));
        b.d = d;
        pack_iq4(src, d.to_f32(), &mut b.qs);
    }
}

/// Quantizes `x` (`x.len() == 256 * y.len()`) to IQ4_XS: a least-squares
/// scale per sub-block of 32, quantized to 6 bits (-32..=31) against one f16
/// super-scale, then the codebook indices under the stored scales.
///
/// # Panics
/// If the lengths disagree.
pub fn quantize_row_iq4_xs(x: &[f32], y: &mut [BlockIQ4_XS]) {
    assert_eq!(Some(x.len()), y.len().checked_mul(QK_K));
    for (src, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut sc = [0.0f32; 8];
        let mut smax = 0.0f32;
        for (j, s) in sc.iter_mut().enumerate() {
            *s = fit_iq4(&src[32 * j..32 * j + 32]);
            if s.abs() > smax.abs() {
                smax = *s;
            }
        }
        *b = BlockIQ4_XS::zeroed();
        if smax == 0.0 {
            // All zero: scale 0; indices irrelevant.
            b.scales_l = [0; QK_K / 64];
            b.scales_h = 0xAAAA;
            continue;
        }
        // The largest scale maps to -32 (the long end of the 6-bit range).
        let d = f16::from_f32(-smax / 32.0);
        let df = d.to_f32();
        for (j, &s) in sc.iter().enumerate() {
            let ls = if df != 0.0 {
                super::k_quants::nearest_int(s / df).clamp(-32, 31)
            } else {
                0
            };
            let u = (ls + 32) as u8;
            b.scales_l[j / 2] |= (u & 0xF) << (4 * (j % 2));
            b.scales_h |= ((u >> 4) as u16) << (2 * j);
            pack_iq4(
                &src[32 * j..32 * j + 32],
                df * ls as f32,
                &mut b.qs[16 * j..16 * j + 16],
            );
        }
        b.d = d;
    }
}
