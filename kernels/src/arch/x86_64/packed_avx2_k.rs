//! 256-bit bodies of the repacked Q4_K / Q5_K / Q6_K matmul
//! (`crate::packed`), written once over [`Dot`] and instantiated for AVX2
//! (`vpmaddubsw`), AVX-VNNI and AVX-512 VNNI + VL (`vpdpbusd` on ymm).
//!
//! They read the AVX-512 records unchanged (`packed_k_avx512.rs` describes
//! them): each 64-byte vector of 16 rows is two 32-byte halves, rows `0..8`
//! and `8..16`. For one or two tokens a tile runs both halves of each
//! record together (every byte read from memory once and used at once,
//! the prefetches running all along); for more, once per half over the
//! group, the second pass finding the records in L1/L2 (28–110 KiB for
//! 3072–8192 columns). Each weight vector is loaded and split once and feeds both
//! sub-blocks it holds (Q4_K / Q5_K: the low nibbles are sub-block 2c, the
//! high ones 2c + 1; Q6_K: one low-bit vector and its qh vector give the
//! groups of 32-element blocks p and p + 2), one [`Dot::step`] per token
//! and group: AVX2 `vpmaddubsw` added in i16, 8 / 4 / 2 groups per partial
//! sum for Q4_K / Q5_K / Q6_K, then one `vpmaddwd` by the scale
//! ([`Dot::close`]); VNNI `vpdpbusd` (two chains for one token) and one
//! `vpmulld` per sub-block. Scales come from their bytes in one or two
//! instructions ([`Dot::scale_u8`], [`Dot::scale_pairs`]).
//!
//! Offsets and mins go through the Q8_K block's own sums, not through the
//! dots' start values, so that the scale can be folded into the AVX2
//! `vpmaddwd`: Q4_K / Q5_K subtract `Σ_p (m_2p, m_2p+1)·(pair sums)` (the
//! driver's side words: 32-element sums as i16 pairs), Q6_K subtracts
//! `32·Σ_g sc_g·bsum_g` (one `vpmaddwd` of the stored scale pairs with the
//! bsum pairs per 32 elements). Every integer equals the scalar reference's;
//! per super-block `acc += isum·(d_w·d_a) − imin·(dmin_w·d_a)` in f32.

use core::arch::x86_64::*;

use super::vnni_dot::Dot;
use crate::formats::packed_layout::k_layout::*;
use crate::tile::{PackedTile as KTile, PackedTileFn};

/// Prefetch distance in records (every token count: a batch of a few
/// tokens streams the weights from memory as gemv does).
const PF_RECS: usize = 4;

/// Tokens per register tile (16 ymm registers: 8 weight vectors, the scale,
/// `T` i32 sums and the temporaries).
pub(crate) const TILE_TOKENS: usize = 4;

/// Prefetch hint for the `part`-th of `parts` slices of the record
/// `PF_RECS` ahead (never faults).
#[inline(always)]
fn prefetch_part(rec: *const u8, len: usize, part: usize, parts: usize) {
    let ahead = rec.wrapping_add(PF_RECS * len);
    let lines = len / 64;
    for l in part * lines / parts..(part + 1) * lines / parts {
        // SAFETY: prefetch is a hint; it does not fault on any address.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(64 * l) as *const i8) };
    }
}

/// `w | (bit j of h moved to bit 4)` in every byte (16-bit shifts only
/// spill into bits the `0x10` mask drops). Shared with `packed_avx2.rs`.
///
/// # Safety
/// The CPU has AVX2.
#[inline(always)]
pub(crate) unsafe fn merge_fifth_bit(w: __m256i, h: __m256i, j: usize) -> __m256i {
    // SAFETY: AVX2 (caller).
    unsafe {
        let hs = match j {
            0 => _mm256_slli_epi16::<4>(h),
            1 => _mm256_slli_epi16::<3>(h),
            2 => _mm256_slli_epi16::<2>(h),
            3 => _mm256_slli_epi16::<1>(h),
            4 => h,
            5 => _mm256_srli_epi16::<1>(h),
            6 => _mm256_srli_epi16::<2>(h),
            _ => _mm256_srli_epi16::<3>(h),
        };
        _mm256_or_si256(w, _mm256_and_si256(hs, _mm256_set1_epi8(0x10)))
    }
}

/// Stores the `T` tokens' 8-row results of half `h`.
///
/// # Safety
/// AVX; 16 floats writable at every `out + t·out_stride`, `t < T`.
#[inline(always)]
unsafe fn store<const T: usize>(tile: &KTile, h: usize, acc: &[__m256; T]) {
    for (t, a) in acc.iter().enumerate() {
        // SAFETY: floats 8h..8h+8 of token t's 16 (caller).
        unsafe { _mm256_storeu_ps(tile.out.add(t * tile.out_stride + 8 * h), *a) };
    }
}

/// Runs `half(b, h, acc_h)` for every (super-)block `b` and half `h` of a
/// group and stores the tokens' results (shared with `packed_avx2_q8.rs`): for one or two tokens both halves
/// of a record together, so that every weight byte comes from memory once
/// and is used at once and the prefetches keep running (gemv's order); for
/// more tokens one half per pass over the group (one accumulator per token
/// fits the registers), the second pass finding the records in L1 / L2.
///
/// # Safety
/// As [`store`] (AVX; 16 floats writable at every `out + t·out_stride`),
/// and whatever `half` needs for every `b < nb`, `h < 2`.
#[inline(always)]
pub(crate) unsafe fn halves<const T: usize>(
    tile: &KTile,
    mut half: impl FnMut(usize, usize, &mut [__m256; T]),
) {
    // SAFETY: AVX (caller) for the zero vectors; the stores as `store`.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); T]; 2];
        if T <= 2 {
            for b in 0..tile.nb {
                for (h, acc_h) in acc.iter_mut().enumerate() {
                    half(b, h, acc_h);
                }
            }
        } else {
            for (h, acc_h) in acc.iter_mut().enumerate() {
                for b in 0..tile.nb {
                    half(b, h, acc_h);
                }
            }
        }
        for (h, acc_h) in acc.iter().enumerate() {
            store::<T>(tile, h, acc_h);
        }
    }
}

/// `isum[t] += sc[s]·part[t][s]` (the chains merged), then the partial
/// sums start again at zero.
///
/// # Safety
/// The CPU has `D`'s ISA.
#[inline(always)]
unsafe fn close_parts<D: Dot, const T: usize>(
    isum: &mut [__m256i; T],
    part: &mut [[[__m256i; 2]; 2]; T],
    sc: &[__m256i; 2],
    chains: usize,
) {
    // SAFETY: register arithmetic under the caller's ISA.
    unsafe {
        for (is, pt) in isum.iter_mut().zip(part.iter_mut()) {
            for (ps, sc) in pt.iter_mut().zip(sc) {
                let p = if chains == 2 {
                    D::merge(ps[0], ps[1])
                } else {
                    ps[0]
                };
                *is = D::close(*is, p, *sc);
                *ps = [_mm256_setzero_si256(); 2];
            }
        }
    }
}

/// Adds sub-blocks `2c` (low nibbles of vectors `8c..8c+8`) and `2c + 1`
/// (their high nibbles) of record `rec`, rows `8h..8h+8`, to the `T`
/// tokens' `isum`; each vector is loaded once.
///
/// # Safety
/// As [`q4_k_body`], with `b < nb`, `h < 2`, `rec` record `b`.
#[inline(always)]
unsafe fn q4_k_pair<D: Dot, const Q5: bool, const T: usize>(
    tile: &KTile,
    rec: *const u8,
    b: usize,
    h: usize,
    c: usize,
    isum: &mut [__m256i; T],
) {
    // SAFETY: as in `q4_k_body`: the caller's ISA, every pointer inside
    // record b or token t's activation block b.
    unsafe {
        let m4 = _mm256_set1_epi8(0x0F);
        let rec_len = if Q5 { Q5_K_REC } else { Q4_K_REC };
        // Steps per partial sum before it is scaled (AVX2 Q5_K: 4 of a
        // sub-block's 8 groups), and chains per partial sum (VNNI, 1 token).
        let per_close = D::max_steps(if Q5 { 31 } else { 15 }).min(8);
        let chains = if T == 1 { D::CHAINS } else { 1 };
        if h == 0 {
            prefetch_part(rec, rec_len, c, 4);
        }
        let sc = [
            D::scale_u8(rec.add(Q4K_SC + 16 * (2 * c) + 8 * h)),
            D::scale_u8(rec.add(Q4K_SC + 16 * (2 * c + 1) + 8 * h)),
        ];
        // [token][low / high][chain]
        let mut part = [[[_mm256_setzero_si256(); 2]; 2]; T];
        for kk in 0..4 {
            for (k, ch) in [(2 * kk, 0), (2 * kk + 1, chains - 1)] {
                let v = _mm256_loadu_si256(rec.add((8 * c + k) * 64 + 32 * h) as *const __m256i);
                let mut w = [
                    _mm256_and_si256(v, m4),
                    _mm256_and_si256(_mm256_srli_epi16::<4>(v), m4),
                ];
                if Q5 {
                    let hv =
                        _mm256_loadu_si256(rec.add(Q5K_QH + 64 * k + 32 * h) as *const __m256i);
                    w[0] = merge_fifth_bit(w[0], hv, 2 * c);
                    w[1] = merge_fifth_bit(w[1], hv, 2 * c + 1);
                }
                for (t, pt) in part.iter_mut().enumerate() {
                    let q = tile
                        .a
                        .add(t * tile.a_stride + b * A_BLOCK + A_QS + 64 * c + 4 * k);
                    for (s, ps) in pt.iter_mut().enumerate() {
                        ps[ch] = D::step(ps[ch], w[s], q.add(32 * s));
                    }
                }
            }
            if (2 * kk + 2) % per_close == 0 {
                close_parts::<D, T>(isum, &mut part, &sc, chains);
            }
        }
    }
}

/// 16 rows × `T` tokens of a Q4_K (`Q5 == false`) or Q5_K group.
///
/// # Safety
/// The CPU has `D`'s ISA (and AVX2, FMA, F16C); `tile.qs` has `nb` records of
/// [`Q4_K_REC`] (Q5_K: [`Q5_K_REC`]) bytes readable; each of the `T`
/// activation rows has `nb` Q8_K blocks (292 bytes) at its start and `nb·16`
/// side bytes at `side_off` readable; `out` has 16 writable floats at every
/// `t·out_stride`, `t < T`.
#[inline(always)]
unsafe fn q4_k_body<D: Dot, const Q5: bool, const T: usize>(tile: &KTile) {
    // SAFETY: the whole body runs under the caller's ISA guarantee; every
    // pointer below stays inside record b (offsets < rec_len) or token t's
    // activation row (block b, side words of b), as the caller guarantees.
    unsafe {
        let rec_len = if Q5 { Q5_K_REC } else { Q4_K_REC };
        let half = |b: usize, h: usize, acc: &mut [__m256; T]| {
            let rec = tile.qs.wrapping_add(b * rec_len);
            let mut isum = [_mm256_setzero_si256(); T];
            if Q5 {
                // Constant c: the fifth bits' shifts are immediates.
                q4_k_pair::<D, Q5, T>(tile, rec, b, h, 0, &mut isum);
                q4_k_pair::<D, Q5, T>(tile, rec, b, h, 1, &mut isum);
                q4_k_pair::<D, Q5, T>(tile, rec, b, h, 2, &mut isum);
                q4_k_pair::<D, Q5, T>(tile, rec, b, h, 3, &mut isum);
            } else {
                // A loop (smaller code measured faster for Q4_K).
                for c in 0..4 {
                    q4_k_pair::<D, Q5, T>(tile, rec, b, h, c, &mut isum);
                }
            }
            let dw = _mm256_cvtph_ps(_mm_loadu_si128(rec.add(Q4K_D + 16 * h) as *const _));
            let mw = _mm256_cvtph_ps(_mm_loadu_si128(rec.add(Q4K_DMIN + 16 * h) as *const _));
            let mut mins = [_mm256_setzero_si256(); 4];
            for (p, m) in mins.iter_mut().enumerate() {
                *m = _mm256_cvtepu8_epi16(_mm_loadu_si128(
                    rec.add(Q4K_MIN + 32 * p + 16 * h) as *const __m128i
                ));
            }
            for (t, acc_t) in acc.iter_mut().enumerate() {
                let row = tile.a.add(t * tile.a_stride);
                let da =
                    _mm256_set1_ps(core::ptr::read_unaligned(row.add(b * A_BLOCK) as *const f32));
                let side = row.add(tile.side_off + b * Q4K_SIDE);
                let mut im = _mm256_setzero_si256();
                for (p, m) in mins.iter().enumerate() {
                    let pair = core::ptr::read_unaligned(side.add(4 * p) as *const i32);
                    im = D::dot_i16(im, *m, _mm256_set1_epi32(pair));
                }
                *acc_t =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(dw, da), *acc_t);
                *acc_t = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(im), _mm256_mul_ps(mw, da), *acc_t);
            }
        };
        halves::<T>(tile, half);
    }
}

/// Adds the 32-element blocks `4n + E` and `4n + E + 2` of record `rec`,
/// rows `8h..8h+8`, to the `T` tokens' `isum`: low-bit vector `2n + E`
/// holds, per group `k`, block `4n + E` in its low nibbles (high bits
/// `2E..2E+2` of qh vector `8n + k`) and block `4n + E + 2` in its high
/// nibbles (bits `2E + 4..`); each l and qh vector is loaded once.
///
/// # Safety
/// As [`q6_k_body`], with `b < nb`, `h < 2`, `n < 2`, `rec` record `b`.
#[inline(always)]
unsafe fn q6_k_pair<D: Dot, const T: usize, const E: usize>(
    tile: &KTile,
    rec: *const u8,
    b: usize,
    h: usize,
    n: usize,
    isum: &mut [__m256i; T],
) {
    // SAFETY: as in `q6_k_body`: the caller's ISA, every pointer inside
    // record b or token t's Q8_K block b.
    unsafe {
        let m4 = _mm256_set1_epi8(0x0F);
        let m30 = _mm256_set1_epi8(0x30);
        // AVX2: 2 of a 16-element sub-block's 4 groups per partial sum.
        let per_close = D::max_steps(63).min(4);
        let chains = if T == 1 { D::CHAINS } else { 1 };
        let (e, l_vec) = (E, 2 * n + E);
        if h == 0 {
            prefetch_part(rec, Q6_K_REC, l_vec, 4);
        }
        let ps = [4 * n + e, 4 * n + e + 2];
        // Scales of the 16-element halves: sc[s][half].
        let sc = ps.map(|p| {
            D::scale_pairs(_mm256_cvtepi8_epi16(_mm_loadu_si128(
                rec.add(Q6K_SC + 32 * p + 16 * h) as *const __m128i,
            )))
        });
        // [token][block of ps][chain]
        let mut part = [[[_mm256_setzero_si256(); 2]; 2]; T];
        for kk in 0..4 {
            for (k, ch) in [(2 * kk, 0), (2 * kk + 1, chains - 1)] {
                let l =
                    _mm256_loadu_si256(rec.add((l_vec * 8 + k) * 64 + 32 * h) as *const __m256i);
                let hv = _mm256_loadu_si256(
                    rec.add(Q6K_QH + (8 * n + k) * 64 + 32 * h) as *const __m256i
                );
                let (h0, h1) = if e == 0 {
                    (_mm256_slli_epi16::<4>(hv), hv)
                } else {
                    (_mm256_slli_epi16::<2>(hv), _mm256_srli_epi16::<2>(hv))
                };
                let w = [
                    _mm256_or_si256(_mm256_and_si256(l, m4), _mm256_and_si256(h0, m30)),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16::<4>(l), m4),
                        _mm256_and_si256(h1, m30),
                    ),
                ];
                for (t, pt) in part.iter_mut().enumerate() {
                    let q = tile.a.add(t * tile.a_stride + b * A_BLOCK + A_QS + 4 * k);
                    for (s, p) in pt.iter_mut().enumerate() {
                        p[ch] = D::step(p[ch], w[s], q.add(32 * ps[s]));
                    }
                }
            }
            if (2 * kk + 2) % per_close == 0 {
                let sc = [sc[0][kk / 2], sc[1][kk / 2]];
                close_parts::<D, T>(isum, &mut part, &sc, chains);
            }
        }
    }
}

/// 16 rows × `T` tokens of a Q6_K group.
///
/// # Safety
/// As [`q4_k_body`] with records of [`Q6_K_REC`] bytes (no side bytes read).
#[inline(always)]
unsafe fn q6_k_body<D: Dot, const T: usize>(tile: &KTile) {
    // SAFETY: as in `q4_k_body`: the caller's ISA, every pointer inside
    // record b or token t's Q8_K block b.
    unsafe {
        let half = |b: usize, h: usize, acc: &mut [__m256; T]| {
            let rec = tile.qs.wrapping_add(b * Q6_K_REC);
            let mut isum = [_mm256_setzero_si256(); T];
            // Low-bit vector l = 2n + e holds, per group k, 32-element
            // blocks p = 4n + e (low nibbles, high bits 2·e.. of qh
            // vector 8n + k) and p + 2 (high nibbles, bits 2·e + 4..);
            // each l and qh vector is loaded once per pair.
            for n in 0..2 {
                q6_k_pair::<D, T, 0>(tile, rec, b, h, n, &mut isum);
                q6_k_pair::<D, T, 1>(tile, rec, b, h, n, &mut isum);
            }
            let dw = _mm256_cvtph_ps(_mm_loadu_si128(rec.add(Q6K_D + 16 * h) as *const _));
            for (t, acc_t) in acc.iter_mut().enumerate() {
                let blk = tile.a.add(t * tile.a_stride + b * A_BLOCK);
                let da = _mm256_set1_ps(core::ptr::read_unaligned(blk as *const f32));
                // Σ_g sc_g·bsum_g: the offset 32 times it is removed.
                let mut corr = _mm256_setzero_si256();
                for p in 0..8 {
                    let sp = _mm256_cvtepi8_epi16(_mm_loadu_si128(
                        rec.add(Q6K_SC + 32 * p + 16 * h) as *const __m128i,
                    ));
                    let bs = core::ptr::read_unaligned(blk.add(A_BSUMS + 4 * p) as *const i32);
                    corr = D::dot_i16(corr, sp, _mm256_set1_epi32(bs));
                }
                let is = _mm256_sub_epi32(isum[t], _mm256_slli_epi32::<5>(corr));
                *acc_t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is), _mm256_mul_ps(dw, da), *acc_t);
            }
        };
        halves::<T>(tile, half);
    }
}

/// Instantiates the bodies for one [`Dot`] inside functions compiled for
/// its ISA, and their dispatch over kind and token count.
macro_rules! instantiate {
    ($modname:ident, $dot:ty, $features:literal) => {
        pub(crate) mod $modname {
            use super::*;

            #[target_feature(enable = $features)]
            unsafe fn q4_k<const Q5: bool, const T: usize>(tile: &KTile) {
                // SAFETY: forwarded contract; this function has the ISA.
                unsafe { q4_k_body::<$dot, Q5, T>(tile) }
            }

            #[target_feature(enable = $features)]
            unsafe fn q6_k<const T: usize>(tile: &KTile) {
                // SAFETY: forwarded contract; this function has the ISA.
                unsafe { q6_k_body::<$dot, T>(tile) }
            }

            /// Tile functions (see [`PackedTileFn`]) for `nt` tokens.
            ///
            /// # Safety
            /// The CPU has the ISA; the contract of the type's body with
            /// `T = nt`, `1 <= nt <= TILE_TOKENS`.
            #[target_feature(enable = $features)]
            unsafe fn q4_k_n(tile: &KTile, nt: usize) {
                // SAFETY: forwarded contract; each arm passes T = nt.
                unsafe { for_nt4!(nt, q4_k[false](tile)) }
            }

            #[target_feature(enable = $features)]
            unsafe fn q5_k_n(tile: &KTile, nt: usize) {
                // SAFETY: forwarded contract; each arm passes T = nt.
                unsafe { for_nt4!(nt, q4_k[true](tile)) }
            }

            #[target_feature(enable = $features)]
            unsafe fn q6_k_n(tile: &KTile, nt: usize) {
                // SAFETY: forwarded contract; each arm passes T = nt.
                unsafe { for_nt4!(nt, q6_k[](tile)) }
            }

            /// This flavour's tile of `ty` (Q4_K, Q5_K or Q6_K) and its
            /// tokens per call.
            pub(crate) fn tile_for(ty: crate::GgmlType) -> Option<(PackedTileFn, usize)> {
                let f: PackedTileFn = match ty {
                    crate::GgmlType::Q4_K => q4_k_n,
                    crate::GgmlType::Q5_K => q5_k_n,
                    crate::GgmlType::Q6_K => q6_k_n,
                    _ => return None,
                };
                Some((f, TILE_TOKENS))
            }
        }
    };
}

for_each_dot!(instantiate);
