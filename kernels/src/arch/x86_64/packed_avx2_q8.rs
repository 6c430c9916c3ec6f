//! 256-bit body of the repacked Q8_0 matmul (`crate::packed`), written once
//! over [`Dot`] for AVX2, AVX-VNNI and AVX-512 VNNI + VL.
//!
//! Reads the AVX-512 layout unchanged (`packed_avx512.rs`: per group and
//! block 8 vectors of 64 bytes holding `w + 128`, lane `r` = 4 weights of
//! row `r`; the 16 rows' f16 `d` in the scale section), each 64-byte vector
//! as two 8-row halves: for one or two tokens both halves of a block
//! together, for more one pass over the blocks per half
//! (`packed_avx2_k::halves`). VNNI dots the
//! stored `w + 128` with one `vpdpbusd` per group, starting at the driver's
//! `−128·Σa`; AVX2 recovers `w` (one xor, amortized over the tile's tokens)
//! and dots signed × signed by sign transfer (`vpsignb`, `vpabsb`,
//! `vpmaddubsw`, `vpmaddwd`), since `w + 128` (up to 255) would saturate
//! `vpmaddubsw`. Both integer dots are exact; per block
//! `acc += isum·(d_w·d_a)` as on AVX-512.

use core::arch::x86_64::*;

use super::packed_avx2_k::halves;
use super::vnni_dot::Dot;
use crate::formats::packed_layout::l32::{act_block, quant_bytes, scale_bytes, Q8_0};
use crate::tile::{PackedTile as Tile, PackedTileFn};

/// Tokens per register tile.
pub(crate) const TILE_TOKENS: usize = 4;

/// Prefetch distance in bytes of packed quants (every token count: a
/// batch of a few tokens streams the weights from memory as gemv does).
const PF_DIST: usize = 4096;

/// 16 rows × `T` tokens of a Q8_0 group.
///
/// # Safety
/// The CPU has `D`'s ISA (and AVX2, FMA, F16C); the contract of
/// `packed_avx512::group_tile` for `K = Q8_0` otherwise.
#[inline(always)]
unsafe fn q8_0_body<D: Dot, const T: usize>(tile: &Tile) {
    let (qb, sb, ab) = (quant_bytes(Q8_0), scale_bytes(Q8_0), act_block(Q8_0));
    // SAFETY: the caller's ISA; block b's quant vectors and scales lie in
    // the group (b < nb), token t's block b and its 8 side bytes in its row.
    unsafe {
        let half = |b: usize, h: usize, acc: &mut [__m256; T]| {
            let p = tile.qs.add(b * qb);
            if h == 0 {
                let ahead = p.wrapping_add(PF_DIST);
                for l in 0..qb / 64 {
                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * l) as *const i8);
                }
            }
            let mut u = [_mm256_setzero_si256(); 8];
            for (k, v) in u.iter_mut().enumerate() {
                *v = _mm256_loadu_si256(p.add(64 * k + 32 * h) as *const __m256i);
            }
            let dw = _mm256_cvtph_ps(_mm_loadu_si128(
                tile.sc.add(b * sb + 16 * h) as *const __m128i
            ));
            for (t, acc_t) in acc.iter_mut().enumerate() {
                let row = tile.a.add(t * tile.a_stride);
                let side = row.add(tile.side_off + b * 8);
                let da = core::ptr::read_unaligned(side as *const f32);
                let init = if D::Q8_BIASED {
                    core::ptr::read_unaligned(side.add(4) as *const i32)
                } else {
                    0
                };
                let isum = D::dot_q8(_mm256_set1_epi32(init), &u, row.add(b * ab + 2));
                *acc_t = _mm256_fmadd_ps(
                    _mm256_cvtepi32_ps(isum),
                    _mm256_mul_ps(dw, _mm256_set1_ps(da)),
                    *acc_t,
                );
            }
        };
        halves::<T>(tile, half);
    }
}

/// Instantiates the body for one [`Dot`] inside functions compiled for its
/// ISA, with the dispatch over the token count.
macro_rules! instantiate {
    ($modname:ident, $dot:ty, $features:literal) => {
        pub(crate) mod $modname {
            use super::*;

            #[target_feature(enable = $features)]
            unsafe fn q8_0<const T: usize>(tile: &Tile) {
                // SAFETY: forwarded contract; this function has the ISA.
                unsafe { q8_0_body::<$dot, T>(tile) }
            }

            /// The Q8_0 tile (see [`PackedTileFn`]) for `nt` tokens.
            ///
            /// # Safety
            /// The CPU has the ISA; the contract of the body with `T = nt`,
            /// `1 <= nt <= TILE_TOKENS`.
            #[target_feature(enable = $features)]
            unsafe fn tile_n(tile: &Tile, nt: usize) {
                // SAFETY: forwarded contract; each arm passes T = nt.
                unsafe { for_nt4!(nt, q8_0[](tile)) }
            }

            /// This flavour's Q8_0 tile and its tokens per call.
            pub(crate) fn tile_for(ty: crate::GgmlType) -> Option<(PackedTileFn, usize)> {
                (ty == crate::GgmlType::Q8_0).then_some((tile_n as PackedTileFn, TILE_TOKENS))
            }
        }
    };
}

for_each_dot!(instantiate);
