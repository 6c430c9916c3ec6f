//! AVX-512 VNNI body of the repacked 32-element-block matmul
//! (`crate::packed`): Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL and Q8_0.
//!
//! A row group is 16 weight rows. Per 32-element block the packed weights
//! hold, for each 4-element group `j` (elements `4j..4j+3`), one 64-byte
//! vector whose i32 lane `r` is the 4 *unsigned* weights of row `r`.
//! Q4_0 / Q4_1 / IQ4_NL / Q5_x store the nibbles, two groups per stored
//! vector (low nibbles are group `k`, high nibbles group `k + 4`); Q5_0 /
//! Q5_1 add one 64-byte vector of fifth bits (bit `j` of byte `4r + i` is
//! the fifth bit of element `4j + i` of row `r`), merged with one shift and
//! one `vpternlogd` per group; IQ4_NL maps each nibble through its codebook
//! with one `vpshufb` to `K[n] + 128`; Q8_0 stores `w + 128`. One `vpdpbusd`
//! against a broadcast 4-byte group of activations therefore adds 4
//! products to each of 16 rows, and a block costs 8 `vpdpbusd`, one
//! int→float conversion and one multiply-add per 16 rows and token (plus one
//! multiply-add of the mins for Q4_1 / Q5_1). The bias of the unsigned
//! weights (Q4_0 8, Q5_0 16, IQ4_NL and Q8_0 128) is removed exactly in
//! integer: each dot starts at the per-block `−bias·Σa` the driver stored
//! beside the activations. Q4_1 / Q5_1 have no bias; their per-block term
//! `m_w · s_a` (Q8_1's `s`) is added in f32 as the scalar reference does.

use core::arch::x86_64::*;

use crate::formats::iq4::KVALUES_IQ4NL_U8;
use crate::formats::layout::Block32;
use crate::formats::packed_layout::l32::*;
pub(crate) use crate::tile::PackedTile as Tile;
use crate::tile::PackedTileFn;

/// `KVALUES_IQ4NL_U8` in every 128-bit lane, for one `vpshufb` lookup of
/// 64 nibbles (shared with the packed IQ4_XS kernel).
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) fn iq4_u8_table() -> __m512i {
    // SAFETY: KVALUES_IQ4NL_U8 is 16 readable bytes.
    _mm512_broadcast_i32x4(unsafe { _mm_loadu_si128(KVALUES_IQ4NL_U8.as_ptr() as *const __m128i) })
}

/// `w | (bit j of h moved to bit 4)` in every byte: merges fifth bits stored
/// as bit planes (bit `j` of a byte belongs to vector `j`) into nibbles;
/// 16-bit shifts only spill into bits the `0x10` mask drops. Shared with
/// the packed Q5_K kernel.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
pub(crate) fn merge_fifth_bit(w: __m512i, h: __m512i, j: usize) -> __m512i {
    let hs = match j {
        0 => _mm512_slli_epi16::<4>(h),
        1 => _mm512_slli_epi16::<3>(h),
        2 => _mm512_slli_epi16::<2>(h),
        3 => _mm512_slli_epi16::<1>(h),
        4 => h,
        5 => _mm512_srli_epi16::<1>(h),
        6 => _mm512_srli_epi16::<2>(h),
        _ => _mm512_srli_epi16::<3>(h),
    };
    _mm512_ternarylogic_epi32::<0xF8>(w, hs, _mm512_set1_epi8(0x10))
}

/// Prefetch distance in bytes of packed quants (every token count: a
/// batch of a few tokens streams the weights from memory as gemv does).
const PF_DIST: usize = 4096;

/// Stores the 16 rows' results of `T` tokens at `tile.out + t·out_stride`.
///
/// # Safety
/// AVX-512 F; 16 writable floats at every `tile.out + t·out_stride`, `t < T`.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn store_tile<const T: usize>(tile: &Tile, acc: &[__m512; T]) {
    for (t, acc_t) in acc.iter().enumerate() {
        // SAFETY: per the contract.
        unsafe { _mm512_storeu_ps(tile.out.add(t * tile.out_stride), *acc_t) };
    }
}

/// Computes 16 rows × `T` tokens of one row group of type `K`.
///
/// # Safety
/// The CPU has AVX-512 F/BW/VL/VNNI and F16C (`dispatch::has_avx512_vnni`);
/// `tile.qs` has `nb · quant_bytes(K)` bytes readable, `tile.sc`
/// `nb · scale_bytes(K)`, each of the `T` activation rows (`a + t·a_stride`)
/// has `nb · act_block(K)` bytes at its start and `nb·8` bytes at `side_off`
/// readable, and `out` has 16 writable floats at every `t·out_stride`, `t < T`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn group_tile<const K: u8, const T: usize>(tile: &Tile) {
    let qb = quant_bytes(K);
    let sb = scale_bytes(K);
    let ab = act_block(K);
    // Offset of the 32 quants inside an activation block.
    let aq = ab - 32;
    let m4 = _mm512_set1_epi8(0x0F);
    let lut = iq4_u8_table();
    let mut acc = [_mm512_setzero_ps(); T];
    for b in 0..tile.nb {
        // SAFETY: block b < nb of the group's quants and scales is readable
        // (caller); unaligned loads need no alignment.
        let (wv, dw, mw) = unsafe {
            let p = tile.qs.add(b * qb);
            // The weights stream from memory: prefetch ahead (a hint,
            // never faults even past the end of the buffer). Small batches
            // need it as much as gemv: without it the loads of a block
            // wait for memory after the previous block's dot products
            // instead of overlapping them.
            let ahead = p.wrapping_add(PF_DIST);
            for l in 0..qb / 64 {
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * l) as *const i8);
            }
            let mut wv = [_mm512_setzero_si512(); 8];
            if K == Q8_0 {
                for (j, v) in wv.iter_mut().enumerate() {
                    *v = _mm512_loadu_si512(p.add(64 * j) as *const __m512i);
                }
            } else {
                for k in 0..4 {
                    let v = _mm512_loadu_si512(p.add(64 * k) as *const __m512i);
                    let lo = _mm512_and_si512(v, m4);
                    let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), m4);
                    if K == IQ4_NL {
                        wv[k] = _mm512_shuffle_epi8(lut, lo);
                        wv[k + 4] = _mm512_shuffle_epi8(lut, hi);
                    } else {
                        wv[k] = lo;
                        wv[k + 4] = hi;
                    }
                }
            }
            if K == Q5_0 || K == Q5_1 {
                // Bit j of each fifth-bit byte moved to bit 4 of group j
                // (16-bit shifts only spill into bits the 0x10 mask drops).
                let h = _mm512_loadu_si512(p.add(256) as *const __m512i);
                for (j, w) in wv.iter_mut().enumerate() {
                    *w = merge_fifth_bit(*w, h, j);
                }
            }
            let s = tile.sc.add(b * sb);
            let dw = _mm512_cvtph_ps(_mm256_loadu_si256(s as *const __m256i));
            let mw = if has_min(K) {
                _mm512_cvtph_ps(_mm256_loadu_si256(s.add(32) as *const __m256i))
            } else {
                _mm512_setzero_ps()
            };
            (wv, dw, mw)
        };
        for (t, acc_t) in acc.iter_mut().enumerate() {
            // SAFETY: token t < T has block b's activation block and its 8
            // side bytes readable (caller); all reads are unaligned.
            let (s, da, sa) = unsafe {
                let (row, da, init, sa) = tile.side32(t, b, has_min(K));
                let q = row.add(b * ab + aq);
                let mut s = _mm512_set1_epi32(init);
                for (j, w) in wv.iter().enumerate() {
                    let g = core::ptr::read_unaligned(q.add(4 * j) as *const i32);
                    s = _mm512_dpbusd_epi32(s, *w, _mm512_set1_epi32(g));
                }
                (s, da, sa)
            };
            *acc_t = _mm512_fmadd_ps(
                _mm512_cvtepi32_ps(s),
                _mm512_mul_ps(dw, _mm512_set1_ps(da)),
                *acc_t,
            );
            if has_min(K) {
                *acc_t = _mm512_fmadd_ps(mw, _mm512_set1_ps(sa), *acc_t);
            }
        }
    }
    // SAFETY: 16 floats at out + t·out_stride are writable (caller).
    unsafe { store_tile(tile, &acc) };
}

/// [`group_tile`] for `nt` tokens (1..=16) chosen at run time.
///
/// # Safety
/// As [`group_tile`] with `T = nt`; `1 <= nt <= 16`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn group_tile_n<const K: u8>(tile: &Tile, nt: usize) {
    // SAFETY: forwarded contract; each arm passes T = nt.
    unsafe { for_nt!(nt, group_tile[K](tile)) }
}

/// The packed tile of the 32-element type `ty` and its tokens per call.
pub(crate) fn tile_for(ty: crate::GgmlType) -> Option<(PackedTileFn, usize)> {
    let f: PackedTileFn = match Block32::from_type(ty)? {
        Block32::Q4_0 => group_tile_n::<Q4_0>,
        Block32::Q4_1 => group_tile_n::<Q4_1>,
        Block32::Q5_0 => group_tile_n::<Q5_0>,
        Block32::Q5_1 => group_tile_n::<Q5_1>,
        Block32::Q8_0 => group_tile_n::<Q8_0>,
        Block32::IQ4_NL => group_tile_n::<IQ4_NL>,
    };
    Some((f, tile_tokens(Block32::from_type(ty)?.code())))
}
