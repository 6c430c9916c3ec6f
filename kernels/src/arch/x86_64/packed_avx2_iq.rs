//! 256-bit bodies of the repacked IQ4_XS and IQ4_NL matmul
//! (`crate::packed`), written once over [`Codebook`] (a [`Dot`] with the
//! 16-entry codebook lookup) and instantiated for AVX2, AVX-VNNI and
//! AVX-512 VNNI + VL in `packed_avx2_k2.rs`. They read the AVX-512 layouts unchanged (IQ4_XS:
//! `packed_k_avx512.rs`; IQ4_NL: `packed_avx512.rs`, the Q4_0 layout), each
//! 64-byte vector as two 8-row halves.
//!
//! The codebook values `K[n]` (−127..=113) do not fit the unsigned operand
//! of `vpmaddubsw` / `vpdpbusd`:
//!
//! * VNNI ([`AvxVnni`], [`Avx512Vl`]): one `vpshufb` maps a nibble to
//!   `K[n] + 128` (1..=241) and `vpdpbusd` dots it exactly, starting from the
//!   driver's side word `−128·Σa` (as the AVX-512 kernels do), then IQ4_XS
//!   multiplies by the sub-block scale (`vpmulld`).
//! * AVX2 ([`Maddubs`]): `K + 128` would saturate `vpmaddubsw` (2·241·127 >
//!   2^15), so one `vpshufb` gives the signed `K[n]` and the sign moves to
//!   the activations: `vpmaddubsw(|K|, sign(a, K))` (`vpabsb` once per
//!   weight vector, shared by the tile's tokens; `vpsignb` per token). Each
//!   i16 lane is `|K_i|·a_i + |K_j|·a_j` with |K| ≤ 127 and the Q8_0 / Q8_K
//!   activations in −127..=127 (both quantizers clamp to ±127, and `−128`,
//!   which `vpsignb` cannot negate, never occurs), so ≤ 2·127·127 = 32 258
//!   < 2^15: exact, but two groups could overflow i16, so every group is
//!   widened on its own by a `vpmaddwd` (with the sub-block scale for
//!   IQ4_XS, with ones for IQ4_NL). No offset to remove.
//!
//! Per 4-element group, 8 rows and token: VNNI 1 `vpdpbusd`; AVX2 `vpsignb`,
//! `vpmaddubsw`, `vpmaddwd`, `vpaddd`. Both give the exact integer dot of
//! the scalar reference, so results are bit-identical across flavours.
//! Blocks are combined as `isum·(d_w·d_a)` in f32.

use core::arch::x86_64::*;

use super::packed_avx2_k2::{act_d, bcast4, d_from_scale_tops, prefetch_part, store};
use super::vnni_dot::{Avx512Vl, AvxVnni, Dot, Maddubs};
use crate::formats::iq4::{KVALUES_IQ4NL, KVALUES_IQ4NL_U8};
use crate::formats::packed_layout::k_layout::*;
use crate::formats::packed_layout::l32;
use crate::tile::PackedTile as Tile;

/// The codebook dot of one [`Dot`] flavour. `w` are the looked-up weight
/// vectors (from [`Codebook::table`]), lane `r` = 4 weights of row `r`.
pub(crate) trait Codebook: Dot {
    /// The 16 bytes `vpshufb` maps nibbles through: `K[n] + 128` (VNNI) or
    /// the signed `K[n]` (AVX2), in each 128-bit lane.
    ///
    /// # Safety
    /// The CPU has the implementation's ISA.
    unsafe fn table() -> __m256i;

    /// `Σ_{k<N} Σ_{i<4} K[k][4r + i]·a[4k + i]` per lane `r`, given
    /// `init = −128·Σ_{i<4N} a[i]` (used by the biased VNNI dot only).
    ///
    /// # Safety
    /// The CPU has the implementation's ISA; `4N` bytes at `a` are readable.
    unsafe fn cb_dot<const N: usize>(init: i32, w: &[__m256i; N], a: *const u8) -> __m256i;

    /// `acc + sc·`[`Codebook::cb_dot`] with `sc` from [`Dot::scale`]
    /// (`|sc| ≤ 32`).
    ///
    /// # Safety
    /// As [`Codebook::cb_dot`].
    unsafe fn cb_dot_scaled<const N: usize>(
        acc: __m256i,
        init: i32,
        w: &[__m256i; N],
        a: *const u8,
        sc: __m256i,
    ) -> __m256i;
}

/// The signed codebook's bytes.
const KVALUES_I8: [u8; 16] = {
    let mut t = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        t[i] = KVALUES_IQ4NL[i] as u8;
        i += 1;
    }
    t
};

/// The 16 bytes at `t` in both 128-bit lanes.
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn lanes16(t: &[u8; 16]) -> __m256i {
    // SAFETY: t is 16 readable bytes; AVX2 (caller).
    unsafe { _mm256_broadcastsi128_si256(_mm_loadu_si128(t.as_ptr() as *const __m128i)) }
}

impl Codebook for Maddubs {
    #[inline(always)]
    unsafe fn table() -> __m256i {
        // SAFETY: AVX2 (caller); i8 and u8 have the same layout.
        unsafe { lanes16(&KVALUES_I8) }
    }

    #[inline(always)]
    unsafe fn cb_dot<const N: usize>(_init: i32, w: &[__m256i; N], a: *const u8) -> __m256i {
        // SAFETY: forwarded contract; unit i16 scales.
        unsafe { Self::cb_dot_scaled(_mm256_setzero_si256(), 0, w, a, _mm256_set1_epi16(1)) }
    }

    #[inline(always)]
    unsafe fn cb_dot_scaled<const N: usize>(
        acc: __m256i,
        _init: i32,
        w: &[__m256i; N],
        a: *const u8,
        sc: __m256i,
    ) -> __m256i {
        // SAFETY: AVX2 (caller); 4 bytes at a + 4k for k < N. Exact: see
        // the module docs (one group per i16 sum, |lane| ≤ 2·127·127).
        unsafe {
            let mut acc = acc;
            for (k, wk) in w.iter().enumerate() {
                let sa = _mm256_sign_epi8(bcast4(a.add(4 * k)), *wk);
                let p = _mm256_maddubs_epi16(_mm256_abs_epi8(*wk), sa);
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, sc));
            }
            acc
        }
    }
}

/// The biased VNNI codebook dot for the two `vpdpbusd` flavours.
macro_rules! vnni_codebook {
    ($($t:ty),*) => {$(
        impl Codebook for $t {
            #[inline(always)]
            unsafe fn table() -> __m256i {
                // SAFETY: the ISA includes AVX2 (caller).
                unsafe { lanes16(&KVALUES_IQ4NL_U8) }
            }

            #[inline(always)]
            unsafe fn cb_dot<const N: usize>(init: i32, w: &[__m256i; N], a: *const u8) -> __m256i {
                // SAFETY: forwarded contract. Σ (K + 128)·a − 128·Σa.
                unsafe { Self::dot::<N, 255>(_mm256_set1_epi32(init), w, a) }
            }

            #[inline(always)]
            unsafe fn cb_dot_scaled<const N: usize>(
                acc: __m256i,
                init: i32,
                w: &[__m256i; N],
                a: *const u8,
                sc: __m256i,
            ) -> __m256i {
                // SAFETY: forwarded contract.
                unsafe { _mm256_add_epi32(acc, _mm256_mullo_epi32(Self::cb_dot(init, w, a), sc)) }
            }
        }
    )*};
}

vnni_codebook!(AvxVnni, Avx512Vl);

/// Looks up the 8 weight vectors of 4 stored nibble half-vectors `v`
/// (low nibbles: groups `0..4`, high nibbles: groups `4..8`).
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn lookup(table: __m256i, v: &[__m256i; 4]) -> [__m256i; 8] {
    // SAFETY: AVX2 (caller).
    unsafe {
        let m4 = _mm256_set1_epi8(0x0F);
        let mut w = [_mm256_setzero_si256(); 8];
        for (k, vk) in v.iter().enumerate() {
            w[k] = _mm256_shuffle_epi8(table, _mm256_and_si256(*vk, m4));
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(*vk), m4);
            w[k + 4] = _mm256_shuffle_epi8(table, hi);
        }
        w
    }
}

/// 16 rows × `T` tokens of an IQ4_XS group.
///
/// # Safety
/// The CPU has `D`'s ISA (and AVX2, FMA, F16C); `tile.qs` has `nb` records of
/// [`IQ4_XS_REC`] bytes readable; each of the `T` activation rows has `nb`
/// Q8_K blocks at its start and `nb·32` side bytes at `side_off` readable;
/// `out` has 16 writable floats at every `t·out_stride`, `t < T`.
#[inline(always)]
pub(crate) unsafe fn iq4_xs_body<D: Codebook, const T: usize>(tile: &Tile) {
    // SAFETY: the whole body runs under the caller's ISA guarantee; every
    // pointer below stays inside record b or token t's Q8_K block b and its
    // side words, as the caller guarantees.
    unsafe {
        let table = D::table();
        for h in 0..2 {
            let mut acc = [_mm256_setzero_ps(); T];
            for b in 0..tile.nb {
                let rec = tile.qs.wrapping_add(b * IQ4_XS_REC);
                let mut isum = [_mm256_setzero_si256(); T];
                for ib in 0..8 {
                    if h == 0 {
                        prefetch_part(rec, IQ4_XS_REC, ib, 8);
                    }
                    let p = rec.add(64 * 4 * ib + 32 * h);
                    let v = [0, 1, 2, 3].map(|k| _mm256_loadu_si256(p.add(64 * k) as *const _));
                    let wv = lookup(table, &v);
                    // The signed 6-bit scale of sub-block ib: lane byte ib % 4.
                    let sv =
                        _mm256_loadu_si256(rec.add(IQ4XS_SC + 64 * (ib / 4) + 32 * h) as *const _);
                    let sc = D::scale(match ib % 4 {
                        0 => _mm256_srai_epi32::<26>(_mm256_slli_epi32::<26>(sv)),
                        1 => _mm256_srai_epi32::<26>(_mm256_slli_epi32::<18>(sv)),
                        2 => _mm256_srai_epi32::<26>(_mm256_slli_epi32::<10>(sv)),
                        _ => _mm256_srai_epi32::<26>(_mm256_slli_epi32::<2>(sv)),
                    });
                    for (t, is) in isum.iter_mut().enumerate() {
                        let row = tile.a.add(t * tile.a_stride);
                        let q = row.add(b * A_BLOCK + A_QS + 32 * ib);
                        let side = row.add(tile.side_off + b * IQ4XS_SIDE + 4 * ib);
                        let init = core::ptr::read_unaligned(side as *const i32);
                        *is = D::cb_dot_scaled::<8>(*is, init, &wv, q, sc);
                    }
                }
                let dw = d_from_scale_tops(
                    _mm256_loadu_si256(rec.add(IQ4XS_SC + 32 * h) as *const _),
                    _mm256_loadu_si256(rec.add(IQ4XS_SC + 64 + 32 * h) as *const _),
                );
                for (t, acc_t) in acc.iter_mut().enumerate() {
                    let dd = _mm256_mul_ps(dw, act_d(tile, t, b));
                    *acc_t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), dd, *acc_t);
                }
            }
            store::<T>(tile, h, &acc);
        }
    }
}

/// Prefetch distance in bytes of packed IQ4_NL quants.
const PF_DIST: usize = 4096;

/// 16 rows × `T` tokens of an IQ4_NL group (the 32-element layout).
///
/// # Safety
/// The CPU has `D`'s ISA (and AVX2, FMA, F16C); the contract of
/// `packed_avx512::group_tile` for IQ4_NL otherwise (`tile.qs` has `nb·256`
/// bytes, `tile.sc` `nb·32`, each of the `T` activation rows `nb` Q8_0
/// blocks at its start and `nb·8` side bytes at `side_off`, `out` 16
/// writable floats at every `t·out_stride`).
#[inline(always)]
pub(crate) unsafe fn iq4_nl_body<D: Codebook, const T: usize>(tile: &Tile) {
    let qb = l32::quant_bytes(l32::IQ4_NL);
    // SAFETY: the caller's contract, forwarded: blocks b < nb, halves h < 2.
    unsafe {
        let table = D::table();
        let prefetch = |b: usize| {
            let ahead = tile.qs.wrapping_add(b * qb + PF_DIST);
            for l in 0..qb / 64 {
                // A hint: never faults.
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * l) as *const i8);
            }
        };
        let mut acc = [[_mm256_setzero_ps(); T]; 2];
        if T <= 2 {
            // Both halves of a block together (gemv: every weight byte is
            // used as soon as it arrives).
            for b in 0..tile.nb {
                prefetch(b);
                for (h, acc_h) in acc.iter_mut().enumerate() {
                    iq4_nl_half::<D, T>(tile, table, b, h, acc_h);
                }
            }
        } else {
            // One pass per 8-row half: the 8 weight vectors and T sums fill
            // the registers; the second pass reads the group from L1 / L2.
            for (h, acc_h) in acc.iter_mut().enumerate() {
                for b in 0..tile.nb {
                    if h == 0 {
                        prefetch(b);
                    }
                    iq4_nl_half::<D, T>(tile, table, b, h, acc_h);
                }
            }
        }
        for (h, acc_h) in acc.iter().enumerate() {
            store::<T>(tile, h, acc_h);
        }
    }
}

/// Adds IQ4_NL block `b`'s contribution to rows `8h..8h+8` of the `T`
/// tokens: `acc[t] += isum·(d_w·d_a)`.
///
/// # Safety
/// As [`iq4_nl_body`], with `b < nb`, `h < 2` and `table` = `D::table()`.
#[inline(always)]
unsafe fn iq4_nl_half<D: Codebook, const T: usize>(
    tile: &Tile,
    table: __m256i,
    b: usize,
    h: usize,
    acc: &mut [__m256; T],
) {
    use l32::{act_block, quant_bytes, scale_bytes, IQ4_NL};
    let (qb, sb, ab) = (quant_bytes(IQ4_NL), scale_bytes(IQ4_NL), act_block(IQ4_NL));
    // SAFETY: the caller's ISA; block b's 4 quant vectors and 16 f16 scales
    // lie in the group, token t's Q8_0 block b and its 8 side bytes in its
    // row (caller); all reads are unaligned.
    unsafe {
        let p = tile.qs.add(b * qb + 32 * h);
        let v = [0, 1, 2, 3].map(|k| _mm256_loadu_si256(p.add(64 * k) as *const __m256i));
        let wv = lookup(table, &v);
        let dw = _mm256_cvtph_ps(_mm_loadu_si128(tile.sc.add(b * sb + 16 * h) as *const _));
        for (t, acc_t) in acc.iter_mut().enumerate() {
            let (row, da, init, _) = tile.side32(t, b, false);
            let q = row.add(b * ab + crate::formats::layout::Q8_0_QS);
            let isum = D::cb_dot::<8>(init, &wv, q);
            let dd = _mm256_mul_ps(dw, _mm256_set1_ps(da));
            *acc_t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), dd, *acc_t);
        }
    }
}
