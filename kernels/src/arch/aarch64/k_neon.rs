//! NEON tile functions for the K-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)
//! and IQ4_XS against Q8_K activations, and IQ4_NL against Q8_0.
//!
//! Per super-block the weights are unpacked to signed bytes 16 lanes at a
//! time; each 16- or 32-lane sub-block dot ([`I8Dot`]) is multiplied by its
//! integer scale into an i32x4 accumulator, so the block's integer sums are
//! exact and the float step repeats the scalar reference's expression
//! (results are bit-identical to `formats::k_quants` / `formats::iq4`).
//!
//! Byte offsets of the block fields follow the `#[repr(C)]` structs in
//! `formats::k_quants` / `formats::iq4` (checked by the size asserts there
//! and by the equality tests here).

use super::neon::{ld_q8, ld_s8, nibbles};
use super::{load_f16, I8Dot, Sdot, Smull};
use crate::formats::iq4::KVALUES_IQ4NL;
use crate::formats::k_quants::{unpack_scales_mins_k4, unpack_scales_q3_k, QK_K};
use crate::tile::MatFn;
use crate::GgmlType;
use core::arch::aarch64::*;

use crate::formats::iq4::{BlockIQ4_NL, BlockIQ4_XS};
use crate::formats::k_quants::{BlockQ6_K, BlockQ8_K};
use core::mem::{offset_of, size_of};

const Q6_K_BYTES: usize = size_of::<BlockQ6_K>();
const IQ4_XS_BYTES: usize = size_of::<BlockIQ4_XS>();
const IQ4_NL_BYTES: usize = size_of::<BlockIQ4_NL>();
const Q8_0_BYTES: usize = size_of::<crate::formats::BlockQ8_0>();
const Q8_K_BYTES: usize = size_of::<BlockQ8_K>();
/// Offsets inside a Q8_K block: `d: f32`, `qs: [i8; 256]`, `bsums: [i16; 16]`.
const Q8_K_QS: usize = offset_of!(BlockQ8_K, qs);
const Q8_K_BSUMS: usize = offset_of!(BlockQ8_K, bsums);

/// The NEON tile for a K-quant / IQ4 `ty`: the `sdot` flavour or the plain one.
pub(super) fn mat(ty: GgmlType, dotprod: bool) -> Option<MatFn> {
    if dotprod {
        sdot::mat(ty)
    } else {
        plain::mat(ty)
    }
}

/// Reads `N` bytes at `p` (any alignment).
///
/// # Safety
///
/// `p..p + N` readable.
#[inline(always)]
unsafe fn bytes<const N: usize>(p: *const u8) -> [u8; N] {
    // SAFETY: the caller guarantees N readable bytes; `[u8; N]` has
    // alignment 1.
    unsafe { core::ptr::read_unaligned(p as *const [u8; N]) }
}

/// The f32 scale `d` of the Q8_K block at `p`.
///
/// # Safety
///
/// `p..p + 4` readable.
#[inline(always)]
unsafe fn q8k_d(p: *const u8) -> f32 {
    // SAFETY: forwarded contract.
    f32::from_le_bytes(unsafe { bytes::<4>(p) })
}

/// 16 quants of the Q8_K block at `p`, starting at element `off`.
///
/// # Safety
///
/// NEON; `p` is a whole Q8_K block and `off + 16 <= 256`.
#[inline(always)]
unsafe fn q8k_qs(p: *const u8, off: usize) -> int8x16_t {
    // SAFETY: forwarded contract.
    unsafe { ld_s8(p.add(Q8_K_QS + off)) }
}

/// The 16 `bsums` of the Q8_K block at `p`, as two i16x8.
///
/// # Safety
///
/// NEON; `p` is a whole Q8_K block.
#[inline(always)]
unsafe fn q8k_bsums(p: *const u8) -> (int16x8_t, int16x8_t) {
    // SAFETY: bytes 260..292 of the block; loads have no alignment
    // requirement; little-endian lanes match the stored i16s.
    unsafe {
        (
            vreinterpretq_s16_u8(vld1q_u8(p.add(Q8_K_BSUMS))),
            vreinterpretq_s16_u8(vld1q_u8(p.add(Q8_K_BSUMS + 16))),
        )
    }
}

/// `Σ_k mins[k] · (bsums[2k] + bsums[2k+1])` for the 8-sub-block K-quants
/// (Q4_K, Q5_K), exact in i32.
///
/// # Safety
///
/// NEON; `a` is a whole Q8_K block.
#[inline(always)]
unsafe fn mins_dot8(mins: &[u8; 8], a: *const u8) -> i32 {
    // SAFETY: `mins` is 8 readable bytes; the rest is forwarded contract
    // and register arithmetic.
    unsafe {
        let (b0, b1) = q8k_bsums(a);
        let p0 = vpaddlq_s16(b0); // pairs 0..4
        let p1 = vpaddlq_s16(b1); // pairs 4..8
        let m = vmovl_u8(vld1_u8(mins.as_ptr()));
        let m0 = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(m)));
        let m1 = vreinterpretq_s32_u32(vmovl_high_u16(m));
        vaddvq_s32(vmlaq_s32(vmulq_s32(p0, m0), p1, m1))
    }
}

/// `acc += scale · Σ w·a` over 16 lanes.
///
/// # Safety
///
/// `D`'s CPU features (see [`I8Dot`]).
#[inline(always)]
unsafe fn sub16<D: I8Dot>(acc: int32x4_t, w: int8x16_t, a: int8x16_t, scale: i32) -> int32x4_t {
    // SAFETY: forwarded `I8Dot` contract.
    unsafe { vmlaq_n_s32(acc, D::dot(vdupq_n_s32(0), w, a), scale) }
}

/// `acc += scale · Σ w·a` over 32 lanes.
///
/// # Safety
///
/// `D`'s CPU features (see [`I8Dot`]).
#[inline(always)]
unsafe fn sub32<D: I8Dot>(
    acc: int32x4_t,
    w: (int8x16_t, int8x16_t),
    a: (int8x16_t, int8x16_t),
    scale: i32,
) -> int32x4_t {
    // SAFETY: forwarded `I8Dot` contract.
    unsafe {
        vmlaq_n_s32(
            acc,
            D::dot(D::dot(vdupq_n_s32(0), w.0, a.0), w.1, a.1),
            scale,
        )
    }
}

/// Bit cast u8x16 → i8x16.
#[inline(always)]
fn s8(v: uint8x16_t) -> int8x16_t {
    // SAFETY: a register bit cast; NEON is a baseline feature of every
    // aarch64 target (and of the tiles that call this).
    unsafe { vreinterpretq_s8_u8(v) }
}

/// The float step of the types with mins (Q2_K, Q4_K, Q5_K), the scalar
/// reference's expression per token: `sum += (d·d_a)·sumi − (dmin·d_a)·summs`
/// with `summs(a)` the block's `Σ min·bsum`.
///
/// # Safety
///
/// NEON; every `ab[t]` is a whole Q8_K block.
#[inline(always)]
unsafe fn acc_with_mins<const T: usize>(
    sums: &mut [f32; T],
    acc: [int32x4_t; T],
    ab: &[*const u8; T],
    (dw, dminw): (f32, f32),
    summs: impl Fn(*const u8) -> i32,
) {
    for ((sum, acc_t), &ab_t) in sums.iter_mut().zip(acc).zip(ab) {
        // SAFETY: forwarded contract.
        let (yd, sumi) = unsafe { (q8k_d(ab_t), vaddvq_s32(acc_t)) };
        let summs = summs(ab_t);
        *sum += dw * yd * sumi as f32 - dminw * yd * summs as f32;
    }
}

/// The float step of the types without mins (Q3_K, Q6_K, IQ4_XS):
/// `sum += d·d_a·sumi` per token.
///
/// # Safety
///
/// NEON; every `ab[t]` is a whole Q8_K block.
#[inline(always)]
unsafe fn acc_plain<const T: usize>(
    sums: &mut [f32; T],
    acc: [int32x4_t; T],
    ab: &[*const u8; T],
    dw: f32,
) {
    for ((sum, acc_t), &ab_t) in sums.iter_mut().zip(acc).zip(ab) {
        // SAFETY: forwarded contract.
        let (yd, sumi) = unsafe { (q8k_d(ab_t), vaddvq_s32(acc_t)) };
        *sum += dw * yd * sumi as f32;
    }
}

/// Q2_K (`Q3 == false`) or Q3_K · Q8_K rows (`T` activation rows). Both
/// hold 2-bit values in the same `qs` order under 16 sub-block scales.
/// Q2_K: `scales[16]` (scale and min nibbles), `qs[64]`, `d`, `dmin`.
/// Q3_K: `hmask[32]`, `qs[64]`, `scales[12]` (signed 6-bit), `d`; a value
/// is lowered by 4 where its hmask bit is clear.
///
/// # Safety
///
/// `D`'s CPU features; `w` holds `n / 256` Q2_K (Q3_K) blocks, every
/// `a[t]` as many Q8_K blocks.
#[inline(always)]
unsafe fn row_q23_k<D: I8Dot, const Q3: bool, const T: usize>(
    n: usize,
    w: *const u8,
    a: [*const u8; T],
) -> [f32; T] {
    use crate::formats::layout::fields::{q2_k, q3_k};
    let (bs, qs) = if Q3 {
        (q3_k::BS, q3_k::QS)
    } else {
        (q2_k::BS, q2_k::QS)
    };
    let mut sums = [0.0f32; T];
    for i in 0..n / QK_K {
        // SAFETY: block i of the weight row and of every activation row lies
        // inside the caller's bytes; all offsets below stay inside the
        // weight and Q8_K blocks.
        unsafe {
            let wb = w.add(i * bs);
            let ab: [*const u8; T] = core::array::from_fn(|t| a[t].add(i * Q8_K_BYTES));
            let sc: [i32; 16] = if Q3 {
                unpack_scales_q3_k(&bytes::<12>(wb.add(q3_k::SC))).map(|s| s as i32)
            } else {
                bytes::<16>(wb.add(q2_k::SC)).map(|s| (s & 0xF) as i32)
            };
            let (hm0, hm1) = if Q3 {
                (vld1q_u8(wb.add(q3_k::HM)), vld1q_u8(wb.add(q3_k::HM + 16)))
            } else {
                (vdupq_n_u8(0), vdupq_n_u8(0))
            };
            let (three, four) = (vdupq_n_u8(3), vdupq_n_u8(4));
            let mut acc = [vdupq_n_s32(0); T];
            for h in 0..2 {
                let mut q0 = vld1q_u8(wb.add(qs + 32 * h));
                let mut q1 = vld1q_u8(wb.add(qs + 16 + 32 * h));
                for j in 0..4 {
                    let sb = 8 * h + 2 * j;
                    let off = 128 * h + 32 * j;
                    let mut w0 = s8(vandq_u8(q0, three));
                    let mut w1 = s8(vandq_u8(q1, three));
                    if Q3 {
                        // Value = low 2 bits − (hmask bit clear ? 4 : 0).
                        let m = vdupq_n_u8(1 << (4 * h + j));
                        w0 = vsubq_s8(w0, s8(vbicq_u8(four, vtstq_u8(hm0, m))));
                        w1 = vsubq_s8(w1, s8(vbicq_u8(four, vtstq_u8(hm1, m))));
                    }
                    for (acc_t, &ab_t) in acc.iter_mut().zip(&ab) {
                        *acc_t = sub16::<D>(*acc_t, w0, q8k_qs(ab_t, off), sc[sb]);
                        *acc_t = sub16::<D>(*acc_t, w1, q8k_qs(ab_t, off + 16), sc[sb + 1]);
                    }
                    q0 = vshrq_n_u8::<2>(q0);
                    q1 = vshrq_n_u8::<2>(q1);
                }
            }
            if Q3 {
                acc_plain(&mut sums, acc, &ab, load_f16(wb.add(q3_k::D)));
            } else {
                // Mins (high nibbles), widened for the bsums products.
                let mins = vshrq_n_u8::<4>(vld1q_u8(wb.add(q2_k::SC)));
                let m0 = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(mins)));
                let m1 = vreinterpretq_s16_u16(vmovl_high_u8(mins));
                // (In this unsafe block: `ab_t` is a whole Q8_K block.)
                let summs = |ab_t| {
                    let (b0, b1) = q8k_bsums(ab_t);
                    let mut ms = vmull_s16(vget_low_s16(b0), vget_low_s16(m0));
                    ms = vmlal_high_s16(ms, b0, m0);
                    ms = vmlal_s16(ms, vget_low_s16(b1), vget_low_s16(m1));
                    ms = vmlal_high_s16(ms, b1, m1);
                    vaddvq_s32(ms)
                };
                let d = (load_f16(wb.add(q2_k::D)), load_f16(wb.add(q2_k::DMIN)));
                acc_with_mins(&mut sums, acc, &ab, d, summs);
            }
        }
    }
    sums
}

/// Q4_K (`Q5 == false`) or Q5_K · Q8_K rows (`T` activation rows).
/// Blocks: `d`, `dmin`, `scales[12]`, (Q5_K: `qh[32]`), `qs[128]`; Q5_K's
/// fifth bits are merged into the nibbles before the dot.
///
/// # Safety
///
/// `D`'s CPU features; `w` holds `n / 256` Q4_K (Q5_K) blocks, every
/// `a[t]` as many Q8_K blocks.
#[inline(always)]
unsafe fn row_q45_k<D: I8Dot, const Q5: bool, const T: usize>(
    n: usize,
    w: *const u8,
    a: [*const u8; T],
) -> [f32; T] {
    use crate::formats::layout::fields::{k4, K4_SC as SC, K5_QH as QH};
    let (bs, qs) = k4(Q5);
    let mut sums = [0.0f32; T];
    for i in 0..n / QK_K {
        // SAFETY: block i of the weight row and of every activation row lies
        // inside the caller's bytes; all offsets below stay inside the
        // weight and Q8_K blocks.
        unsafe {
            let wb = w.add(i * bs);
            let ab: [*const u8; T] = core::array::from_fn(|t| a[t].add(i * Q8_K_BYTES));
            let (sc, mn) = unpack_scales_mins_k4(&bytes::<12>(wb.add(SC)));
            let (qh0, qh1) = if Q5 {
                (vld1q_u8(wb.add(QH)), vld1q_u8(wb.add(QH + 16)))
            } else {
                (vdupq_n_u8(0), vdupq_n_u8(0))
            };
            let sixteen = vdupq_n_u8(16);
            // Bit j of qh[l] is the fifth bit of element l of sub-block j.
            let high = |j: usize| {
                let m = vdupq_n_u8(1 << j);
                (
                    vandq_u8(vtstq_u8(qh0, m), sixteen),
                    vandq_u8(vtstq_u8(qh1, m), sixteen),
                )
            };
            let mut acc = [vdupq_n_s32(0); T];
            for k in 0..4 {
                // 32 bytes: low nibbles = sub-block 2k, high = 2k + 1.
                let (mut l0, mut h0) = nibbles(wb.add(qs + 32 * k));
                let (mut l1, mut h1) = nibbles(wb.add(qs + 16 + 32 * k));
                if Q5 {
                    let (e0, e1) = high(2 * k);
                    let (o0, o1) = high(2 * k + 1);
                    (l0, l1) = (vorrq_u8(l0, e0), vorrq_u8(l1, e1));
                    (h0, h1) = (vorrq_u8(h0, o0), vorrq_u8(h1, o1));
                }
                let w_lo = (s8(l0), s8(l1));
                let w_hi = (s8(h0), s8(h1));
                for (acc_t, &ab_t) in acc.iter_mut().zip(&ab) {
                    let a_lo = ld_q8(ab_t.add(Q8_K_QS + 64 * k));
                    let a_hi = ld_q8(ab_t.add(Q8_K_QS + 64 * k + 32));
                    *acc_t = sub32::<D>(*acc_t, w_lo, a_lo, sc[2 * k] as i32);
                    *acc_t = sub32::<D>(*acc_t, w_hi, a_hi, sc[2 * k + 1] as i32);
                }
            }
            let d = (load_f16(wb), load_f16(wb.add(2)));
            // (In this unsafe block: every `ab_t` is a whole Q8_K block.)
            acc_with_mins(&mut sums, acc, &ab, d, |ab_t| mins_dot8(&mn, ab_t));
        }
    }
    sums
}

/// Q6_K · Q8_K rows (`T` activation rows). Block: `ql[128]`, `qh[64]`,
/// `scales[16]` (i8), `d`.
///
/// # Safety
///
/// `D`'s CPU features; `w` holds `n / 256` blocks of 210 bytes, every
/// `a[t]` as many Q8_K blocks.
#[inline(always)]
unsafe fn row_q6_k<D: I8Dot, const T: usize>(
    n: usize,
    w: *const u8,
    a: [*const u8; T],
) -> [f32; T] {
    let mut sums = [0.0f32; T];
    for i in 0..n / QK_K {
        // SAFETY: block i of the weight row and of every activation row lies
        // inside the caller's bytes; all offsets below stay inside the
        // 210- / 292-byte blocks.
        unsafe {
            let wb = w.add(i * Q6_K_BYTES);
            let ab: [*const u8; T] = core::array::from_fn(|t| a[t].add(i * Q8_K_BYTES));
            let sc = bytes::<16>(wb.add(192)).map(|b| b as i8 as i32);
            let (f, hm, m32) = (vdupq_n_u8(0x0F), vdupq_n_u8(0x30), vdupq_n_s8(32));
            let mut acc = [vdupq_n_s32(0); T];
            for h in 0..2 {
                let ql = wb.add(64 * h);
                let qh = wb.add(128 + 32 * h);
                // Lanes 0..16 (s = 0) and 16..32 (s = 1) of each quarter.
                for s in 0..2 {
                    let la = vld1q_u8(ql.add(16 * s)); // ql[l]
                    let lb = vld1q_u8(ql.add(32 + 16 * s)); // ql[l + 32]
                    let hb = vld1q_u8(qh.add(16 * s));
                    // Quarter q: low nibble of la / lb (q = 0, 1) or high
                    // nibble (q = 2, 3); high 2 bits = (qh >> 2q) & 3.
                    let quarters = [
                        vorrq_u8(vandq_u8(la, f), vandq_u8(vshlq_n_u8::<4>(hb), hm)),
                        vorrq_u8(vandq_u8(lb, f), vandq_u8(vshlq_n_u8::<2>(hb), hm)),
                        vorrq_u8(vshrq_n_u8::<4>(la), vandq_u8(hb, hm)),
                        vorrq_u8(vshrq_n_u8::<4>(lb), vandq_u8(vshrq_n_u8::<2>(hb), hm)),
                    ]
                    .map(|v| vsubq_s8(s8(v), m32));
                    for (acc_t, &ab_t) in acc.iter_mut().zip(&ab) {
                        for (q, &wv) in quarters.iter().enumerate() {
                            let av = q8k_qs(ab_t, 128 * h + 32 * q + 16 * s);
                            *acc_t = sub16::<D>(*acc_t, wv, av, sc[8 * h + 2 * q + s]);
                        }
                    }
                }
            }
            let dw = load_f16(wb.add(208));
            acc_plain(&mut sums, acc, &ab, dw);
        }
    }
    sums
}

/// The IQ4 codebook as a table-lookup register.
///
/// # Safety
///
/// NEON.
#[inline(always)]
unsafe fn iq4_table() -> int8x16_t {
    // SAFETY: `KVALUES_IQ4NL` is 16 readable bytes.
    unsafe { vld1q_s8(KVALUES_IQ4NL.as_ptr()) }
}

/// Codebook values of the 32 nibbles at `p` (low nibbles first).
///
/// # Safety
///
/// NEON; `p..p + 16` readable.
#[inline(always)]
unsafe fn iq4_values(table: int8x16_t, p: *const u8) -> (int8x16_t, int8x16_t) {
    // SAFETY: forwarded contract; `tbl` indices are < 16.
    unsafe {
        let (lo, hi) = nibbles(p);
        (vqtbl1q_s8(table, lo), vqtbl1q_s8(table, hi))
    }
}

/// IQ4_NL · Q8_0 rows (`T` activation rows). Block: `d`, `qs[16]`.
///
/// # Safety
///
/// `D`'s CPU features; `w` holds `n / 32` blocks of 18 bytes, every `a[t]`
/// as many Q8_0 blocks of 34.
#[inline(always)]
unsafe fn row_iq4_nl<D: I8Dot, const T: usize>(
    n: usize,
    w: *const u8,
    a: [*const u8; T],
) -> [f32; T] {
    let mut sums = [0.0f32; T];
    // SAFETY: NEON (contract).
    let table = unsafe { iq4_table() };
    for i in 0..n / 32 {
        // SAFETY: block i of the weight row and of every activation row lies
        // inside the caller's bytes.
        unsafe {
            let wb = w.add(i * IQ4_NL_BYTES);
            let wv = iq4_values(table, wb.add(2));
            let dw = load_f16(wb);
            for (sum, &a_t) in sums.iter_mut().zip(&a) {
                let ab = a_t.add(i * Q8_0_BYTES);
                let av = ld_q8(ab.add(2));
                let isum = vaddvq_s32(sub32::<D>(vdupq_n_s32(0), wv, av, 1));
                let d = dw * load_f16(ab);
                *sum += d * isum as f32;
            }
        }
    }
    sums
}

/// IQ4_XS · Q8_K rows (`T` activation rows). Block: `d`, `scales_h: u16`,
/// `scales_l[4]`, `qs[128]`.
///
/// # Safety
///
/// `D`'s CPU features; `w` holds `n / 256` blocks of 136 bytes, every
/// `a[t]` as many Q8_K blocks.
#[inline(always)]
unsafe fn row_iq4_xs<D: I8Dot, const T: usize>(
    n: usize,
    w: *const u8,
    a: [*const u8; T],
) -> [f32; T] {
    let mut sums = [0.0f32; T];
    // SAFETY: NEON (contract).
    let table = unsafe { iq4_table() };
    for i in 0..n / QK_K {
        // SAFETY: block i of the weight row and of every activation row lies
        // inside the caller's bytes; all offsets below stay inside the
        // 136- / 292-byte blocks.
        unsafe {
            let wb = w.add(i * IQ4_XS_BYTES);
            let ab: [*const u8; T] = core::array::from_fn(|t| a[t].add(i * Q8_K_BYTES));
            let sh = u16::from_le_bytes(bytes::<2>(wb.add(2)));
            let sl = bytes::<4>(wb.add(4));
            let mut acc = [vdupq_n_s32(0); T];
            for ib in 0..8 {
                let low = (sl[ib / 2] >> (4 * (ib % 2))) & 0xF;
                let high = ((sh >> (2 * ib)) & 3) as u8;
                let scale = (low | (high << 4)) as i32 - 32;
                let wv = iq4_values(table, wb.add(8 + 16 * ib));
                for (acc_t, &ab_t) in acc.iter_mut().zip(&ab) {
                    let av = ld_q8(ab_t.add(Q8_K_QS + 32 * ib));
                    *acc_t = sub32::<D>(*acc_t, wv, av, scale);
                }
            }
            let dw = load_f16(wb);
            acc_plain(&mut sums, acc, &ab, dw);
        }
    }
    sums
}

flavours! {
    Q2_K => row_q23_k[false];
    Q3_K => row_q23_k[true];
    Q4_K => row_q45_k[false];
    Q5_K => row_q45_k[true];
    Q6_K => row_q6_k[];
    IQ4_NL => row_iq4_nl[];
    IQ4_XS => row_iq4_xs[];
}
