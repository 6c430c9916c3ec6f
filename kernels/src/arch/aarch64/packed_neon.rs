//! NEON body of the repacked matmul (`crate::packed`) for the 32-element
//! types Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL and Q8_0, on the layout the x86
//! kernels read (16-row groups, 4 bytes per row interleaved; on NEON the
//! Q8_0 bytes stay signed, see `crate::packed`). Three tiers
//! (`neon_dot.rs`), one body each for gemv/small gemm and one `smmla` gemm:
//!
//! * **plain / sdot** ([`quad_body`] over [`Dot4`]): per block and quad of 4
//!   rows, the 16 bytes of each packed vector are one register of 4 rows ×
//!   4 bytes; decoded to 8 signed-byte registers (`lo[k]`: elements
//!   `4k..4k+4`, `hi[k]`: `16+4k..`) and dotted by element with the two
//!   activation registers of each token (elements 0..16 and 16..32). Up
//!   to 4 tokens per call; gemv keeps all 4 quads in registers.
//! * **smmla** ([`mmla_body`]): the decoded registers of a quad are zipped
//!   into row pairs × 8 elements (`zip1`/`zip2` `.4s`), the activations of a
//!   token pair into tokens × 8 elements (`zip1`/`zip2` `.2d`), and each
//!   `smmla` gives a 2 × 2 (rows × tokens) tile: 32 products per
//!   instruction against `sdot`'s 16. Up to 8 tokens per call (an odd last
//!   token is paired with itself and its copy dropped); one token runs the
//!   `sdot` body.
//!
//! Numerics: per (row, token, block) the integer dot is exact and starts at
//! the side word's `−bias·Σa` (Q4_0 nibbles 0..15, Q5_0 0..31; Q8_0 and
//! IQ4_NL are dotted as signed values and start at 0); every tier then does
//! the same f32 operations in the same order, `acc = fma(f32(isum), d_w·d_a,
//! acc)` (+ `fma(m_w, s_a, acc)` for Q4_1 / Q5_1), so the three tiers, any
//! token count and any tile split give bit-identical results.
//!
//! Instructions per 32-element block per row (Q4_0, counted from the
//! source; a 16-byte load counts 1; T tokens per call):
//!
//! | tier | decode, per row (shared by the T tokens) | integer dot, per row and token | f32, per row and token |
//! |---|---|---|---|
//! | plain | (4 ld + 4 and + 4 ushr) / 4 rows = 3 | (8 smull/smlal + 8 smull2/smlal2 + 8 sadalp + addp + dup + add) / 4 = 6.75 | (scvtf + fmul + fmla) / 4 = 0.75 |
//! | sdot | 3 | (8 sdot + 1 dup of the start) / 4 = 2.25 | 0.75 |
//! | smmla | (4 ld + 8 and/ushr + 8 zip) / 4 = 5 | 8 smmla per 4 rows × 2 tokens = 1 (+ the start, shared) | 0.75 |
//!
//! Per block and quad the f16 scales add 2 (ldr d + fcvtl) / 4 = 0.5 per
//! row; per block and token, shared by the 16 rows, 2 activation loads
//! and 2 side words (plain: + 8 `dup` lane broadcasts; smmla: + 4 `zip`
//! per token pair). Q8_0 decodes with 8 loads per quad (2 per row) and no
//! shifts; Q5_x add 1 load + 8 shift/and/orr per quad; IQ4_NL 8 `tbl`.
//!
//! So gemv Q4_0 on the sdot tier costs ≈ 3 + 2.25 + 0.75 + 0.5 + ~0.3 ≈
//! 6.8 instructions per row and block (18 weight bytes), Q8_0 ≈ 5.8 (34
//! bytes). llama.cpp's `ggml_gemv_q4_0_4x4_q8_0` (`ggml-cpu/arch/arm/
//! repack.cpp`, `block_q4_0x4`, dotprod) does per block of 4 rows 4 loads,
//! 4 `shl` + 4 `and` (its nibbles are stored xor 0x88 so that `w << 4` and
//! `w & 0xF0` are the signed values × 16, which saves the offset term), 8
//! `sdot` by lane, 2 activation loads and ~6 f32/f16 ops (two f16
//! converts, fmul, a fixed-point `scvtf #4`, fmla): ≈ 7 per row and block,
//! the same budget. gemm here reuses each decoded block across up to 4
//! (plain, sdot) or 8 (smmla) tokens; the smmla tier halves the dot
//! instructions per (row, token) against sdot, and the f32 epilogue (0.75)
//! is then the largest per-token cost after it.

use core::arch::aarch64::*;

use super::neon_dot::{smmla, Dot4, Plain, SdotLane};
use crate::dispatch::NeonDot;
use crate::formats::layout::Block32;
use crate::formats::packed_layout::l32::*;
use crate::tile::{PackedTile as Tile, PackedTileFn};

/// Tokens per call of the plain and `sdot` tiles.
const DOT_TILE_TOKENS: usize = 4;
/// Tokens per call of the `smmla` tile (4 token pairs).
const MMLA_TILE_TOKENS: usize = 8;

/// Four f16 (raw bits at `p`, any alignment) as f32 (exact).
///
/// # Safety
/// NEON; `p..p + 8` readable.
#[inline(always)]
unsafe fn load_f16x4(p: *const u8) -> float32x4_t {
    // SAFETY: 8 readable bytes (caller); byte loads need no alignment;
    // `cvt_f16x4` needs NEON only.
    unsafe { super::cvt_f16x4(vreinterpret_u16_u8(vld1_u8(p))) }
}

/// Quad `q`'s weights of the block at `p`, decoded to signed bytes: `lo[k]`
/// holds elements `4k..4k+4` of the quad's 4 rows (one 4-byte group per
/// row), `hi[k]` elements `16+4k..16+4k+4`.
///
/// # Safety
/// NEON; `p` points at one packed block of kind `K` (`quant_bytes(K)`
/// readable).
#[inline(always)]
unsafe fn decode<const K: u8>(p: *const u8, q: usize) -> ([int8x16_t; 4], [int8x16_t; 4]) {
    // SAFETY: every load reads 16 bytes at 64·v + 16q < quant_bytes(K) for
    // the vectors v the kind has (caller); register ops otherwise.
    unsafe {
        let ld = |v: usize| vld1q_u8(p.add(64 * v + 16 * q));
        let s = |v: uint8x16_t| vreinterpretq_s8_u8(v);
        if K == Q8_0 {
            return (
                core::array::from_fn(|k| s(ld(k))),
                core::array::from_fn(|k| s(ld(k + 4))),
            );
        }
        let m4 = vdupq_n_u8(0x0F);
        let mut lo: [uint8x16_t; 4] = core::array::from_fn(|k| vandq_u8(ld(k), m4));
        let mut hi: [uint8x16_t; 4] = core::array::from_fn(|k| vshrq_n_u8::<4>(ld(k)));
        if K == Q5_0 || K == Q5_1 {
            // Fifth-bit byte 4r + i, bit j: element 4j + i. lo[k] takes bit
            // k, hi[k] bit 4 + k, each moved to bit 4.
            let h = ld(4);
            let b4 = vdupq_n_u8(0x10);
            let bit = |v: uint8x16_t| vandq_u8(v, b4);
            lo[0] = vorrq_u8(lo[0], bit(vshlq_n_u8::<4>(h)));
            lo[1] = vorrq_u8(lo[1], bit(vshlq_n_u8::<3>(h)));
            lo[2] = vorrq_u8(lo[2], bit(vshlq_n_u8::<2>(h)));
            lo[3] = vorrq_u8(lo[3], bit(vshlq_n_u8::<1>(h)));
            hi[0] = vorrq_u8(hi[0], bit(h));
            hi[1] = vorrq_u8(hi[1], bit(vshrq_n_u8::<1>(h)));
            hi[2] = vorrq_u8(hi[2], bit(vshrq_n_u8::<2>(h)));
            hi[3] = vorrq_u8(hi[3], bit(vshrq_n_u8::<3>(h)));
        }
        if K == IQ4_NL {
            let book = vld1q_s8(crate::formats::iq4::KVALUES_IQ4NL.as_ptr());
            let look = |v: uint8x16_t| vqtbl1q_s8(book, v);
            return (lo.map(look), hi.map(look));
        }
        (lo.map(s), hi.map(s))
    }
}

/// One token's view of block `b`: its two activation registers (elements
/// 0..16, 16..32), `d_a`, the integer sum's start and `s_a`.
///
/// # Safety
/// NEON; token `t`'s activation block `b` and its side words are readable
/// (the tile contract).
#[inline(always)]
unsafe fn act<const K: u8>(
    tile: &Tile,
    t: usize,
    b: usize,
) -> (int8x16_t, int8x16_t, f32, i32, f32) {
    // SAFETY: the caller's contract; unaligned byte loads.
    unsafe {
        let (row, da, init, sa) = tile.side32(t, b, has_min(K));
        let ab = act_block(K);
        let qs = row.add(b * ab + ab - 32);
        // Q8_0 / IQ4_NL are dotted as signed values: no offset.
        let init = if K == Q8_0 || K == IQ4_NL { 0 } else { init };
        let qs = qs as *const i8;
        (vld1q_s8(qs), vld1q_s8(qs.add(16)), da, init, sa)
    }
}

/// The integer dot of one quad (4 rows) with one token over one block,
/// starting at `init`.
///
/// # Safety
/// `D`'s tier is enabled.
#[inline(always)]
unsafe fn quad_dot<D: Dot4>(
    lo: &[int8x16_t; 4],
    hi: &[int8x16_t; 4],
    alo: int8x16_t,
    ahi: int8x16_t,
    init: i32,
) -> int32x4_t {
    // SAFETY: register arithmetic of `D` (caller).
    unsafe {
        let acc = D::start(init);
        let acc = D::dot2::<0, 0>(acc, lo[0], alo, hi[0], ahi);
        let acc = D::dot2::<1, 1>(acc, lo[1], alo, hi[1], ahi);
        let acc = D::dot2::<2, 2>(acc, lo[2], alo, hi[2], ahi);
        let acc = D::dot2::<3, 3>(acc, lo[3], alo, hi[3], ahi);
        D::finish(acc)
    }
}

/// Rows `4·Q0..4·(Q0 + QR)` × `T` tokens of one row group of kind `K`.
///
/// # Safety
/// `D`'s tier is enabled; `tile.qs` has `nb · quant_bytes(K)` readable
/// bytes, `tile.sc` `nb · scale_bytes(K)`, each of the `T` activation rows
/// `nb · act_block(K)` at its start and `nb · 8` at `side_off`, and `out`
/// 16 writable floats at every `t · out_stride`, `t < T`.
#[inline(always)]
unsafe fn quad_body<D: Dot4, const K: u8, const T: usize, const QR: usize>(tile: &Tile, q0: usize) {
    // SAFETY: the caller's contract; the reads below stay inside block b of
    // the group (quants, scales) and of each token's activation row.
    unsafe {
        let (qb, sb) = (quant_bytes(K), scale_bytes(K));
        let mut acc = [[vdupq_n_f32(0.0); T]; QR];
        for b in 0..tile.nb {
            let (p, s) = (tile.qs.add(b * qb), tile.sc.add(b * sb));
            let a: [_; T] = core::array::from_fn(|t| act::<K>(tile, t, b));
            for (qi, acc_q) in acc.iter_mut().enumerate() {
                let q = q0 + qi;
                let (lo, hi) = decode::<K>(p, q);
                let dw = load_f16x4(s.add(8 * q));
                let mw = if has_min(K) {
                    load_f16x4(s.add(32 + 8 * q))
                } else {
                    dw
                };
                for (acc_t, &(alo, ahi, da, init, sa)) in acc_q.iter_mut().zip(&a) {
                    let isum = quad_dot::<D>(&lo, &hi, alo, ahi, init);
                    *acc_t = vfmaq_f32(*acc_t, vcvtq_f32_s32(isum), vmulq_n_f32(dw, da));
                    if has_min(K) {
                        *acc_t = vfmaq_n_f32(*acc_t, mw, sa);
                    }
                }
            }
        }
        for (qi, acc_q) in acc.iter().enumerate() {
            for (t, v) in acc_q.iter().enumerate() {
                vst1q_f32(tile.out.add(t * tile.out_stride + 4 * (q0 + qi)), *v);
            }
        }
    }
}

/// The plain / `sdot` tile for `nt` (1..=4) tokens: all 4 quads at once
/// for 1–2 tokens, two quads at a time for 3–4 (register pressure).
///
/// # Safety
/// The contract of [`quad_body`] with `T = nt`.
#[inline(always)]
unsafe fn dot_tile<D: Dot4, const K: u8>(tile: &Tile, nt: usize) {
    // SAFETY: forwarded contract; each arm passes T = nt.
    unsafe {
        match nt {
            1 => quad_body::<D, K, 1, 4>(tile, 0),
            2 => quad_body::<D, K, 2, 4>(tile, 0),
            3 => {
                quad_body::<D, K, 3, 2>(tile, 0);
                quad_body::<D, K, 3, 2>(tile, 2);
            }
            _ => {
                quad_body::<D, K, 4, 2>(tile, 0);
                quad_body::<D, K, 4, 2>(tile, 2);
            }
        }
    }
}

/// `[x, y, x, y]`.
#[inline(always)]
unsafe fn pair_f32(x: f32, y: f32) -> float32x4_t {
    // SAFETY: NEON register ops.
    unsafe { vzip1q_f32(vdupq_n_f32(x), vdupq_n_f32(y)) }
}

/// The `smmla` gemm: 16 rows × `2·TP` tokens (token `2·TP − 1` may be a copy
/// of the one before when `nt` is odd: `nt` is the real count), one quad (2
/// row pairs) at a time over all blocks.
///
/// # Safety
/// FEAT_I8MM enabled; the contract of [`quad_body`] for the `nt` real
/// tokens, `2·TP − 1 <= nt <= 2·TP`.
#[inline(always)]
unsafe fn mmla_body<const K: u8, const TP: usize>(tile: &Tile, nt: usize) {
    // SAFETY: the caller's contract; token index min(t, nt − 1) is always
    // a real token, and reads stay inside block b as in `quad_body`.
    unsafe {
        let (qb, sb) = (quant_bytes(K), scale_bytes(K));
        let tok = |t: usize| t.min(nt - 1);
        for q in 0..4 {
            // acc[p][j]: rows 4q + 2p, +1 × tokens 2j, 2j + 1, as
            // [r t, r t', r' t, r' t'].
            let mut acc = [[vdupq_n_f32(0.0); TP]; 2];
            for b in 0..tile.nb {
                let (p, s) = (tile.qs.add(b * qb), tile.sc.add(b * sb));
                let (lo, hi) = decode::<K>(p, q);
                let z = |x: int8x16_t, y: int8x16_t, second: bool| {
                    let (x, y) = (vreinterpretq_s32_s8(x), vreinterpretq_s32_s8(y));
                    vreinterpretq_s8_s32(if second {
                        vzip2q_s32(x, y)
                    } else {
                        vzip1q_s32(x, y)
                    })
                };
                // w[p][c]: row pair p × elements 8c..8c + 8 (c < 2 from lo,
                // c >= 2 from hi).
                let w: [[int8x16_t; 4]; 2] = core::array::from_fn(|pr| {
                    let sec = pr == 1;
                    [
                        z(lo[0], lo[1], sec),
                        z(lo[2], lo[3], sec),
                        z(hi[0], hi[1], sec),
                        z(hi[2], hi[3], sec),
                    ]
                });
                let dw = load_f16x4(s.add(8 * q));
                let dwp = [vzip1q_f32(dw, dw), vzip2q_f32(dw, dw)];
                let mwp = if has_min(K) {
                    let mw = load_f16x4(s.add(32 + 8 * q));
                    [vzip1q_f32(mw, mw), vzip2q_f32(mw, mw)]
                } else {
                    dwp
                };
                for j in 0..TP {
                    let (alo0, ahi0, da0, i0, sa0) = act::<K>(tile, tok(2 * j), b);
                    let (alo1, ahi1, da1, i1, sa1) = act::<K>(tile, tok(2 * j + 1), b);
                    let z64 = |x: int8x16_t, y: int8x16_t, second: bool| {
                        let (x, y) = (vreinterpretq_s64_s8(x), vreinterpretq_s64_s8(y));
                        vreinterpretq_s8_s64(if second {
                            vzip2q_s64(x, y)
                        } else {
                            vzip1q_s64(x, y)
                        })
                    };
                    let a = [
                        z64(alo0, alo1, false),
                        z64(alo0, alo1, true),
                        z64(ahi0, ahi1, false),
                        z64(ahi0, ahi1, true),
                    ];
                    let init = vzip1q_s32(vdupq_n_s32(i0), vdupq_n_s32(i1));
                    let da = pair_f32(da0, da1);
                    let sa = pair_f32(sa0, sa1);
                    for pr in 0..2 {
                        let mut isum = init;
                        for c in 0..4 {
                            isum = smmla(isum, w[pr][c], a[c]);
                        }
                        let v = &mut acc[pr][j];
                        *v = vfmaq_f32(*v, vcvtq_f32_s32(isum), vmulq_f32(dwp[pr], da));
                        if has_min(K) {
                            *v = vfmaq_f32(*v, mwp[pr], sa);
                        }
                    }
                }
            }
            for j in 0..TP {
                // [r0..r3] of token 2j, then of 2j + 1.
                let (p0, p1) = (acc[0][j], acc[1][j]);
                vst1q_f32(
                    tile.out.add(2 * j * tile.out_stride + 4 * q),
                    vuzp1q_f32(p0, p1),
                );
                if 2 * j + 1 < nt {
                    vst1q_f32(
                        tile.out.add((2 * j + 1) * tile.out_stride + 4 * q),
                        vuzp2q_f32(p0, p1),
                    );
                }
            }
        }
    }
}

#[target_feature(enable = "neon")]
unsafe fn tile_plain<const K: u8>(tile: &Tile, nt: usize) {
    // SAFETY: forwarded contract (1 <= nt <= DOT_TILE_TOKENS); NEON enabled.
    unsafe { dot_tile::<Plain, K>(tile, nt) }
}

#[target_feature(enable = "neon,dotprod")]
unsafe fn tile_sdot<const K: u8>(tile: &Tile, nt: usize) {
    // SAFETY: forwarded contract (1 <= nt <= DOT_TILE_TOKENS); dotprod enabled.
    unsafe { dot_tile::<SdotLane, K>(tile, nt) }
}

#[target_feature(enable = "neon,dotprod,i8mm")]
unsafe fn tile_smmla<const K: u8>(tile: &Tile, nt: usize) {
    // SAFETY: forwarded contract (1 <= nt <= MMLA_TILE_TOKENS); dotprod and
    // i8mm enabled; each arm passes 2·TP − 1 <= nt <= 2·TP.
    unsafe {
        match nt {
            1 => dot_tile::<SdotLane, K>(tile, 1),
            2 => mmla_body::<K, 1>(tile, nt),
            3 | 4 => mmla_body::<K, 2>(tile, nt),
            5 | 6 => mmla_body::<K, 3>(tile, nt),
            _ => mmla_body::<K, 4>(tile, nt),
        }
    }
}

/// The packed tile of `ty` for `tier` and its tokens per call. The caller
/// (the registry) hands it out only when the CPU runs `tier`.
pub(crate) fn tile_for(ty: crate::GgmlType, tier: NeonDot) -> Option<(PackedTileFn, usize)> {
    macro_rules! pick {
        ($f:ident, $n:expr) => {{
            let f: PackedTileFn = match Block32::from_type(ty)? {
                Block32::Q4_0 => $f::<Q4_0>,
                Block32::Q4_1 => $f::<Q4_1>,
                Block32::Q5_0 => $f::<Q5_0>,
                Block32::Q5_1 => $f::<Q5_1>,
                Block32::Q8_0 => $f::<Q8_0>,
                Block32::IQ4_NL => $f::<IQ4_NL>,
            };
            Some((f, $n))
        }};
    }
    match tier {
        NeonDot::Plain => pick!(tile_plain, DOT_TILE_TOKENS),
        NeonDot::Sdot => pick!(tile_sdot, DOT_TILE_TOKENS),
        NeonDot::Smmla => pick!(tile_smmla, MMLA_TILE_TOKENS),
    }
}
