//! NEON bodies of the repacked Q4_K / Q5_K / Q6_K matmul (`crate::packed`),
//! written once over [`KDot`] and instantiated for three tiers chosen at
//! runtime ([`NeonDot`]): plain NEON (`smull`/`smlal`, any AArch64 CPU),
//! `sdot` by element (FEAT_DotProd) and `smmla` (FEAT_I8MM).
//!
//! They read the x86 records unchanged (`k_layout`, described in
//! `arch/x86_64/packed_k_avx512.rs`): each 64-byte vector of a 16-row group
//! holds 4 bytes per row, so one 128-bit register is 4 rows × 4 bytes, and
//! `sdot v.4s, w.16b, a.4b[k]` adds the 4-byte dot of each of the 4 rows
//! with activation bytes `4k..4k+4` in one instruction. `smmla` wants rows
//! in pairs × 8 bytes: `zip1`/`zip2` of the 32-bit lanes of two
//! consecutive vectors give exactly that (rows `4i, 4i+1` and `4i+2, 4i+3`
//! × elements `4k..4k+8`), and activations of two tokens are paired with
//! `zip1`/`zip2` of their 64-bit halves. Its 2×2 results (`[r0t0, r0t1,
//! r1t0, r1t1]`) stay in that order through the super-block (the scales are
//! arranged to match) and are put back in row order once per super-block.
//! Gemv (one token) on the i8mm tier runs the `sdot` body: a 2-token
//! `smmla` with one token would waste half of every instruction.
//!
//! Arithmetic (every tier the same integers, so bit-identical results):
//! weights stay unsigned (Q4_K 0..15, Q5_K 0..31, Q6_K 0..63); per 16
//! elements and row the dot is exact in i32 (plain NEON: i16 products of 4
//! elements, |·| ≤ 4·63·127, widened pairwise), each 32-element sub-block
//! (Q6_K: 16) is multiplied by its scale into an i32 `isum`; Q4_K / Q5_K
//! subtract `Σ_j m_j·Σa_j` (the driver's pair sums) times `dmin`, Q6_K
//! subtracts `32·Σ_g sc_g·bsum_g` from `isum`. Per super-block and token:
//! `acc += f32(isum)·(d_w·d_a)` (`− f32(imin)·(dmin_w·d_a)`), one `fmla`
//! (`fmls`) per 4 rows, the same operations for any token count.
//!
//! Instructions executed per super-block (256 elements), row and token,
//! counted under qemu (`examples/neon_insn_count.rs` with
//! `examples/neon_insn_count.py`: every instruction of the tile function in
//! a `-d in_asm,exec,nochain` trace, 16 rows × 2 super-blocks; no calls
//! leave the tile functions). gemv = 1 token; gemm = a 4-token tile:
//!
//! | type | plain gemv / gemm | sdot gemv / gemm | i8mm gemv / gemm |
//! |---|---|---|---|
//! | Q4_K | 161 / 121 | 64 / 50 | 64 / 47 |
//! | Q5_K | 265 / 142 | 175 / 78 | 175 / 76 |
//! | Q6_K | 237 / 160 | 176 / 79 | 177 / 76 |
//!
//! Of the Q4_K `sdot` gemv's 64: 16 `sdot`, 16 nibble masks / shifts and 8
//! loads of weights (each weight register is loaded twice, once per
//! nibble), the rest scales, mins and the float step. llama.cpp's
//! `ggml_gemv_q4_K_8x4_q8_K` (ggml-cpu/arch/arm/repack.cpp, dotprod; counted
//! statically from its source) does the same 16 `sdot` per row and super-block,
//! loads each weight register once (4 loads + 16 mask / shift per row) and
//! decodes the file's 6-bit scales with scalar code per 64 elements: about
//! 60–65 per row, level with the 64 here. Q5_K / Q6_K spend most of theirs
//! on the fifth / high bits (load, `ushl`, `and`, `orr` per register and
//! sub-block): the next thing to trim. The i8mm tier halves the dot
//! instructions at 4 tokens (1024 `smmla` against 2048 `sdot` per 2
//! super-blocks) but pays 16 `zip` per 16 elements for the weights, so its
//! gemm gain over `sdot` is ~5 % in instructions; a NEON-only record
//! already in 2×8 row pairs would remove the zips (not done: the x86
//! records are reused as they are).

use core::arch::aarch64::*;

use super::cvt_f16x8;
use super::neon_dot::{sdot_lane, smmla};
use crate::formats::packed_layout::k_layout::*;
use crate::tile::{PackedTile as KTile, PackedTileFn};

use crate::dispatch::NeonDot;

/// Tokens per call of a tile (the i8mm tier: two pairs).
pub(crate) const TILE_TOKENS: usize = 4;

/// One weight vector of the 16 rows: register `i` holds rows `4i..4i+4`,
/// 4 bytes each.
type W = [int8x16_t; 4];
/// Per token, 16 i32 row sums in the tier's order (row order: register `i`
/// holds rows `4i..4i+4`).
type Acc = [int32x4_t; 4];

/// The integer dot step of one tier.
///
/// # Safety (every method)
/// The CPU has the tier's features and the caller is compiled with them
/// (the methods are inlined into it).
pub(crate) trait KDot {
    /// `acc[t] += Σ_{k<4} w[k]·a[t][4k..4k+4]` for every row: 16 elements
    /// of `T` tokens (`a[t]`: the token's 16 activation bytes).
    unsafe fn dot16<const T: usize>(acc: &mut [Acc; T], w: &[W; 4], a: &[int8x16_t; T]);

    /// Row-order per-row factors `s` in the order of the accumulators of
    /// even (`[0]`) and odd (`[1]`) token slots.
    #[inline(always)]
    unsafe fn arrange(s: Acc) -> [Acc; 2] {
        [s, s]
    }

    /// The accumulators back in row order.
    #[inline(always)]
    unsafe fn rows<const T: usize>(acc: [Acc; T]) -> [Acc; T] {
        acc
    }
}

/// Plain NEON: `smull`/`smlal` of 4 elements per row into i16 (|·| ≤
/// 4·63·127 < 2^15), widened pairwise (`saddlp`, `addp`).
pub(crate) struct Plain;
/// FEAT_DotProd: `sdot` by element.
pub(crate) struct Sdot;
/// FEAT_I8MM: `smmla` on token pairs (`T` even).
pub(crate) struct Smmla;

/// Bytes `4k..4k+4` of `a` in every 32-bit lane.
#[inline(always)]
fn dup4<const K: i32>(a: int8x16_t) -> int8x16_t {
    // SAFETY: NEON register arithmetic (every AArch64 CPU here has NEON).
    unsafe { vreinterpretq_s8_s32(vdupq_laneq_s32::<K>(vreinterpretq_s32_s8(a))) }
}

impl KDot for Plain {
    #[inline(always)]
    unsafe fn dot16<const T: usize>(acc: &mut [Acc; T], w: &[W; 4], a: &[int8x16_t; T]) {
        // SAFETY: NEON register arithmetic (trait contract).
        unsafe {
            for t in 0..T {
                let d = [
                    dup4::<0>(a[t]),
                    dup4::<1>(a[t]),
                    dup4::<2>(a[t]),
                    dup4::<3>(a[t]),
                ];
                for i in 0..4 {
                    // Rows 4i, 4i+1 (lo) and 4i+2, 4i+3 (hi), 4 lanes each.
                    let mut lo = vmull_s8(vget_low_s8(w[0][i]), vget_low_s8(d[0]));
                    let mut hi = vmull_high_s8(w[0][i], d[0]);
                    for k in 1..4 {
                        lo = vmlal_s8(lo, vget_low_s8(w[k][i]), vget_low_s8(d[k]));
                        hi = vmlal_high_s8(hi, w[k][i], d[k]);
                    }
                    let s = vpaddq_s32(vpaddlq_s16(lo), vpaddlq_s16(hi));
                    acc[t][i] = vaddq_s32(acc[t][i], s);
                }
            }
        }
    }
}

impl KDot for Sdot {
    #[inline(always)]
    unsafe fn dot16<const T: usize>(acc: &mut [Acc; T], w: &[W; 4], a: &[int8x16_t; T]) {
        // SAFETY: dotprod (trait contract).
        unsafe {
            for t in 0..T {
                for i in 0..4 {
                    let mut s = acc[t][i];
                    s = sdot_lane::<0>(s, w[0][i], a[t]);
                    s = sdot_lane::<1>(s, w[1][i], a[t]);
                    s = sdot_lane::<2>(s, w[2][i], a[t]);
                    s = sdot_lane::<3>(s, w[3][i], a[t]);
                    acc[t][i] = s;
                }
            }
        }
    }
}

impl KDot for Smmla {
    /// Slots `2u, 2u+1` hold token pair `u`: register `m` of slot `2u + h`
    /// holds rows `8h + 2m, 8h + 2m + 1` × both tokens.
    #[inline(always)]
    unsafe fn dot16<const T: usize>(acc: &mut [Acc; T], w: &[W; 4], a: &[int8x16_t; T]) {
        // SAFETY: i8mm and NEON register arithmetic (trait contract).
        unsafe {
            // Rows (4i, 4i+1) and (4i+2, 4i+3) × elements 0..8 and 8..16.
            let mut wp = [[vdupq_n_s8(0); 2]; 8];
            for i in 0..4 {
                for o in 0..2 {
                    let (x, y) = (
                        vreinterpretq_s32_s8(w[2 * o][i]),
                        vreinterpretq_s32_s8(w[2 * o + 1][i]),
                    );
                    wp[2 * i][o] = vreinterpretq_s8_s32(vzip1q_s32(x, y));
                    wp[2 * i + 1][o] = vreinterpretq_s8_s32(vzip2q_s32(x, y));
                }
            }
            for u in 0..T / 2 {
                let (x, y) = (
                    vreinterpretq_s64_s8(a[2 * u]),
                    vreinterpretq_s64_s8(a[2 * u + 1]),
                );
                let ap = [
                    vreinterpretq_s8_s64(vzip1q_s64(x, y)),
                    vreinterpretq_s8_s64(vzip2q_s64(x, y)),
                ];
                for (pair, wpp) in wp.iter().enumerate() {
                    let slot = &mut acc[2 * u + pair / 4][pair % 4];
                    *slot = smmla(*slot, wpp[0], ap[0]);
                    *slot = smmla(*slot, wpp[1], ap[1]);
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn arrange(s: Acc) -> [Acc; 2] {
        // [s0, s0, s1, s1] ...: each row's factor for both tokens.
        // SAFETY: NEON register arithmetic (trait contract).
        let z = |v: int32x4_t| unsafe { (vzip1q_s32(v, v), vzip2q_s32(v, v)) };
        let (a, b) = z(s[0]);
        let (c, d) = z(s[1]);
        let (e, f) = z(s[2]);
        let (g, h) = z(s[3]);
        [[a, b, c, d], [e, f, g, h]]
    }

    #[inline(always)]
    unsafe fn rows<const T: usize>(acc: [Acc; T]) -> [Acc; T] {
        let mut out = acc;
        for u in 0..T / 2 {
            // Slot 2u + h, register m: [r(8h+2m) t0, r t1, r(8h+2m+1) t0, r t1].
            for h in 0..2 {
                let s = acc[2 * u + h];
                for q in 0..2 {
                    let (x, y) = (s[2 * q], s[2 * q + 1]);
                    // SAFETY: NEON register arithmetic (trait contract).
                    unsafe {
                        out[2 * u][2 * h + q] = vuzp1q_s32(x, y);
                        out[2 * u + 1][2 * h + q] = vuzp2q_s32(x, y);
                    }
                }
            }
        }
        out
    }
}

/// Loads the 4 registers of the weight vector at `p` (64 bytes).
///
/// # Safety
/// 64 bytes readable at `p`.
#[inline(always)]
unsafe fn load_w(p: *const u8) -> [uint8x16_t; 4] {
    // SAFETY: 64 readable bytes (caller).
    unsafe {
        [
            vld1q_u8(p),
            vld1q_u8(p.add(16)),
            vld1q_u8(p.add(32)),
            vld1q_u8(p.add(48)),
        ]
    }
}

/// 16 u8 (`SIGNED`: i8) factors at `p` as 4 i32x4 in row order.
///
/// # Safety
/// 16 bytes readable at `p`.
#[inline(always)]
unsafe fn widen16<const SIGNED: bool>(v: uint8x16_t) -> Acc {
    // SAFETY: NEON register arithmetic.
    unsafe {
        let (lo, hi) = if SIGNED {
            let v = vreinterpretq_s8_u8(v);
            (vmovl_s8(vget_low_s8(v)), vmovl_high_s8(v))
        } else {
            (
                vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(v))),
                vreinterpretq_s16_u16(vmovl_high_u8(v)),
            )
        };
        [
            vmovl_s16(vget_low_s16(lo)),
            vmovl_high_s16(lo),
            vmovl_s16(vget_low_s16(hi)),
            vmovl_high_s16(hi),
        ]
    }
}

/// 16 f16 at `p` as 4 f32x4 in row order.
///
/// # Safety
/// 32 bytes readable at `p`.
#[inline(always)]
unsafe fn f16x16(p: *const u8) -> [float32x4_t; 4] {
    // SAFETY: 32 readable bytes (caller); NEON conversions.
    unsafe {
        let (a, b) = cvt_f16x8(vld1q_u16(p as *const u16));
        let (c, d) = cvt_f16x8(vld1q_u16(p.add(16) as *const u16));
        [a, b, c, d]
    }
}

/// Per row `Σ_{p<P} (x_2p·s_lo,p + x_2p+1·s_hi,p)` where the 16 rows'
/// factor pairs `(x_2p, x_2p+1)` are the 32 bytes at `x + 32p` (row `r` at
/// bytes `2r, 2r+1`; u8, or i8 when `SIGNED`) and `(s_lo, s_hi)` are the
/// i16 halves of the i32 at `s + 4p`. Row order.
///
/// # Safety
/// `32·P` bytes at `x` and `4·P` at `s` readable.
#[inline(always)]
unsafe fn pair_dot<const P: usize, const SIGNED: bool>(x: *const u8, s: *const u8) -> Acc {
    // SAFETY: reads inside the ranges the caller guarantees; NEON
    // arithmetic.
    unsafe {
        let mut lo = [vdupq_n_s32(0); 4];
        let mut hi = [vdupq_n_s32(0); 4];
        for p in 0..P {
            let sv = vreinterpretq_s16_s32(vdupq_n_s32(core::ptr::read_unaligned(
                s.add(4 * p) as *const i32
            )));
            for h in 0..2 {
                let v = vld1q_u8(x.add(32 * p + 16 * h));
                let (a, b) = if SIGNED {
                    let v = vreinterpretq_s8_u8(v);
                    (vmovl_s8(vget_low_s8(v)), vmovl_high_s8(v))
                } else {
                    (
                        vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(v))),
                        vreinterpretq_s16_u16(vmovl_high_u8(v)),
                    )
                };
                // a: rows 8h..8h+4 as (x_even, x_odd) pairs; b: the next 4.
                for (q, m) in [a, b].into_iter().enumerate() {
                    let i = 2 * h + q;
                    lo[i] = vmlal_s16(lo[i], vget_low_s16(m), vget_low_s16(sv));
                    hi[i] = vmlal_high_s16(hi[i], m, sv);
                }
            }
        }
        core::array::from_fn(|i| vpaddq_s32(lo[i], hi[i]))
    }
}

/// `acc[t][i] += sub[t][i]·scale[t % 2][i]` (the tier's order).
#[inline(always)]
fn scale_into<const T: usize>(isum: &mut [Acc; T], sub: &[Acc; T], sc: &[Acc; 2]) {
    for t in 0..T {
        for i in 0..4 {
            // SAFETY: NEON register arithmetic.
            isum[t][i] = unsafe { vmlaq_s32(isum[t][i], sub[t][i], sc[t % 2][i]) };
        }
    }
}

/// Token `t`'s 16 activation bytes of super-block `b` from element `e`.
///
/// # Safety
/// Token `t`'s Q8_K block `b` readable (tile contract), `e + 16 ≤ 256`.
#[inline(always)]
unsafe fn act16(tile: &KTile, t: usize, b: usize, e: usize) -> int8x16_t {
    // SAFETY: inside the activation block (caller).
    unsafe { vld1q_s8(tile.a.add(t * tile.a_stride + b * A_BLOCK + A_QS + e) as *const i8) }
}

/// Token `t`'s Q8_K `d` of super-block `b`.
///
/// # Safety
/// As [`act16`].
#[inline(always)]
unsafe fn act_d(tile: &KTile, t: usize, b: usize) -> f32 {
    // SAFETY: the block's first 4 bytes (caller).
    unsafe { core::ptr::read_unaligned(tile.a.add(t * tile.a_stride + b * A_BLOCK) as *const f32) }
}

/// Stores token `t`'s 16 results.
///
/// # Safety
/// 16 floats writable at `out + t·out_stride`.
#[inline(always)]
unsafe fn store(tile: &KTile, t: usize, acc: &[float32x4_t; 4]) {
    for (i, a) in acc.iter().enumerate() {
        // SAFETY: floats 4i..4i+4 of token t's 16 (caller).
        unsafe { vst1q_f32(tile.out.add(t * tile.out_stride + 4 * i), *a) };
    }
}

/// `acc += f32(isum)·(dw·da)` per row.
#[inline(always)]
fn fma_rows(acc: &mut [float32x4_t; 4], isum: &Acc, dw: &[float32x4_t; 4], da: f32) {
    for i in 0..4 {
        // SAFETY: NEON register arithmetic.
        unsafe {
            acc[i] = vfmaq_f32(acc[i], vcvtq_f32_s32(isum[i]), vmulq_n_f32(dw[i], da));
        }
    }
}

/// 16 rows × `T` tokens of a Q4_K (`Q5 == false`) or Q5_K group.
///
/// # Safety
/// The CPU has `D`'s features (the caller enables them); `tile.qs` has
/// `nb` records of [`Q4_K_REC`] (Q5_K: [`Q5_K_REC`]) bytes readable; each of
/// the `T` activation rows has `nb` Q8_K blocks at its start and `nb·16`
/// side bytes at `side_off` readable; `out` has 16 writable floats at every
/// `t·out_stride`, `t < T`.
#[inline(always)]
unsafe fn q4_k_body<D: KDot, const Q5: bool, const T: usize>(tile: &KTile) {
    // SAFETY: every pointer stays inside record b or token t's activation
    // row (block b, side words of b), as the caller guarantees; the
    // instructions are the caller's.
    unsafe {
        let m4 = vdupq_n_u8(0x0F);
        let bit4 = vdupq_n_u8(0x10);
        let rec_len = if Q5 { Q5_K_REC } else { Q4_K_REC };
        let mut acc = [[vdupq_n_f32(0.0); 4]; T];
        for b in 0..tile.nb {
            let rec = tile.qs.add(b * rec_len);
            let mut isum = [[vdupq_n_s32(0); 4]; T];
            for j in 0..8 {
                let c = j / 2;
                let qh_shift = vdupq_n_s8(4 - j as i8);
                let sc = D::arrange(widen16::<false>(vld1q_u8(rec.add(Q4K_SC + 16 * j))));
                let mut sub = [[vdupq_n_s32(0); 4]; T];
                for half in 0..2 {
                    // Explicit loops (a closure here was left out of line).
                    let mut w: [W; 4] = [[vdupq_n_s8(0); 4]; 4];
                    for (kk, wk) in w.iter_mut().enumerate() {
                        let k = 4 * half + kk;
                        let raw = load_w(rec.add((8 * c + k) * 64));
                        let qh = if Q5 {
                            load_w(rec.add(Q5K_QH + 64 * k))
                        } else {
                            raw
                        };
                        for i in 0..4 {
                            let mut v = if j % 2 == 0 {
                                vandq_u8(raw[i], m4)
                            } else {
                                vshrq_n_u8::<4>(raw[i])
                            };
                            if Q5 {
                                // Bit j of the qh byte to bit 4 (`ushl` by 4 − j).
                                v = vorrq_u8(v, vandq_u8(vshlq_u8(qh[i], qh_shift), bit4));
                            }
                            wk[i] = vreinterpretq_s8_u8(v);
                        }
                    }
                    let a: [int8x16_t; T] =
                        core::array::from_fn(|t| act16(tile, t, b, 32 * j + 16 * half));
                    D::dot16(&mut sub, &w, &a);
                }
                scale_into(&mut isum, &sub, &sc);
            }
            let isum = D::rows(isum);
            let dw = f16x16(rec.add(Q4K_D));
            let mw = f16x16(rec.add(Q4K_DMIN));
            for t in 0..T {
                let da = act_d(tile, t, b);
                let side = tile.a.add(t * tile.a_stride + tile.side_off + b * Q4K_SIDE);
                let im = pair_dot::<4, false>(rec.add(Q4K_MIN), side);
                fma_rows(&mut acc[t], &isum[t], &dw, da);
                for i in 0..4 {
                    acc[t][i] = vfmsq_f32(acc[t][i], vcvtq_f32_s32(im[i]), vmulq_n_f32(mw[i], da));
                }
            }
        }
        for (t, a) in acc.iter().enumerate() {
            store(tile, t, a);
        }
    }
}

/// 16 rows × `T` tokens of a Q6_K group.
///
/// # Safety
/// As [`q4_k_body`] with records of [`Q6_K_REC`] bytes (no side bytes
/// read).
#[inline(always)]
unsafe fn q6_k_body<D: KDot, const T: usize>(tile: &KTile) {
    // SAFETY: as in `q4_k_body`: every pointer inside record b or token
    // t's Q8_K block b; the caller's instructions.
    unsafe {
        let m4 = vdupq_n_u8(0x0F);
        let m30 = vdupq_n_u8(0x30);
        let mut acc = [[vdupq_n_f32(0.0); 4]; T];
        for b in 0..tile.nb {
            let rec = tile.qs.add(b * Q6_K_REC);
            let mut isum = [[vdupq_n_s32(0); 4]; T];
            for n in 0..2 {
                for qi in 0..4 {
                    let p = 4 * n + qi;
                    let qh_shift = vdupq_n_s8(4 - 2 * qi as i8);
                    // Scales (sc_2p, sc_2p+1) of row r at bytes 2r, 2r+1.
                    let s0 = vld1q_u8(rec.add(Q6K_SC + 32 * p));
                    let s1 = vld1q_u8(rec.add(Q6K_SC + 32 * p + 16));
                    let sc = [vuzp1q_u8(s0, s1), vuzp2q_u8(s0, s1)];
                    for (h, &sch) in sc.iter().enumerate() {
                        let mut w: [W; 4] = [[vdupq_n_s8(0); 4]; 4];
                        for (kk, wk) in w.iter_mut().enumerate() {
                            let k = 4 * h + kk;
                            let l = load_w(rec.add(((2 * n + qi % 2) * 8 + k) * 64));
                            let hv = load_w(rec.add(Q6K_QH + (8 * n + k) * 64));
                            for i in 0..4 {
                                let lo = if qi < 2 {
                                    vandq_u8(l[i], m4)
                                } else {
                                    vshrq_n_u8::<4>(l[i])
                                };
                                // Bits 2qi, 2qi+1 to bits 4, 5 (`ushl` by 4 − 2qi).
                                let hs = vandq_u8(vshlq_u8(hv[i], qh_shift), m30);
                                wk[i] = vreinterpretq_s8_u8(vorrq_u8(lo, hs));
                            }
                        }
                        let a: [int8x16_t; T] =
                            core::array::from_fn(|t| act16(tile, t, b, 32 * p + 16 * h));
                        let mut sub = [[vdupq_n_s32(0); 4]; T];
                        D::dot16(&mut sub, &w, &a);
                        scale_into(&mut isum, &sub, &D::arrange(widen16::<true>(sch)));
                    }
                }
            }
            let isum = D::rows(isum);
            let dw = f16x16(rec.add(Q6K_D));
            for t in 0..T {
                let da = act_d(tile, t, b);
                let blk = tile.a.add(t * tile.a_stride + b * A_BLOCK);
                // Σ_g sc_g·bsum_g: the weights' offset 32 times it.
                let corr = pair_dot::<8, true>(rec.add(Q6K_SC), blk.add(A_BSUMS));
                let is: Acc =
                    core::array::from_fn(|i| vsubq_s32(isum[t][i], vshlq_n_s32::<5>(corr[i])));
                fma_rows(&mut acc[t], &is, &dw, da);
            }
        }
        for (t, a) in acc.iter().enumerate() {
            store(tile, t, a);
        }
    }
}

/// Calls `$f::<.., T>` with `T = $nt` (1..=4).
macro_rules! for_nt {
    ($nt:expr, $f:ident [$($p:tt),*] ($tile:expr)) => {
        match $nt {
            1 => $f::<$($p,)* 1>($tile),
            2 => $f::<$($p,)* 2>($tile),
            3 => $f::<$($p,)* 3>($tile),
            _ => $f::<$($p,)* 4>($tile),
        }
    };
}

/// Instantiates the bodies for one [`KDot`] inside functions compiled for
/// its features. `$pairs`: the tier takes tokens in pairs (odd counts run
/// the last token through the `sdot` body).
macro_rules! instantiate {
    ($modname:ident, $dot:ty, $features:literal, $pairs:literal) => {
        mod $modname {
            use super::*;

            #[target_feature(enable = $features)]
            unsafe fn q45_k<const Q5: bool>(tile: &KTile, nt: usize) {
                // SAFETY: forwarded contract (1 <= nt <= TILE_TOKENS); this
                // function has the features.
                unsafe {
                    if $pairs {
                        match nt {
                            1 => {}
                            2 | 3 => q4_k_body::<$dot, Q5, 2>(tile),
                            _ => q4_k_body::<$dot, Q5, 4>(tile),
                        }
                        if nt % 2 == 1 {
                            q4_k_body::<Sdot, Q5, 1>(&odd_tail(tile, nt));
                        }
                    } else {
                        for_nt!(nt, q4_k_body[$dot, Q5](tile))
                    }
                }
            }

            #[target_feature(enable = $features)]
            unsafe fn q4_k_n(tile: &KTile, nt: usize) {
                // SAFETY: forwarded contract.
                unsafe { q45_k::<false>(tile, nt) }
            }

            #[target_feature(enable = $features)]
            unsafe fn q5_k_n(tile: &KTile, nt: usize) {
                // SAFETY: forwarded contract.
                unsafe { q45_k::<true>(tile, nt) }
            }

            #[target_feature(enable = $features)]
            unsafe fn q6_k_n(tile: &KTile, nt: usize) {
                // SAFETY: forwarded contract (1 <= nt <= TILE_TOKENS).
                unsafe {
                    if $pairs {
                        match nt {
                            1 => {}
                            2 | 3 => q6_k_body::<$dot, 2>(tile),
                            _ => q6_k_body::<$dot, 4>(tile),
                        }
                        if nt % 2 == 1 {
                            q6_k_body::<Sdot, 1>(&odd_tail(tile, nt));
                        }
                    } else {
                        for_nt!(nt, q6_k_body[$dot](tile))
                    }
                }
            }

            /// This tier's tile of `ty` (Q4_K, Q5_K or Q6_K).
            pub(super) fn tile_for(ty: crate::GgmlType) -> Option<PackedTileFn> {
                Some(match ty {
                    crate::GgmlType::Q4_K => q4_k_n,
                    crate::GgmlType::Q5_K => q5_k_n,
                    crate::GgmlType::Q6_K => q6_k_n,
                    _ => return None,
                })
            }
        }
    };
}

/// The tile of token `nt − 1` alone (an odd count on a paired tier).
fn odd_tail(tile: &KTile, nt: usize) -> KTile {
    KTile {
        a: tile.a.wrapping_add((nt - 1) * tile.a_stride),
        out: tile.out.wrapping_add((nt - 1) * tile.out_stride),
        ..*tile
    }
}

instantiate!(plain, Plain, "neon", false);
instantiate!(sdot, Sdot, "neon,dotprod", false);
instantiate!(i8mm, Smmla, "neon,dotprod,i8mm", true);

/// The packed tile of `ty` for `tier` and its most tokens per call, `None`
/// for types without one.
pub(crate) fn tile_for(ty: crate::GgmlType, tier: NeonDot) -> Option<(PackedTileFn, usize)> {
    let f = match tier {
        NeonDot::Plain => plain::tile_for(ty),
        NeonDot::Sdot => sdot::tile_for(ty),
        NeonDot::Smmla => i8mm::tile_for(ty),
    }?;
    Some((f, TILE_TOKENS))
}
