//! AVX2 body of the repacked matmul (`crate::packed`) for the nibble types
//! Q4_0, Q4_1, Q5_0 and Q5_1, on the same packed layout as the AVX-512 VNNI
//! kernels (`packed_avx512.rs`): each 64-byte vector is read as two 32-byte
//! halves, rows `0..8` and `8..16` of the group.
//!
//! Per 8 rows and 4-element group `j`, `vpmaddubsw` of the unsigned weights
//! (0..31) with the broadcast 4 activations gives each row two i16 pair sums;
//! four groups are added in i16 (|sum| ≤ 4 · 2 · 31 · 127 = 31 496, so
//! nothing saturates or wraps) and `vpmaddwd` with ones folds them into one
//! i32 per row. The integer dot per block is therefore exact and starts, as
//! on AVX-512, at the driver's `−bias·Σa`; blocks are combined as
//! `isum·(d_w·d_a)` (+ `m_w·s_a`) in f32.
//!
//! Written over `vnni_dot::Dot` like the Q8_0 / K-quant 256-bit kernels:
//! with AVX-VNNI (or AVX-512 VNNI + VL) each group is one `vpdpbusd`
//! instead of the `vpmaddubsw` / i16 add / `vpmaddwd` sequence; the integers
//! and so the results are the same. IQ4_NL is not here: its unsigned
//! codebook bytes (up to 255) would saturate `vpmaddubsw`.

use core::arch::x86_64::*;

use super::vnni_dot::Dot;
use crate::formats::layout::Block32;
use crate::formats::packed_layout::l32::*;
use crate::tile::{PackedTile as Tile, PackedTileFn};

/// Prefetch distance in bytes of packed quants (every token count: a
/// batch of a few tokens streams the weights from memory as gemv does).
const PF_DIST: usize = 4096;

/// Computes 16 rows × `T` tokens of one row group of type `K` (one of
/// the nibble types, see `tile_for`).
///
/// # Safety
/// The CPU has `D`'s ISA, AVX2, FMA and F16C; otherwise the contract of
/// `packed_avx512::group_tile` (`tile.qs` has `nb · quant_bytes(K)` bytes
/// readable, `tile.sc` `nb · scale_bytes(K)`, each of the `T` activation rows
/// has `nb · act_block(K)` bytes at its start and `nb·8` at `side_off`, and
/// `out` has 16 writable floats at every `t·out_stride`, `t < T`).
#[inline(always)]
unsafe fn group_body<D: Dot, const K: u8, const T: usize>(tile: &Tile) {
    // SAFETY: the caller's contract, forwarded: blocks b < nb, halves h < 2.
    unsafe {
        let qb = quant_bytes(K);
        // The weights stream from memory, for gemv and small batches
        // alike: prefetch ahead (a hint, never faults).
        let prefetch = |b: usize| {
            let ahead = tile.qs.wrapping_add(b * qb + PF_DIST);
            for l in 0..qb / 64 {
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * l) as *const i8);
            }
        };
        let mut acc = [[_mm256_setzero_ps(); T]; 2];
        if T <= 2 {
            // Both halves of a block together: every weight byte is read
            // from memory once and used at once (gemv's best order).
            for b in 0..tile.nb {
                prefetch(b);
                for (h, acc_h) in acc.iter_mut().enumerate() {
                    block_half::<D, K, T>(tile, b, h, acc_h);
                }
            }
        } else {
            // Rows 8h..8h+8 of every token per pass over the group (as the
            // 256-bit Q8_0 / K-quant kernels): one accumulator per token
            // keeps 4 tokens and the 8 weight vectors in the 16 ymm
            // registers. The second half reads the group again from L1 / L2.
            for (h, acc_h) in acc.iter_mut().enumerate() {
                for b in 0..tile.nb {
                    if h == 0 {
                        prefetch(b);
                    }
                    block_half::<D, K, T>(tile, b, h, acc_h);
                }
            }
        }
        for (h, acc_h) in acc.iter().enumerate() {
            for (t, acc_t) in acc_h.iter().enumerate() {
                // SAFETY: floats 8h..8h+8 of the 16 at out + t·out_stride
                // are writable (caller).
                _mm256_storeu_ps(tile.out.add(t * tile.out_stride + 8 * h), *acc_t);
            }
        }
    }
}

/// Adds block `b`'s contribution to rows `8h..8h+8` of the `T` tokens:
/// `acc[t] += isum·(d_w·d_a)` (+ `m_w·s_a`).
///
/// # Safety
/// As [`group_body`], with `b < nb` and `h < 2`.
#[inline(always)]
unsafe fn block_half<D: Dot, const K: u8, const T: usize>(
    tile: &Tile,
    b: usize,
    h: usize,
    acc: &mut [__m256; T],
) {
    // SAFETY: the caller's contract: the CPU has `D`'s ISA (AVX2, FMA and
    // F16C included) for every intrinsic; the pointer reads below are
    // justified where they happen.
    unsafe {
        let (qb, sb, ab) = (quant_bytes(K), scale_bytes(K), act_block(K));
        let aq = ab - 32;
        let q5 = K == Q5_0 || K == Q5_1;
        let m4 = _mm256_set1_epi8(0x0F);
        // SAFETY: block b < nb of the group's quants and scales is readable
        // (caller): the half-vectors 32h..32h+32 of its quant vectors, its
        // fifth-bit vector (Q5_x) and the 8 f16 scales of rows 8h..;
        // unaligned loads need no alignment.
        let (p, s) = (tile.qs.add(b * qb), tile.sc.add(b * sb));
        let mut wv = [_mm256_setzero_si256(); 8];
        for k in 0..4 {
            let v = _mm256_loadu_si256(p.add(64 * k + 32 * h) as *const __m256i);
            wv[k] = _mm256_and_si256(v, m4);
            wv[k + 4] = _mm256_and_si256(_mm256_srli_epi16::<4>(v), m4);
        }
        if q5 {
            // Bit j of each fifth-bit byte moved to bit 4 of group j.
            let hv = _mm256_loadu_si256(p.add(256 + 32 * h) as *const __m256i);
            for (j, w) in wv.iter_mut().enumerate() {
                *w = super::packed_avx2_k::merge_fifth_bit(*w, hv, j);
            }
        }
        let dw = _mm256_cvtph_ps(_mm_loadu_si128(s.add(16 * h) as *const __m128i));
        let mw = if has_min(K) {
            _mm256_cvtph_ps(_mm_loadu_si128(s.add(32 + 16 * h) as *const __m128i))
        } else {
            _mm256_setzero_ps()
        };
        for (t, acc_t) in acc.iter_mut().enumerate() {
            // SAFETY: token t < T has block b's activation block and its 8
            // side bytes readable (caller); all reads are unaligned.
            let (row, da, init, sa) = tile.side32(t, b, has_min(K));
            let q = row.add(b * ab + aq);
            // AVX2: 4 groups per i16 sum (|Σ| ≤ 4·2·31·127).
            let init = _mm256_set1_epi32(init);
            let isum = if q5 {
                D::dot::<8, 31>(init, &wv, q)
            } else {
                D::dot::<8, 15>(init, &wv, q)
            };
            *acc_t = _mm256_fmadd_ps(
                _mm256_cvtepi32_ps(isum),
                _mm256_mul_ps(dw, _mm256_set1_ps(da)),
                *acc_t,
            );
            if has_min(K) {
                *acc_t = _mm256_fmadd_ps(mw, _mm256_set1_ps(sa), *acc_t);
            }
        }
    }
}

/// Instantiates [`group_body`] for one [`Dot`] inside functions compiled
/// for its ISA, with the dispatch over the token count.
macro_rules! instantiate {
    ($modname:ident, $dot:ty, $features:literal) => {
        pub(crate) mod $modname {
            use super::*;

            #[target_feature(enable = $features)]
            unsafe fn group_tile<const K: u8, const T: usize>(tile: &Tile) {
                // SAFETY: forwarded contract; this function has the ISA.
                unsafe { group_body::<$dot, K, T>(tile) }
            }

            /// The tile of kind `K` for `nt` tokens (1..=`AVX2_TILE_TOKENS`).
            ///
            /// # Safety
            /// The CPU has the ISA; the contract of `group_body` with
            /// `T = nt`, `1 <= nt <= AVX2_TILE_TOKENS`.
            #[target_feature(enable = $features)]
            unsafe fn group_tile_n<const K: u8>(tile: &Tile, nt: usize) {
                // SAFETY: forwarded contract; each arm passes T = nt.
                unsafe { for_nt4!(nt, group_tile[K](tile)) }
            }

            /// This flavour's packed tile of `ty` (the nibble types) and
            /// its tokens per call.
            pub(crate) fn tile_for(ty: crate::GgmlType) -> Option<(PackedTileFn, usize)> {
                let f: PackedTileFn = match Block32::from_type(ty)? {
                    Block32::Q4_0 => group_tile_n::<Q4_0>,
                    Block32::Q4_1 => group_tile_n::<Q4_1>,
                    Block32::Q5_0 => group_tile_n::<Q5_0>,
                    Block32::Q5_1 => group_tile_n::<Q5_1>,
                    Block32::Q8_0 | Block32::IQ4_NL => return None,
                };
                Some((f, AVX2_TILE_TOKENS))
            }
        }
    };
}

for_each_dot!(instantiate);
