//! 256-bit bodies of the repacked Q3_K and Q2_K matmul (`crate::packed`),
//! written once over [`Dot`] and instantiated for AVX2 (`vpmaddubsw`),
//! AVX-VNNI and AVX-512 VNNI + VL (`vpdpbusd` on ymm), as the Q4_K..Q6_K
//! ones in `packed_avx2_k.rs`; with them the IQ4_XS / IQ4_NL bodies of
//! `packed_avx2_iq.rs` (one `tile_for` for the four types).
//!
//! They read the AVX-512 records unchanged (`packed_k_avx512.rs` describes
//! them): each 64-byte vector of 16 rows is two 32-byte halves, rows `0..8`
//! and `8..16`, and a tile runs the super-blocks once per half (the second
//! pass finds the group's records in L1/L2: 21–56 KiB for 3072–8192
//! columns).
//!
//! The AVX-512 kernels keep Q2_K's fields in place (`4^j·q`) and Q3_K's odd
//! sub-blocks as `8·u`, and pack two sub-blocks' dots into i16 halves for
//! one `vpdpwssd`. Here every quant is decoded to its small unsigned value
//! (Q2_K `q` in 0..=3, Q3_K `u = q + 4` in 0..=7: one shift and one and per
//! vector, amortized over the tile's tokens) so that the AVX2 `vpmaddubsw`
//! can sum a whole 16-element sub-block in i16 without saturating: its
//! lanes are `u8 × i8` pairs, so `|Σ| ≤ 4 groups · 2 · wmax · 127` = 3 048
//! (Q2_K) / 7 112 (Q3_K) < 2^15. One `vpmaddwd` then applies the sub-block's
//! scale and widens ([`Dot::dot_scaled`]; VNNI: 4 `vpdpbusd` and one
//! `vpmulld`). Per sub-block and token and 8 rows that is 4 `vpmaddubsw`,
//! 3 i16 adds, one `vpmaddwd` and one i32 add.
//!
//! Offsets and mins go through the Q8_K block's own 16-element sums, per
//! token and super-block: Q3_K subtracts `4·Σ_g sc_g·bsum_g` (8 `vpmaddwd`
//! of the scale pairs, already i16 halves in the record, with the bsum
//! pairs), Q2_K's mins are `Σ_g m_g·bsum_g` the same way. Every integer
//! equals the scalar reference's; per super-block `acc += isum·(d_w·d_a)`
//! (Q2_K: `− imin·(dmin_w·d_a)`) in f32.

use core::arch::x86_64::*;

use super::vnni_dot::Dot;
use crate::formats::packed_layout::k_layout::*;
use crate::tile::{PackedTile as KTile, PackedTileFn};

/// Prefetch distance in records (every token count: a batch of a few
/// tokens streams the weights from memory as gemv does).
const PF_RECS: usize = 4;

/// Tokens per register tile (16 ymm registers: 8 weight vectors, the two
/// scales, `T` i32 sums and the temporaries).
pub(crate) const TILE_TOKENS: usize = 4;

/// Prefetch hint for the `part`-th of `parts` slices of the record
/// `PF_RECS` ahead (never faults). Shared with `packed_avx2_iq.rs`.
#[inline(always)]
pub(crate) fn prefetch_part(rec: *const u8, len: usize, part: usize, parts: usize) {
    let ahead = rec.wrapping_add(PF_RECS * len);
    let lines = len / 64;
    for l in part * lines / parts..(part + 1) * lines / parts {
        // SAFETY: prefetch is a hint; it does not fault on any address.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(64 * l) as *const i8) };
    }
}

/// Stores the `T` tokens' 8-row results of half `h`. Shared with
/// `packed_avx2_iq.rs`.
///
/// # Safety
/// AVX; 16 floats writable at every `out + t·out_stride`, `t < T`.
#[inline(always)]
pub(crate) unsafe fn store<const T: usize>(tile: &KTile, h: usize, acc: &[__m256; T]) {
    for (t, a) in acc.iter().enumerate() {
        // SAFETY: floats 8h..8h+8 of token t's 16 (caller).
        unsafe { _mm256_storeu_ps(tile.out.add(t * tile.out_stride + 8 * h), *a) };
    }
}

/// The 4 bytes at `p` in every i32 lane.
///
/// # Safety
/// 4 bytes at `p` are readable; AVX.
#[inline(always)]
pub(crate) unsafe fn bcast4(p: *const u8) -> __m256i {
    // SAFETY: the caller's contract; an unaligned read.
    unsafe { _mm256_set1_epi32(core::ptr::read_unaligned(p as *const i32)) }
}

/// Token `t`'s Q8_K scale `d_a` of block `b`, in every lane.
///
/// # Safety
/// Token `t`'s block `b` is readable; AVX.
#[inline(always)]
pub(crate) unsafe fn act_d(tile: &KTile, t: usize, b: usize) -> __m256 {
    // SAFETY: the caller's contract; an unaligned read of the block's f32.
    unsafe {
        let blk = tile.a.add(t * tile.a_stride + b * A_BLOCK);
        _mm256_set1_ps(core::ptr::read_unaligned(blk as *const f32))
    }
}

/// `Σ_p x[p]·(bsum_2p, bsum_2p+1)` per i32 lane: the i16 pairs `x[p]`
/// (a scale or min pair per row) against token `t`'s block `b` bsum pairs.
///
/// # Safety
/// `D`'s ISA; token `t`'s block `b` is readable.
#[inline(always)]
unsafe fn bsum_dot<D: Dot>(tile: &KTile, t: usize, b: usize, x: &[__m256i; 8]) -> __m256i {
    // SAFETY: the caller's contract: the 32 bsum bytes lie in block b.
    unsafe {
        let bs = tile.a.add(t * tile.a_stride + b * A_BLOCK + A_BSUMS);
        let mut s = _mm256_setzero_si256();
        for (p, xp) in x.iter().enumerate() {
            s = D::dot_i16(s, *xp, bcast4(bs.add(4 * p)));
        }
        s
    }
}

/// The f32 `d` of 8 rows from the top two bits of the bytes of the scale
/// half-vectors `v0`, `v1` (lane byte `c` holds bits `4c..4c+2` of the
/// row's f16 `d` in `v0`, `4c+2..4c+4` in `v1`; `packed::pack_scales6`).
/// Shared with `packed_avx2_iq.rs` (IQ4_XS).
///
/// # Safety
/// AVX2 and F16C.
#[inline(always)]
pub(crate) unsafe fn d_from_scale_tops(v0: __m256i, v1: __m256i) -> __m256 {
    // SAFETY: AVX2 and F16C (caller).
    unsafe {
        // Byte c: bits 0..2 from v0's bits 6..8, bits 2..4 from v1's.
        let lo = _mm256_and_si256(_mm256_srli_epi32::<6>(v0), _mm256_set1_epi8(0x03));
        let hi = _mm256_and_si256(_mm256_srli_epi32::<4>(v1), _mm256_set1_epi8(0x0C));
        let nib = _mm256_or_si256(lo, hi);
        // Nibbles → bytes (n0 + 16·n1) → the 16-bit d in each i32 lane
        // (< 2^16, so the unsigned saturating pack keeps it).
        let bytes = _mm256_maddubs_epi16(nib, _mm256_set1_epi16(0x1001));
        let d = _mm256_madd_epi16(bytes, _mm256_set1_epi32(0x0100_0001));
        let packed = _mm256_permute4x64_epi64::<0x08>(_mm256_packus_epi32(d, d));
        _mm256_cvtph_ps(_mm256_castsi256_si128(packed))
    }
}

/// 16 rows × `T` tokens of a Q3_K group.
///
/// # Safety
/// The CPU has `D`'s ISA (and AVX2, FMA, F16C); `tile.qs` has `nb` records of
/// [`Q3_K_REC`] bytes readable; each of the `T` activation rows has `nb` Q8_K
/// blocks (292 bytes) at its start readable; `out` has 16 writable floats at
/// every `t·out_stride`, `t < T`.
#[inline(always)]
pub(crate) unsafe fn q3_k_body<D: Dot, const T: usize>(tile: &KTile) {
    // SAFETY: the whole body runs under the caller's ISA guarantee; every
    // pointer below stays inside record b (offsets < Q3_K_REC) or token t's
    // Q8_K block b, as the caller guarantees.
    unsafe {
        let m3 = _mm256_set1_epi8(3);
        let m4 = _mm256_set1_epi8(4);
        let m7 = _mm256_set1_epi8(7);
        for h in 0..2 {
            let mut acc = [_mm256_setzero_ps(); T];
            for b in 0..tile.nb {
                let rec = tile.qs.wrapping_add(b * Q3_K_REC);
                let mut isum = [_mm256_setzero_si256(); T];
                // Scale pairs (sc_2p, sc_2p+1) as the i16 halves of lane r.
                let mut pairs = [_mm256_setzero_si256(); 8];
                for (p, pair) in pairs.iter_mut().enumerate() {
                    if h == 0 {
                        prefetch_part(rec, Q3_K_REC, p, 8);
                    }
                    let v = rec.add(64 * 3 * p + 32 * h);
                    let x = _mm256_loadu_si256(v as *const __m256i);
                    let y = _mm256_loadu_si256(v.add(64) as *const __m256i);
                    let z = _mm256_loadu_si256(v.add(128) as *const __m256i);
                    let sv =
                        _mm256_loadu_si256(rec.add(Q3K_SC + 64 * (p / 2) + 32 * h) as *const _);
                    // Even pairs: the low 6 bits of each i16 half's low
                    // byte; odd pairs: of its high byte (sign-extended).
                    *pair = if p % 2 == 0 {
                        _mm256_srai_epi16::<10>(_mm256_slli_epi16::<10>(sv))
                    } else {
                        _mm256_srai_epi16::<10>(_mm256_slli_epi16::<2>(sv))
                    };
                    let sc = [
                        D::scale(_mm256_srai_epi32::<16>(_mm256_slli_epi32::<16>(*pair))),
                        D::scale(_mm256_srai_epi32::<16>(*pair)),
                    ];
                    // u = q + 4 of sub-block 2p (a_k) and 2p+1 (b_k): x =
                    // a0 | b0<<3 | (a3&3)<<6, y = a1 | b1<<3 | (b3&3)<<6,
                    // z = a2 | b2<<3 | (a3>>2)<<6 | (b3>>2)<<7 (16-bit
                    // shifts only bring the next byte's bits into bits the
                    // masks drop).
                    let wa = [
                        _mm256_and_si256(x, m7),
                        _mm256_and_si256(y, m7),
                        _mm256_and_si256(z, m7),
                        _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16::<6>(x), m3),
                            _mm256_and_si256(_mm256_srli_epi16::<4>(z), m4),
                        ),
                    ];
                    let wb = [
                        _mm256_and_si256(_mm256_srli_epi16::<3>(x), m7),
                        _mm256_and_si256(_mm256_srli_epi16::<3>(y), m7),
                        _mm256_and_si256(_mm256_srli_epi16::<3>(z), m7),
                        _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16::<6>(y), m3),
                            _mm256_and_si256(_mm256_srli_epi16::<5>(z), m4),
                        ),
                    ];
                    for (t, is) in isum.iter_mut().enumerate() {
                        let q = tile.a.add(t * tile.a_stride + b * A_BLOCK + A_QS + 32 * p);
                        *is = D::dot_scaled::<4, 7>(*is, &wa, q, sc[0]);
                        *is = D::dot_scaled::<4, 7>(*is, &wb, q.add(16), sc[1]);
                    }
                }
                let dw = d_from_scale_tops(
                    _mm256_loadu_si256(rec.add(Q3K_SC + 32 * h) as *const _),
                    _mm256_loadu_si256(rec.add(Q3K_SC + 64 + 32 * h) as *const _),
                );
                for (t, acc_t) in acc.iter_mut().enumerate() {
                    // The offset: Σ_g q·a = Σ_g u·a − 4·bsum_g.
                    let corr = bsum_dot::<D>(tile, t, b, &pairs);
                    let is = _mm256_sub_epi32(isum[t], _mm256_slli_epi32::<2>(corr));
                    let dd = _mm256_mul_ps(dw, act_d(tile, t, b));
                    *acc_t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is), dd, *acc_t);
                }
            }
            store::<T>(tile, h, &acc);
        }
    }
}

/// 16 rows × `T` tokens of a Q2_K group.
///
/// # Safety
/// As [`q3_k_body`] with records of [`Q2_K_REC`] bytes.
#[inline(always)]
pub(crate) unsafe fn q2_k_body<D: Dot, const T: usize>(tile: &KTile) {
    // SAFETY: as in `q3_k_body`: the caller's ISA, every pointer inside
    // record b or token t's Q8_K block b.
    unsafe {
        let m3 = _mm256_set1_epi8(3);
        let m15 = _mm256_set1_epi16(0x0F);
        let low16 = _mm256_set1_epi32(0xFFFF);
        for h in 0..2 {
            let mut acc = [_mm256_setzero_ps(); T];
            for b in 0..tile.nb {
                let rec = tile.qs.wrapping_add(b * Q2_K_REC);
                let mut isum = [_mm256_setzero_si256(); T];
                // Pair p: sub-blocks 2p, 2p+1 = 8n + 2j + (0, 1), bits
                // 2j..2j+2 of quant vectors 8n..8n+4 and 8n+4..8n+8.
                for p in 0..8 {
                    if h == 0 {
                        prefetch_part(rec, Q2_K_REC, p, 8);
                    }
                    let (n, j) = (p / 4, p % 4);
                    let mut wv = [_mm256_setzero_si256(); 8];
                    for (k, w) in wv.iter_mut().enumerate() {
                        let v = _mm256_loadu_si256(rec.add(64 * (8 * n + k) + 32 * h) as *const _);
                        // Field j down to bits 0..2 (16-bit shifts: the
                        // next byte's bits land above the mask).
                        let v = match j {
                            0 => v,
                            1 => _mm256_srli_epi16::<2>(v),
                            2 => _mm256_srli_epi16::<4>(v),
                            _ => _mm256_srli_epi16::<6>(v),
                        };
                        *w = _mm256_and_si256(v, m3);
                    }
                    // Scales of sub-blocks (2p, 2p+1) as i16 halves: the low
                    // nibbles of the lane's bytes (0, 2) or (1, 3).
                    let sv =
                        _mm256_loadu_si256(rec.add(Q2K_SC + 64 * (p / 2) + 32 * h) as *const _);
                    let sp = if p % 2 == 0 {
                        _mm256_and_si256(sv, m15)
                    } else {
                        _mm256_and_si256(_mm256_srli_epi16::<8>(sv), m15)
                    };
                    let sc = [
                        D::scale(_mm256_and_si256(sp, low16)),
                        D::scale(_mm256_srli_epi32::<16>(sp)),
                    ];
                    let w0 = [wv[0], wv[1], wv[2], wv[3]];
                    let w1 = [wv[4], wv[5], wv[6], wv[7]];
                    for (t, is) in isum.iter_mut().enumerate() {
                        let q = tile.a.add(t * tile.a_stride + b * A_BLOCK + A_QS + 32 * p);
                        *is = D::dot_scaled::<4, 3>(*is, &w0, q, sc[0]);
                        *is = D::dot_scaled::<4, 3>(*is, &w1, q.add(16), sc[1]);
                    }
                }
                let dw = _mm256_cvtph_ps(_mm_loadu_si128(rec.add(Q2K_D + 16 * h) as *const _));
                let mw = _mm256_cvtph_ps(_mm_loadu_si128(rec.add(Q2K_DMIN + 16 * h) as *const _));
                // Min pairs (4q, 4q+1) and (4q+2, 4q+3) as i16 halves: the
                // high nibbles of the lane's bytes (0, 2) and (1, 3).
                let mut mins = [_mm256_setzero_si256(); 8];
                for q in 0..4 {
                    let sv = _mm256_loadu_si256(rec.add(Q2K_SC + 64 * q + 32 * h) as *const _);
                    mins[2 * q] = _mm256_and_si256(_mm256_srli_epi16::<4>(sv), m15);
                    mins[2 * q + 1] = _mm256_srli_epi16::<12>(sv);
                }
                for (t, acc_t) in acc.iter_mut().enumerate() {
                    let im = bsum_dot::<D>(tile, t, b, &mins);
                    let da = act_d(tile, t, b);
                    *acc_t =
                        _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(dw, da), *acc_t);
                    *acc_t =
                        _mm256_fnmadd_ps(_mm256_cvtepi32_ps(im), _mm256_mul_ps(mw, da), *acc_t);
                }
            }
            store::<T>(tile, h, &acc);
        }
    }
}

/// `tile!(name_n => body, features, dot)`: `name_n(tile, nt)` runs
/// `body::<dot, nt>` inside a function compiled for `features`.
macro_rules! tile {
    ($name:ident => $body:ident, $features:literal, $dot:ty) => {
        /// Tile function (see [`PackedTileFn`]) for `nt` tokens.
        ///
        /// # Safety
        /// The CPU has the ISA; the contract of the body with `T = nt`,
        /// `1 <= nt <= TILE_TOKENS`.
        #[target_feature(enable = $features)]
        unsafe fn $name(tile: &KTile, nt: usize) {
            #[target_feature(enable = $features)]
            unsafe fn one<const T: usize>(tile: &KTile) {
                // SAFETY: forwarded contract; this function has the ISA.
                unsafe { $body::<$dot, T>(tile) }
            }
            // SAFETY: forwarded contract; each arm passes T = nt.
            unsafe { for_nt4!(nt, one[](tile)) }
        }
    };
}

/// Instantiates the Q3_K / Q2_K bodies and the IQ4_XS / IQ4_NL ones of
/// `packed_avx2_iq.rs` for one [`Dot`] inside functions compiled for its
/// ISA, with the dispatch over the token count.
macro_rules! instantiate {
    ($modname:ident, $dot:ty, $features:literal) => {
        pub(crate) mod $modname {
            use super::super::packed_avx2_iq::{iq4_nl_body, iq4_xs_body};
            use super::*;

            tile!(q3_k_n => q3_k_body, $features, $dot);
            tile!(q2_k_n => q2_k_body, $features, $dot);
            tile!(iq4_xs_n => iq4_xs_body, $features, $dot);
            tile!(iq4_nl_n => iq4_nl_body, $features, $dot);

            /// This flavour's tile of `ty` (Q3_K, Q2_K, IQ4_XS or IQ4_NL)
            /// and its tokens per call.
            pub(crate) fn tile_for(ty: crate::GgmlType) -> Option<(PackedTileFn, usize)> {
                let f: PackedTileFn = match ty {
                    crate::GgmlType::Q3_K => q3_k_n,
                    crate::GgmlType::Q2_K => q2_k_n,
                    crate::GgmlType::IQ4_XS => iq4_xs_n,
                    crate::GgmlType::IQ4_NL => iq4_nl_n,
                    _ => return None,
                };
                Some((f, TILE_TOKENS))
            }
        }
    };
}

for_each_dot!(instantiate);
