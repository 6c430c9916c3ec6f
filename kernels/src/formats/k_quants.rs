//! ggml's K-quant formats: super-blocks of [`QK_K`] = 256 elements, split
//! into 16 or 8 sub-blocks, each with a small quantized scale (and, for the
//! "asymmetric" types, a quantized min).
//!
//! The block layouts are byte-for-byte ggml's (`#[repr(C)]`, no padding,
//! sizes asserted at compile time), so a slice of GGUF tensor bytes can be
//! reinterpreted as a slice of blocks with `bytemuck`.
//!
//! Everything here is the scalar *reference*: the dequantizers and the
//! [`quantize_row_q8_k`] activation quantizer reproduce ggml exactly, and the
//! `vec_dot_*` functions compute the same integer sums per sub-block that
//! ggml's reference does, scaled by the same products of block scales (only
//! the order of the final float additions may differ). The SIMD kernels are
//! tested against these functions.
//!
//! Weight quantizers ([`quantize_row_q4_k`], [`quantize_row_q5_k`],
//! [`quantize_row_q6_k`]) are this crate's own: a weighted least-squares
//! search for the sub-block scales (and mins), not bit-identical to
//! llama.cpp's output but of comparable error (see the crate README).

use bytemuck::{Pod, Zeroable};
use half::f16;

/// Elements per K-quant super-block.
pub const QK_K: usize = 256;
/// Bytes of packed 6-bit scales (and mins) in Q3_K / Q4_K / Q5_K.
pub const K_SCALE_SIZE: usize = 12;

/// Q2_K: 16 sub-blocks of 16, 2-bit values, 4-bit scale and min per sub-block.
///
/// `x = d * (scales[j] & 15) * q - dmin * (scales[j] >> 4)`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ2_K {
    /// Low nibble: scale, high nibble: min, per sub-block of 16.
    pub scales: [u8; QK_K / 16],
    /// 2-bit values; byte `l` of each 32-byte group holds 4 values (one per
    /// 2-bit lane) of 4 different sub-blocks.
    pub qs: [u8; QK_K / 4],
    pub d: f16,
    pub dmin: f16,
}

/// Q3_K: 16 sub-blocks of 16, 3-bit values (2 low bits in `qs`, high bit in
/// `hmask`), 6-bit signed scales (offset 32), one f16 super-scale.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ3_K {
    /// High bit of each value; when NOT set, the value is lowered by 4.
    pub hmask: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 4],
    /// 16 scales of 6 bits, packed.
    pub scales: [u8; K_SCALE_SIZE],
    pub d: f16,
}

/// Q4_K: 8 sub-blocks of 32, 4-bit values, 6-bit scales and mins.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_K {
    pub d: f16,
    pub dmin: f16,
    /// 8 scales and 8 mins of 6 bits, packed (see [`scale_min_k4`]).
    pub scales: [u8; K_SCALE_SIZE],
    pub qs: [u8; QK_K / 2],
}

/// Q5_K: as Q4_K plus one high bit per value in `qh`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5_K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; K_SCALE_SIZE],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}

/// Q6_K: 16 sub-blocks of 16, 6-bit values (offset 32), i8 scales.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ6_K {
    /// Low 4 bits.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits.
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: f16,
}

/// Q8_K: the activation partner of every K-quant. `x ≈ d * qs`, and
/// `bsums[j]` is the sum of `qs[16j..16j+16]`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8_K {
    pub d: f32,
    pub qs: [i8; QK_K],
    pub bsums: [i16; QK_K / 16],
}

const _: () = assert!(core::mem::size_of::<BlockQ2_K>() == 84);
const _: () = assert!(core::mem::size_of::<BlockQ3_K>() == 110);
const _: () = assert!(core::mem::size_of::<BlockQ4_K>() == 144);
const _: () = assert!(core::mem::size_of::<BlockQ5_K>() == 176);
const _: () = assert!(core::mem::size_of::<BlockQ6_K>() == 210);
const _: () = assert!(core::mem::size_of::<BlockQ8_K>() == 292);

/// ggml's `nearest_int`: round to nearest, ties to even, through the float
/// magic-number trick (valid for |x| <= 4194303, which every caller keeps).
#[inline(always)]
pub fn nearest_int(x: f32) -> i32 {
    let v = x + 12_582_912.0_f32;
    (v.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// Scale and min of sub-block `j` (0..8) from Q4_K / Q5_K's packed 12 bytes.
///
/// Sub-blocks 0..4 use the low 6 bits of bytes `j` (scale) and `j+4` (min);
/// sub-blocks 4..8 take their low nibbles from byte `j+4` and their top two
/// bits from the top bits of bytes `j-4` (scale) and `j` (min).
#[inline(always)]
pub fn scale_min_k4(j: usize, s: &[u8; K_SCALE_SIZE]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// All 8 scales and 8 mins of a Q4_K / Q5_K block.
#[inline(always)]
pub fn unpack_scales_mins_k4(s: &[u8; K_SCALE_SIZE]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for j in 0..8 {
        let (a, b) = scale_min_k4(j, s);
        sc[j] = a;
        mn[j] = b;
    }
    (sc, mn)
}

/// Inverse of [`unpack_scales_mins_k4`]; every input must be < 64.
pub fn pack_scales_mins_k4(sc: &[u8; 8], mn: &[u8; 8]) -> [u8; K_SCALE_SIZE] {
    let mut s = [0u8; K_SCALE_SIZE];
    for j in 0..8 {
        debug_assert!(sc[j] < 64 && mn[j] < 64);
        if j < 4 {
            s[j] |= sc[j] & 63;
            s[j + 4] |= mn[j] & 63;
        } else {
            s[j + 4] = (sc[j] & 0xF) | ((mn[j] & 0xF) << 4);
            s[j - 4] |= (sc[j] >> 4) << 6;
            s[j] |= (mn[j] >> 4) << 6;
        }
    }
    s
}

/// The 16 signed scales (already minus 32) of a Q3_K block.
///
/// Scale `j`: low nibble from byte `j` (j < 8) or the high nibble of byte
/// `j-8`; top two bits from bits `2*(j/4)` of byte `8 + j%4`.
#[inline(always)]
pub fn unpack_scales_q3_k(s: &[u8; K_SCALE_SIZE]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (j, o) in out.iter_mut().enumerate() {
        let low = if j < 8 { s[j] & 0xF } else { s[j - 8] >> 4 };
        let high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        *o = (low | (high << 4)) as i8 - 32;
    }
    out
}

/// Inverse of [`unpack_scales_q3_k`]: `sc[j] + 32` must be in 0..64.
pub fn pack_scales_q3_k(sc: &[i8; 16]) -> [u8; K_SCALE_SIZE] {
    let mut s = [0u8; K_SCALE_SIZE];
    for (j, &v) in sc.iter().enumerate() {
        let u = (v as i16 + 32) as u8;
        debug_assert!(u < 64);
        if j < 8 {
            s[j] |= u & 0xF;
        } else {
            s[j - 8] |= (u & 0xF) << 4;
        }
        s[8 + j % 4] |= ((u >> 4) & 3) << (2 * (j / 4));
    }
    s
}

fn check_len(blocks: usize, per_block: usize, elems: usize) {
    assert_eq!(
        blocks.checked_mul(per_block),
        Some(elems),
        "block count and element count disagree"
    );
}

// ---------------------------------------------------------------------------
// Dequantization (exactly ggml's arithmetic: one f32 product per factor).
// ---------------------------------------------------------------------------

/// Dequantizes Q2_K blocks into `y` (`y.len() == 256 * x.len()`).
///
/// # Panics
/// If the lengths disagree.
pub fn dequantize_row_q2_k(x: &[BlockQ2_K], y: &mut [f32]) {
    check_len(x.len(), QK_K, y.len());
    for (b, out) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        let min = b.dmin.to_f32();
        // Output position 128*n + 32*j + 16*h + l comes from byte 32*n + 16*h + l,
        // bit lane j, sub-block 8*n + 2*j + h.
        for n in 0..2 {
            for j in 0..4 {
                for h in 0..2 {
                    let sc = b.scales[8 * n + 2 * j + h];
                    let dl = d * (sc & 0xF) as f32;
                    let ml = min * (sc >> 4) as f32;
                    for l in 0..16 {
                        let q = (b.qs[32 * n + 16 * h + l] >> (2 * j)) & 3;
                        out[128 * n + 32 * j + 16 * h + l] = dl * q as f32 - ml;
                    }
                }
            }
        }
    }
}

/// Dequantizes Q3_K blocks into `y` (`y.len() == 256 * x.len()`).
///
/// # Panics
/// If the lengths disagree.
pub fn dequantize_row_q3_k(x: &[BlockQ3_K], y: &mut [f32]) {
    check_len(x.len(), QK_K, y.len());
    for (b, out) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d_all = b.d.to_f32();
        let sc = unpack_scales_q3_k(&b.scales);
        for n in 0..2 {
            for j in 0..4 {
                // The hmask bit for this (n, j) lane group.
                let m = 1u8 << (4 * n + j);
                for h in 0..2 {
                    let dl = d_all * sc[8 * n + 2 * j + h] as f32;
                    for l in 0..16 {
                        let i = 16 * h + l;
                        let low = ((b.qs[32 * n + i] >> (2 * j)) & 3) as i8;
                        let q = low - if b.hmask[i] & m != 0 { 0 } else { 4 };
                        out[128 * n + 32 * j + i] = dl * q as f32;
                    }
                }
            }
        }
    }
}

/// Q4_K / Q5_K dequantization from a block's `d`, `dmin`, scales, nibbles
/// and fifth bit (`high(l, j)`: 16 if element `l` of sub-block `j` has it).
fn dequantize_k4(
    (d, min): (f32, f32),
    scales: &[u8; K_SCALE_SIZE],
    qs: &[u8; QK_K / 2],
    high: impl Fn(usize, usize) -> u8,
    out: &mut [f32],
) {
    for p in 0..4 {
        let q = &qs[32 * p..32 * p + 32];
        let (s1, m1) = scale_min_k4(2 * p, scales);
        let (s2, m2) = scale_min_k4(2 * p + 1, scales);
        let (d1, m1) = (d * s1 as f32, min * m1 as f32);
        let (d2, m2) = (d * s2 as f32, min * m2 as f32);
        let o = &mut out[64 * p..64 * p + 64];
        for l in 0..32 {
            o[l] = d1 * ((q[l] & 0xF) + high(l, 2 * p)) as f32 - m1;
            o[32 + l] = d2 * ((q[l] >> 4) + high(l, 2 * p + 1)) as f32 - m2;
        }
    }
}

/// Dequantizes Q4_K blocks into `y` (`y.len() == 256 * x.len()`).
///
/// # Panics
/// If the lengths disagree.
pub fn dequantize_row_q4_k(x: &[BlockQ4_K], y: &mut [f32]) {
    check_len(x.len(), QK_K, y.len());
    for (b, out) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let dm = (b.d.to_f32(), b.dmin.to_f32());
        dequantize_k4(dm, &b.scales, &b.qs, |_, _| 0, out);
    }
}

/// Dequantizes Q5_K blocks into `y` (`y.len() == 256 * x.len()`).
///
/// # Panics
/// If the lengths disagree.
pub fn dequantize_row_q5_k(x: &[BlockQ5_K], y: &mut [f32]) {
    check_len(x.len(), QK_K, y.len());
    for (b, out) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let dm = (b.d.to_f32(), b.dmin.to_f32());
        dequantize_k4(dm, &b.scales, &b.qs, |l, j| ((b.qh[l] >> j) & 1) << 4, out);
    }
}

/// The 6-bit value (minus 32) at position `i` (0..256) of a Q6_K block.
#[inline(always)]
fn q6_k_value(b: &BlockQ6_K, i: usize) -> i8 {
    let n = i / 128; // half
    let r = i % 128;
    let quarter = r / 32; // 0..4
    let l = r % 32;
    let ql = b.ql[64 * n + 32 * (quarter & 1) + l];
    let low = if quarter < 2 { ql & 0xF } else { ql >> 4 };
    let high = (b.qh[32 * n + l] >> (2 * quarter)) & 3;
    (low | (high << 4)) as i8 - 32
}

/// Dequantizes Q6_K blocks into `y` (`y.len() == 256 * x.len()`).
///
/// # Panics
/// If the lengths disagree.
pub fn dequantize_row_q6_k(x: &[BlockQ6_K], y: &mut [f32]) {
    check_len(x.len(), QK_K, y.len());
    for (b, out) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (i, o) in out.iter_mut().enumerate() {
            // ggml: d * sc (as float product) * q.
            *o = d * b.scales[i / 16] as f32 * q6_k_value(b, i) as f32;
        }
    }
}

/// Dequantizes Q8_K blocks into `y` (`y.len() == 256 * x.len()`).
///
/// # Panics
/// If the lengths disagree.
pub fn dequantize_row_q8_k(x: &[BlockQ8_K], y: &mut [f32]) {
    check_len(x.len(), QK_K, y.len());
    for (b, out) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        for (o, &q) in out.iter_mut().zip(b.qs.iter()) {
            *o = b.d * q as f32;
        }
    }
}

// ---------------------------------------------------------------------------
// Activation quantizer.
// ---------------------------------------------------------------------------

/// Quantizes `x` (`x.len() == 256 * y.len()`) to Q8_K exactly as ggml's
/// reference does: per block, `max` = the element of largest magnitude (the
/// first one on ties), `iscale = -127 / max`, `q = min(127, nearest_int(iscale*x))`,
/// `d = 1 / iscale`, `bsums[j]` = sum of `q[16j..16j+16]`. An all-zero block
/// gets `d = 0` and zero quants.
///
/// # Panics
/// If the lengths disagree.
pub fn quantize_row_q8_k(x: &[f32], y: &mut [BlockQ8_K]) {
    check_len(y.len(), QK_K, x.len());
    for (src, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut max = 0.0f32;
        let mut amax = 0.0f32;
        for &v in src {
            let a = v.abs();
            if a > amax {
                amax = a;
                max = v;
            }
        }
        if amax == 0.0 {
            b.d = 0.0;
            b.qs = [0; QK_K];
            b.bsums = [0; QK_K / 16];
            continue;
        }
        let iscale = -127.0f32 / max;
        for (q, &v) in b.qs.iter_mut().zip(src) {
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        for (s, qs) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
            *s = qs.iter().map(|&q| q as i16).sum();
        }
        b.d = 1.0 / iscale;
    }
}

// ---------------------------------------------------------------------------
// Reference dot products against Q8_K activations.
// ---------------------------------------------------------------------------

fn check_dot(nx: usize, ny: usize) {
    assert_eq!(nx, ny, "weight and activation block counts differ");
}

/// Integer part of one Q2_K × Q8_K block: (Σ_j scale_j · Σ q2·q8, Σ_j min_j · bsum_j).
#[inline(always)]
pub fn block_dot_q2_k(x: &BlockQ2_K, y: &BlockQ8_K) -> (i32, i32) {
    let mut sumi = 0i32;
    for n in 0..2 {
        for j in 0..4 {
            for h in 0..2 {
                let sb = 8 * n + 2 * j + h;
                let mut s = 0i32;
                for l in 0..16 {
                    let q = ((x.qs[32 * n + 16 * h + l] >> (2 * j)) & 3) as i32;
                    s += q * y.qs[128 * n + 32 * j + 16 * h + l] as i32;
                }
                sumi += (x.scales[sb] & 0xF) as i32 * s;
            }
        }
    }
    let summs: i32 = (0..16)
        .map(|j| y.bsums[j] as i32 * (x.scales[j] >> 4) as i32)
        .sum();
    (sumi, summs)
}

/// Σ over blocks of `d·y.d·Σ scale·(q·q8) − dmin·y.d·Σ min·bsum`.
///
/// # Panics
/// If the block counts differ.
pub fn vec_dot_q2_k_q8_k(x: &[BlockQ2_K], y: &[BlockQ8_K]) -> f32 {
    vec_dot_k(x, y, |b| (b.d, Some(b.dmin)), block_dot_q2_k)
}

/// `Σ_blocks d_w·d_a·sumi − dmin_w·d_a·summs` (without a min: `d_w·d_a·sumi`),
/// the float step every K-quant reference shares, from the block's
/// `(d, dmin)` and its integer parts `(sumi, summs)`.
fn vec_dot_k<B>(
    x: &[B],
    y: &[BlockQ8_K],
    d: impl Fn(&B) -> (f16, Option<f16>),
    block: impl Fn(&B, &BlockQ8_K) -> (i32, i32),
) -> f32 {
    check_dot(x.len(), y.len());
    let mut sumf = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        let (sumi, summs) = block(bx, by);
        let (dw, dmin) = d(bx);
        let dall = dw.to_f32() * by.d;
        sumf += match dmin {
            Some(m) => dall * sumi as f32 - m.to_f32() * by.d * summs as f32,
            None => dall * sumi as f32,
        };
    }
    sumf
}

/// Integer part of one Q3_K × Q8_K block: Σ_j (scale_j − 32) · Σ q3·q8.
#[inline(always)]
pub fn block_dot_q3_k(x: &BlockQ3_K, y: &BlockQ8_K) -> i32 {
    let sc = unpack_scales_q3_k(&x.scales);
    let mut sumi = 0i32;
    for n in 0..2 {
        for j in 0..4 {
            let m = 1u8 << (4 * n + j);
            for h in 0..2 {
                let mut s = 0i32;
                for l in 0..16 {
                    let i = 16 * h + l;
                    let low = ((x.qs[32 * n + i] >> (2 * j)) & 3) as i32;
                    let q = low - if x.hmask[i] & m != 0 { 0 } else { 4 };
                    s += q * y.qs[128 * n + 32 * j + i] as i32;
                }
                sumi += sc[8 * n + 2 * j + h] as i32 * s;
            }
        }
    }
    sumi
}

/// Σ over blocks of `d·y.d·Σ_j scale_j·(q·q8)`.
///
/// # Panics
/// If the block counts differ.
pub fn vec_dot_q3_k_q8_k(x: &[BlockQ3_K], y: &[BlockQ8_K]) -> f32 {
    vec_dot_k(x, y, |b| (b.d, None), |b, y| (block_dot_q3_k(b, y), 0))
}

/// Integer parts of one Q4_K / Q5_K block against Q8_K: (Σ scale·(q·q8),
/// Σ min·bsum), with `high(l, j)` the fifth bit (16 or 0) of element `l` of
/// sub-block `j`.
fn block_dot_k4(
    scales: &[u8; K_SCALE_SIZE],
    qs: &[u8; QK_K / 2],
    high: impl Fn(usize, usize) -> i32,
    y: &BlockQ8_K,
) -> (i32, i32) {
    let (sc, mn) = unpack_scales_mins_k4(scales);
    let mut sumi = 0i32;
    for (j, &s) in sc.iter().enumerate() {
        let q = &qs[32 * (j / 2)..32 * (j / 2) + 32];
        let shift = 4 * (j % 2);
        let q8 = &y.qs[32 * j..32 * j + 32];
        let mut dot = 0i32;
        for l in 0..32 {
            dot += (((q[l] >> shift) & 0xF) as i32 + high(l, j)) * q8[l] as i32;
        }
        sumi += s as i32 * dot;
    }
    let summs: i32 = (0..16).map(|j| y.bsums[j] as i32 * mn[j / 2] as i32).sum();
    (sumi, summs)
}

/// Integer parts of one Q4_K × Q8_K block: (Σ scale·(q·q8), Σ min·bsum).
#[inline(always)]
pub fn block_dot_q4_k(x: &BlockQ4_K, y: &BlockQ8_K) -> (i32, i32) {
    block_dot_k4(&x.scales, &x.qs, |_, _| 0, y)
}

/// Σ over blocks of `d·y.d·Σ scale·(q·q8) − dmin·y.d·Σ min·bsum`.
///
/// # Panics
/// If the block counts differ.
pub fn vec_dot_q4_k_q8_k(x: &[BlockQ4_K], y: &[BlockQ8_K]) -> f32 {
    vec_dot_k(x, y, |b| (b.d, Some(b.dmin)), block_dot_q4_k)
}

/// Integer parts of one Q5_K × Q8_K block: (Σ scale·(q·q8), Σ min·bsum).
#[inline(always)]
pub fn block_dot_q5_k(x: &BlockQ5_K, y: &BlockQ8_K) -> (i32, i32) {
    block_dot_k4(&x.scales, &x.qs, |l, j| ((x.qh[l] >> j) & 1) as i32 * 16, y)
}

/// Σ over blocks of `d·y.d·Σ scale·(q·q8) − dmin·y.d·Σ min·bsum`.
///
/// # Panics
/// If the block counts differ.
pub fn vec_dot_q5_k_q8_k(x: &[BlockQ5_K], y: &[BlockQ8_K]) -> f32 {
    vec_dot_k(x, y, |b| (b.d, Some(b.dmin)), block_dot_q5_k)
}

/// Integer part of one Q6_K × Q8_K block: Σ_j scale_j · Σ (q6−32)·q8.
#[inline(always)]
pub fn block_dot_q6_k(x: &BlockQ6_K, y: &BlockQ8_K) -> i32 {
    let mut sumi = 0i32;
    for j in 0..16 {
        let mut s = 0i32;
        for l in 0..16 {
            let i = 16 * j + l;
            s += q6_k_value(x, i) as i32 * y.qs[i] as i32;
        }
        sumi += x.scales[j] as i32 * s;
    }
    sumi
}

/// Σ over blocks of `d·y.d·Σ_j scale_j·((q−32)·q8)`.
///
/// # Panics
/// If the block counts differ.
pub fn vec_dot_q6_k_q8_k(x: &[BlockQ6_K], y: &[BlockQ8_K]) -> f32 {
    vec_dot_k(x, y, |b| (b.d, None), |b, y| (block_dot_q6_k(b, y), 0))
}

// ---------------------------------------------------------------------------
// Weight quantizers (this crate's own search; not bit-identical to ggml).
// ---------------------------------------------------------------------------

/// Weighted least-squares fit of `x ≈ s·q − m` with integer `q ∈ 0..=nmax`,
/// `s ≥ 0`, `m ≥ 0` (ggml stores mins as positive numbers subtracted).
///
/// Tries `2·steps+1` trial inverse scales around `nmax / (max − min)`; for
/// each trial rounding of `q` the optimal `(s, m)` has a closed form, and the
/// pair with the smallest weighted error wins. Returns `(s, m)`.
fn fit_scale_min(x: &[f32], w: &[f32], nmax: i32, steps: i32) -> (f32, f32) {
    let mut min = x.iter().copied().fold(f32::INFINITY, f32::min);
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if min > 0.0 {
        min = 0.0;
    }
    if max <= min {
        return (0.0, -min);
    }
    let error = |s: f32, b: f32| -> f32 {
        let mut e = 0.0f32;
        for (&v, &wi) in x.iter().zip(w) {
            let q = if s > 0.0 {
                nearest_int((v - b) / s).clamp(0, nmax)
            } else {
                0
            };
            let diff = s * q as f32 + b - v;
            e += wi * diff * diff;
        }
        e
    };
    // Baseline: the plain min/max mapping.
    let mut best_s = (max - min) / nmax as f32;
    let mut best_b = min;
    let mut best_err = error(best_s, best_b);
    let (sw, sx) = x
        .iter()
        .zip(w)
        .fold((0.0f32, 0.0f32), |(a, b), (&v, &wi)| (a + wi, b + wi * v));
    for k in -steps..=steps {
        let iscale = (nmax as f32 + 0.1 * k as f32) / (max - min);
        let (mut sq, mut sqq, mut sqx) = (0.0f32, 0.0f32, 0.0f32);
        for (&v, &wi) in x.iter().zip(w) {
            let q = nearest_int(iscale * (v - min)).clamp(0, nmax) as f32;
            sq += wi * q;
            sqq += wi * q * q;
            sqx += wi * q * v;
        }
        let det = sw * sqq - sq * sq;
        if det <= 0.0 {
            continue;
        }
        let mut s = (sw * sqx - sq * sx) / det;
        let mut b = (sqq * sx - sq * sqx) / det;
        if b > 0.0 {
            // The offset may only lower values: refit the scale alone.
            b = 0.0;
            s = sqx / sqq;
        }
        if s <= 0.0 {
            continue;
        }
        let e = error(s, b);
        if e < best_err {
            best_err = e;
            best_s = s;
            best_b = b;
        }
    }
    (best_s, -best_b)
}

/// Weighted least-squares fit of `x ≈ s·q` with integer `q ∈ -nmin..=nmax`
/// (symmetric types). Returns `s` (possibly negative).
fn fit_scale_sym(x: &[f32], w: &[f32], nmin: i32, nmax: i32, steps: i32) -> f32 {
    let (max, amax) = super::signed_absmax(x);
    if amax == 0.0 {
        return 0.0;
    }
    let mut best = 0.0f32;
    let mut best_score = -1.0f32;
    // Map the extreme value to the long (negative) end and to the short end.
    for (target, sign) in [(nmin as f32, -1.0f32), (nmax as f32, 1.0f32)] {
        for k in -steps..=steps {
            let iscale = sign * (target + 0.1 * k as f32) / max;
            let (mut sqx, mut sqq) = (0.0f32, 0.0f32);
            for (&v, &wi) in x.iter().zip(w) {
                let q = nearest_int(iscale * v).clamp(-nmin, nmax) as f32;
                sqx += wi * q * v;
                sqq += wi * q * q;
            }
            if sqq > 0.0 {
                // Error = Σwx² − sqx²/sqq; maximize sqx²/sqq.
                let score = sqx * sqx / sqq;
                if score > best_score {
                    best_score = score;
                    best = sqx / sqq;
                }
            }
        }
    }
    best
}

/// Quantizes a scale-like non-negative value set to `bits`-bit integers with
/// one f16 factor. Returns (factor as stored, integers).
fn quantize_super_unsigned<const N: usize>(v: &[f32; N], nmax: i32) -> (f16, [u8; N]) {
    let vmax = v.iter().copied().fold(0.0f32, f32::max);
    let mut out = [0u8; N];
    if vmax <= 0.0 {
        return (f16::ZERO, out);
    }
    let d = f16::from_f32(vmax / nmax as f32);
    let df = d.to_f32();
    if df <= 0.0 {
        return (f16::ZERO, out);
    }
    for (o, &s) in out.iter_mut().zip(v) {
        *o = nearest_int(s / df).clamp(0, nmax) as u8;
    }
    (d, out)
}

/// Sub-block fits for an asymmetric K-quant, then the 6-bit super-quantized
/// scales and mins, then the final integer values under those stored scales.
fn quantize_asym_block(x: &[f32], nmax: i32, q: &mut [u8; QK_K]) -> (f16, f16, [u8; 8], [u8; 8]) {
    let w = [1.0f32; 32];
    let mut sc = [0.0f32; 8];
    let mut mn = [0.0f32; 8];
    for j in 0..8 {
        let (s, m) = fit_scale_min(&x[32 * j..32 * j + 32], &w, nmax, 15);
        sc[j] = s;
        mn[j] = m;
    }
    let (d, ls) = quantize_super_unsigned(&sc, 63);
    let (dmin, lm) = quantize_super_unsigned(&mn, 63);
    let (df, dminf) = (d.to_f32(), dmin.to_f32());
    for j in 0..8 {
        let s = df * ls[j] as f32;
        let m = dminf * lm[j] as f32;
        for l in 0..32 {
            let i = 32 * j + l;
            q[i] = if s > 0.0 {
                nearest_int((x[i] + m) / s).clamp(0, nmax) as u8
            } else {
                0
            };
        }
    }
    (d, dmin, ls, lm)
}

/// Quantizes `x` (`x.len() == 256 * y.len()`) to Q4_K.
///
/// # Panics
/// If the lengths disagree.
pub fn quantize_row_q4_k(x: &[f32], y: &mut [BlockQ4_K]) {
    check_len(y.len(), QK_K, x.len());
    for (src, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut q = [0u8; QK_K];
        let (d, dmin, ls, lm) = quantize_asym_block(src, 15, &mut q);
        b.d = d;
        b.dmin = dmin;
        b.scales = pack_scales_mins_k4(&ls, &lm);
        for p in 0..4 {
            for l in 0..32 {
                b.qs[32 * p + l] = q[64 * p + l] | (q[64 * p + 32 + l] << 4);
            }
        }
    }
}

/// Quantizes `x` (`x.len() == 256 * y.len()`) to Q5_K.
///
/// # Panics
/// If the lengths disagree.
pub fn quantize_row_q5_k(x: &[f32], y: &mut [BlockQ5_K]) {
    check_len(y.len(), QK_K, x.len());
    for (src, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut q = [0u8; QK_K];
        let (d, dmin, ls, lm) = quantize_asym_block(src, 31, &mut q);
        b.d = d;
        b.dmin = dmin;
        b.scales = pack_scales_mins_k4(&ls, &lm);
        b.qh = [0; QK_K / 8];
        for p in 0..4 {
            for l in 0..32 {
                let (a, c) = (q[64 * p + l], q[64 * p + 32 + l]);
                b.qs[32 * p + l] = (a & 0xF) | ((c & 0xF) << 4);
                b.qh[l] |= ((a >> 4) << (2 * p)) | ((c >> 4) << (2 * p + 1));
            }
        }
    }
}

/// Quantizes `x` (`x.len() == 256 * y.len()`) to Q6_K.
///
/// # Panics
/// If the lengths disagree.
pub fn quantize_row_q6_k(x: &[f32], y: &mut [BlockQ6_K]) {
    check_len(y.len(), QK_K, x.len());
    let w = [1.0f32; 16];
    for (src, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut sc = [0.0f32; 16];
        for (j, s) in sc.iter_mut().enumerate() {
            *s = fit_scale_sym(&src[16 * j..16 * j + 16], &w, 32, 31, 9);
        }
        // Super-scale: the largest-magnitude sub-scale maps to -128.
        let mut smax = 0.0f32;
        for &s in &sc {
            if s.abs() > smax.abs() {
                smax = s;
            }
        }
        *b = BlockQ6_K::zeroed();
        if smax == 0.0 {
            // All zero: scales 0, values 32 (i.e. 0 after the offset).
            fill_q6_k(b, &[0; QK_K]);
            continue;
        }
        let iscale = -128.0f32 / smax;
        let d = f16::from_f32(1.0 / iscale);
        let df = d.to_f32();
        let mut q = [0i8; QK_K];
        for (j, &sj) in sc.iter().enumerate() {
            let ls = nearest_int(iscale * sj).clamp(-128, 127) as i8;
            b.scales[j] = ls;
            let s = df * ls as f32;
            for l in 0..16 {
                let i = 16 * j + l;
                q[i] = if s != 0.0 {
                    nearest_int(src[i] / s).clamp(-32, 31) as i8
                } else {
                    0
                };
            }
        }
        b.d = d;
        fill_q6_k(b, &q);
    }
}

/// Packs 256 values in -32..=31 into a Q6_K block's `ql` / `qh`.
fn fill_q6_k(b: &mut BlockQ6_K, q: &[i8; QK_K]) {
    b.ql = [0; QK_K / 2];
    b.qh = [0; QK_K / 4];
    for (i, &v) in q.iter().enumerate() {
        let u = (v as i16 + 32) as u8;
        let n = i / 128;
        let r = i % 128;
        let quarter = r / 32;
        let l = r % 32;
        let li = 64 * n + 32 * (quarter & 1) + l;
        if quarter < 2 {
            b.ql[li] |= u & 0xF;
        } else {
            b.ql[li] |= (u & 0xF) << 4;
        }
        b.qh[32 * n + l] |= (u >> 4) << (2 * quarter);
    }
}

/// Element `i` (0..256) of a Q2_K / Q3_K block lives in byte
/// `32·(i/128) + i%32` of `qs`, bits `2·((i%128)/32)`.
#[inline]
fn low2_position(i: usize) -> (usize, usize) {
    let n = i / 128;
    let j = (i % 128) / 32;
    (32 * n + i % 32, 2 * j)
}

/// Quantizes `x` (`x.len() == 256 * y.len()`) to Q2_K: per sub-block of 16
/// a least-squares scale and min for 2-bit values, both quantized to 4 bits
/// against f16 super-scales, then the values re-rounded under them.
///
/// # Panics
/// If the lengths disagree.
pub fn quantize_row_q2_k(x: &[f32], y: &mut [BlockQ2_K]) {
    check_len(y.len(), QK_K, x.len());
    let w = [1.0f32; 16];
    for (src, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut sc = [0.0f32; 16];
        let mut mn = [0.0f32; 16];
        for j in 0..16 {
            let (s, m) = fit_scale_min(&src[16 * j..16 * j + 16], &w, 3, 15);
            sc[j] = s;
            mn[j] = m;
        }
        let (d, ls) = quantize_super_unsigned(&sc, 15);
        let (dmin, lm) = quantize_super_unsigned(&mn, 15);
        let (df, dminf) = (d.to_f32(), dmin.to_f32());
        *b = BlockQ2_K::zeroed();
        for j in 0..16 {
            b.scales[j] = ls[j] | (lm[j] << 4);
            let s = df * ls[j] as f32;
            let m = dminf * lm[j] as f32;
            for l in 0..16 {
                let i = 16 * j + l;
                let q = if s > 0.0 {
                    nearest_int((src[i] + m) / s).clamp(0, 3) as u8
                } else {
                    0
                };
                let (byte, shift) = low2_position(i);
                b.qs[byte] |= q << shift;
            }
        }
        b.d = d;
        b.dmin = dmin;
    }
}

/// Quantizes `x` (`x.len() == 256 * y.len()`) to Q3_K: per sub-block of 16
/// a least-squares scale for values in -4..=3, scales quantized to 6 bits
/// (-32..=31) against one f16 super-scale, then the values re-rounded.
///
/// # Panics
/// If the lengths disagree.
pub fn quantize_row_q3_k(x: &[f32], y: &mut [BlockQ3_K]) {
    check_len(y.len(), QK_K, x.len());
    let w = [1.0f32; 16];
    for (src, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut sc = [0.0f32; 16];
        let mut smax = 0.0f32;
        for (j, s) in sc.iter_mut().enumerate() {
            *s = fit_scale_sym(&src[16 * j..16 * j + 16], &w, 4, 3, 9);
            if s.abs() > smax.abs() {
                smax = *s;
            }
        }
        *b = BlockQ3_K::zeroed();
        // The largest-magnitude scale maps to -32.
        let d = if smax != 0.0 {
            f16::from_f32(-smax / 32.0)
        } else {
            f16::ZERO
        };
        let df = d.to_f32();
        let mut ls = [0i8; 16];
        for (l, &s) in ls.iter_mut().zip(&sc) {
            *l = if df != 0.0 {
                nearest_int(s / df).clamp(-32, 31) as i8
            } else {
                0
            };
        }
        b.scales = pack_scales_q3_k(&ls);
        for i in 0..QK_K {
            let s = df * ls[i / 16] as f32;
            let q = if s != 0.0 {
                nearest_int(src[i] / s).clamp(-4, 3)
            } else {
                0
            };
            let u = (q + 4) as u8;
            let (byte, shift) = low2_position(i);
            b.qs[byte] |= (u & 3) << shift;
            if u & 4 != 0 {
                b.hmask[i % 32] |= 1 << (4 * (i / 128) + (i % 128) / 32);
            }
        }
        b.d = d;
    }
}

// ---------------------------------------------------------------------------
// Byte-level entry points for the kernel table (any alignment).
// ---------------------------------------------------------------------------

macro_rules! byte_fns {
    ($blk:ty, $deq:ident, $dot:ident, $deq_bytes:ident, $dot_bytes:ident) => {
        /// Byte-level dequantizer (any alignment): `src` holds `dst.len() / 256` blocks.
        pub(crate) fn $deq_bytes(src: &[u8], dst: &mut [f32]) {
            super::dequantize_blocks(src, dst, QK_K, $deq);
        }

        /// Byte-level reference dot (any alignment) of `n` elements against
        /// Q8_K activations; same arithmetic as the slice version.
        pub(crate) fn $dot_bytes(n: usize, w: &[u8], a: &[u8]) -> f32 {
            super::vec_dot_blocks::<$blk, BlockQ8_K>(n, w, a, QK_K, $dot)
        }
    };
}

byte_fns!(
    BlockQ2_K,
    dequantize_row_q2_k,
    vec_dot_q2_k_q8_k,
    dequantize_q2_k_bytes,
    vec_dot_q2_k_bytes
);
byte_fns!(
    BlockQ3_K,
    dequantize_row_q3_k,
    vec_dot_q3_k_q8_k,
    dequantize_q3_k_bytes,
    vec_dot_q3_k_bytes
);
byte_fns!(
    BlockQ4_K,
    dequantize_row_q4_k,
    vec_dot_q4_k_q8_k,
    dequantize_q4_k_bytes,
    vec_dot_q4_k_bytes
);
byte_fns!(
    BlockQ5_K,
    dequantize_row_q5_k,
    vec_dot_q5_k_q8_k,
    dequantize_q5_k_bytes,
    vec_dot_q5_k_bytes
);
byte_fns!(
    BlockQ6_K,
    dequantize_row_q6_k,
    vec_dot_q6_k_q8_k,
    dequantize_q6_k_bytes,
    vec_dot_q6_k_bytes
);

/// Byte-level Q8_K dequantizer (activation-only type).
pub(crate) fn dequantize_q8_k_bytes(src: &[u8], dst: &mut [f32]) {
    super::dequantize_blocks(src, dst, QK_K, dequantize_row_q8_k);
}

/// Activation quantizer on bytes: `out` (4-byte aligned, as the driver's
/// 64-byte aligned scratch is) holds `x.len() / 256` Q8_K blocks.
pub(crate) fn quantize_act_q8_k_bytes(x: &[f32], out: &mut [u8]) {
    let blocks: &mut [BlockQ8_K] = bytemuck::cast_slice_mut(out);
    quantize_row_q8_k(x, blocks);
}
